#!/usr/bin/env python3
"""Corpus benchmark: `expnet explain --input FILE` against a batched transformers loop doing
the same work, timed in the same run, alternating, on the same machine.

    ~/.cache/pyref/bin/python scripts/bench_corpus.py --sst /work/shared/data/sst/test.txt \
        --lines 1000 --input /tmp/sst2_test_1000.txt \
        --expnet target/release/expnet --model assets/models/minilm-sst2 \
        --threads 1,2 --py-batch-sizes 8,16,32 --py-sorted 16 --expnet-batch-sizes 1,8,16,32 \
        --expnet-single-thread 16 --rounds 3 [--json OUT]

--sst FILE writes the first --lines SST-2 sentences of a PTB-tree file (root label 2
dropped, leaves joined by spaces, PTB escapes undone) to --input, one per line; keep it
under /tmp (the data may not be committed). Without --sst, --input must exist.

The Python side ("py") does what `expnet explain --input FILE --methods attention,rollout`
does: tokenise a batch (tokenizers, padded), one transformers forward with
output_attentions=True under no_grad, torch at each of --threads intra-op thread counts, then per text
the raw attention of [CLS] in the last layer (mean over heads) and attention rollout (Abnar &
Zuidema: 0.5·mean-heads + 0.5·I, rows renormalised, multiplied over layers, [CLS] row),
computed batched in torch (padded keys have probability 0, so the real-token block of the
padded product is each text's own product), cut to each text's length, and one JSON line per
text with the same fields (line, text, model, tokens, prediction, explanations{scores, ms,
forward_passes}, truncated) written to a file. Its time is the loop alone: imports and model
loading are excluded. The expnet side's time is the whole command (process start, loading the
embedded model, reading, writing), so the comparison is conservative for expnet.

With --py-sorted the Python loop is also timed with expnet's own trick (8 batches read ahead
and batched by token count). Every configuration runs once per round, in rotating order;
medians over rounds of wall time and of CPU time (the Python process's, the expnet child's;
less disturbed by other jobs on a shared machine) are reported, and the outputs of the two sides are compared (prediction agreement, largest
score difference) so that both are known to do the same work.
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import hf_load  # noqa: E402

# expnet reads this many batches ahead and batches them by token count (WINDOW_BATCHES).
SORT_WINDOW = 8

PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}


def sst2_examples(path: str, n: int) -> list:
    """First n SST-2 (sentence, label) pairs of a PTB-tree file: root label 0/1 → 0,
    3/4 → 1, neutral (2) dropped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line[1] == "2":
                continue
            leaves = re.findall(r"\(\d ([^()\s]+)\)", line)
            out.append((" ".join(PTB.get(w, w) for w in leaves), 1 if int(line[1]) >= 3 else 0))
            if len(out) == n:
                break
    return out


def sst2_sentences(path: str, n: int) -> list:
    """First n SST-2 sentences (root label 0/1/3/4) of a PTB-tree file."""
    return [text for text, _ in sst2_examples(path, n)]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = re.search(r"model name\s*:\s*(.*)", info).group(1)
        flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
        ext = [x for x in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile") if x in flags]
        return f"{name} ({', '.join(ext)})"
    except (OSError, AttributeError):
        return platform.processor() or platform.machine()


def python_run(model, tok, labels, model_name, lines, batch_size, out_path, token_types, sort_window=0):
    """The transformers loop; returns (wall, cpu) seconds. With sort_window > 0 it reads
    sort_window batches at a time and batches them by token count, as expnet does, writing
    in input order; otherwise batches follow the input order."""
    t0, c0 = time.perf_counter(), time.process_time()
    window = batch_size * max(sort_window, 1)
    pad = model.config.pad_token_id or 0
    with open(out_path, "w", encoding="utf-8") as out, torch.no_grad():
        for wstart in range(0, len(lines), window):
            part = lines[wstart:wstart + window]
            encs = tok.encode_batch([t for _, t in part])
            order = list(range(len(part)))
            if sort_window:
                order.sort(key=lambda i: len(encs[i].ids))
            rendered = [None] * len(part)
            for bstart in range(0, len(order), batch_size):
                idx = order[bstart:bstart + batch_size]
                rendered_batch = explain_batch(model, labels, model_name, [part[i] for i in idx], [encs[i] for i in idx], pad, token_types)
                for i, r in zip(idx, rendered_batch):
                    rendered[i] = r
            out.write("".join(rendered))
    return time.perf_counter() - t0, time.process_time() - c0


def explain_batch(model, labels, model_name, chunk, encs, pad, token_types):
    """One padded forward with attentions, raw attention and rollout per text, JSON lines."""
    width = max(len(e.ids) for e in encs)
    ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in encs])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encs])
    kw = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        kw["token_type_ids"] = torch.tensor([e.type_ids + [0] * (width - len(e.ids)) for e in encs])
    t_fwd = time.perf_counter()
    res = model(**kw, output_attentions=True)
    fwd_ms = (time.perf_counter() - t_fwd) * 1e3 / len(chunk)
    t_m = time.perf_counter()
    att = res.attentions[-1].mean(1)[:, 0, :]  # [B, L]: [CLS] row, last layer
    att_ms = (time.perf_counter() - t_m) * 1e3 / len(chunk)
    t_m = time.perf_counter()
    eye = torch.eye(width).unsqueeze(0)
    v = torch.zeros(len(chunk), 1, width)
    v[:, 0, 0] = 1.0
    hats = []
    for a in res.attentions:
        hat = 0.5 * a.mean(1) + 0.5 * eye
        hats.append(hat / hat.sum(-1, keepdim=True))
    for hat in reversed(hats):  # e0ᵀ · hat_L · … · hat_1
        v = torch.bmm(v, hat)
    roll = v[:, 0, :]
    roll_ms = (time.perf_counter() - t_m) * 1e3 / len(chunk)
    probs = torch.softmax(res.logits, -1)
    att_l, roll_l, probs_l = att.tolist(), roll.tolist(), probs.tolist()
    rendered = []
    for i, ((number, text), e) in enumerate(zip(chunk, encs)):
        n = len(e.ids)
        p = probs_l[i]
        idx = max(range(len(p)), key=p.__getitem__)
        tokens = [
            {"text": t, "start": s, "end": en, "special": sp == 1}
            for t, (s, en), sp in zip(e.tokens, e.offsets, e.special_tokens_mask)
        ]
        obj = {
            "line": number,
            "text": text,
            "model": model_name,
            "tokens": tokens,
            "prediction": {"label": labels[idx], "index": idx, "probabilities": dict(zip(labels, p))},
            "explanations": {
                "attention": {"scores": att_l[i][:n], "ms": att_ms, "forward_passes": 0},
                "rollout": {"scores": roll_l[i][:n], "ms": roll_ms, "forward_passes": 0},
            },
            "forward_ms": fwd_ms,
            "truncated": len(e.overflowing) > 0,
        }
        rendered.append(json.dumps(obj) + "\n")
    return rendered


def expnet_run(binary, input_path, batch_size, out_path, model_dir, threads):
    cmd = [binary, "explain", "--input", input_path, "--methods", "attention,rollout", "--batch-size", str(batch_size)]
    if model_dir:
        cmd += ["--model", model_dir]
    env = dict(os.environ)
    if threads:
        env.update(RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads))
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out_path, "w") as out:
        subprocess.run(cmd, stdout=out, check=True, env=env)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def compare(py_path, rs_path):
    """Prediction agreement and the largest score difference between the two outputs."""
    agree, n, worst = 0, 0, {"attention": 0.0, "rollout": 0.0}
    with open(py_path) as a, open(rs_path) as b:
        for la, lb in zip(a, b):
            x, y = json.loads(la), json.loads(lb)
            assert x["line"] == y["line"], (x["line"], y["line"])
            n += 1
            agree += x["prediction"]["index"] == y["prediction"]["index"]
            for m in worst:
                sa, sb = x["explanations"][m]["scores"], y["explanations"][m]["scores"]
                assert len(sa) == len(sb), f"line {x['line']}: {len(sa)} vs {len(sb)} tokens"
                worst[m] = max(worst[m], max(abs(p - q) for p, q in zip(sa, sb)))
    return {"texts": n, "prediction_agreement": agree / max(n, 1), "max_abs_diff": worst}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sst", help="PTB-tree SST file to take SST-2 sentences from")
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--input", required=True, help="text file, one input per line (written from --sst if given)")
    ap.add_argument("--expnet", default="target/release/expnet")
    ap.add_argument("--model", default="assets/models/minilm-sst2", help="the model folder (expnet uses its embedded copy)")
    ap.add_argument("--expnet-model", action="store_true", help="pass --model to expnet too instead of its embedded copy")
    ap.add_argument("--py-batch-sizes", default="8,16,32")
    ap.add_argument("--expnet-batch-sizes", default="1,8,16,32")
    ap.add_argument("--py-sorted", default="", help="batch sizes at which to also time the Python loop with expnet's length-sorted windows")
    ap.add_argument("--expnet-single-thread", default="", help="batch sizes at which to also time expnet on one thread")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="2", help="torch intra-op thread counts to time, e.g. 1,2")
    ap.add_argument("--out-dir", default="/tmp")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    if args.sst:
        sents = sst2_sentences(args.sst, args.lines)
        with open(args.input, "w", encoding="utf-8") as f:
            f.write("\n".join(sents) + "\n")
    with open(args.input, encoding="utf-8") as f:
        lines = [(i + 1, l.rstrip("\n")) for i, l in enumerate(f)]
    lines = [(i, l) for i, l in lines if l.strip()]

    load_before = os.getloadavg()
    model = hf_load.load_model(args.model)
    tok = hf_load.load_tokenizer(args.model, model.config)
    labels = hf_load.labels(model)
    token_types = hf_load.uses_token_types(model)
    expnet_model = args.model if args.expnet_model else None
    name = args.model if args.expnet_model else "embedded:minilm-sst2"

    # A configuration: (side, batch size, threads, sorted windows); threads 0 = expnet's default.
    configs = [("py", int(b), int(t), False) for t in args.threads.split(",") for b in args.py_batch_sizes.split(",")]
    if args.py_sorted:
        configs += [("py", int(b), int(t), True) for t in args.threads.split(",") for b in args.py_sorted.split(",")]
    configs += [("expnet", int(b), 0, True) for b in args.expnet_batch_sizes.split(",")]
    if args.expnet_single_thread:
        configs += [("expnet", int(b), 1, True) for b in args.expnet_single_thread.split(",")]

    def label(c):
        side, b, t, srt = c
        if side == "expnet":
            return f"expnet b{b}" + (" t1" if t == 1 else "")
        return f"py{'-sorted' if srt else ''} t{t} b{b}"

    out = {c: os.path.join(args.out_dir, f"bench_corpus_{label(c).replace(' ', '_')}.jsonl") for c in configs}
    # Warm-up (untimed): page cache, torch kernels, the binary.
    torch.set_num_threads(configs[0][2])
    python_run(model, tok, labels, name, lines[:64], 16, out[configs[0]], token_types)
    expnet_run(args.expnet, args.input, 16, out[configs[-1]], expnet_model, 0)
    times = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for c in order:
            side, b, t, srt = c
            if side == "expnet":
                s, u = expnet_run(args.expnet, args.input, b, out[c], expnet_model, t)
            else:
                torch.set_num_threads(t)
                s, u = python_run(model, tok, labels, name, lines, b, out[c], token_types, SORT_WINDOW if srt else 0)
            times[c].append(s)
            cpu[c].append(u)
            print(f"round {r + 1} {label(c)}: {s:.2f} s wall, {u:.2f} s cpu, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    med = {c: statistics.median(t) for c, t in times.items()}
    med_cpu = {c: statistics.median(t) for c, t in cpu.items()}
    py_configs = [c for c in configs if c[0] == "py"]
    best_py = min(py_configs, key=med.get)
    best_py_cpu = min(py_configs, key=med_cpu.get)
    best_rs = min((c for c in configs if c[0] == "expnet"), key=med.get)
    result = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "torch": torch.__version__,
        "texts": len(lines),
        "rounds": args.rounds,
        "wall_seconds_median": {label(c): round(v, 3) for c, v in med.items()},
        "cpu_seconds_median": {label(c): round(v, 3) for c, v in med_cpu.items()},
        "wall_seconds_all": {label(c): [round(x, 3) for x in t] for c, t in times.items()},
        "best_python_wall": label(best_py),
        "best_python_cpu": label(best_py_cpu),
        "wall_ratio_vs_best_python": {label(c): round(med[best_py] / med[c], 2) for c in configs if c[0] == "expnet"},
        "cpu_ratio_vs_best_python": {label(c): round(med_cpu[best_py_cpu] / med_cpu[c], 2) for c in configs if c[0] == "expnet"},
        "check": compare(out[best_py], out[best_rs]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
