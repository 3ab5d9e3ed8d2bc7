#!/usr/bin/env python3
"""Peer benchmark: how long the usual Python tools (transformers + captum + shap) take per
explanation, to put the Rust numbers in context.

    ~/.cache/pyref/bin/python scripts/bench_python.py MODEL_DIR [--lengths 8,32,128]
        [--repeats 5] [--json OUT]

For each input length L (word pieces INCLUDING the special tokens) an invented sentence of
exactly L pieces is built. torch runs on CPU with --threads (default 2) intra-op threads.
Every (method, length) pair is run --warmup (2) times untimed, then --repeats times; the median
wall time is reported in ms per explanation, together with the number of model input rows
(sequences) the method pushed through the model ("forward rows", counted by wrapping the
model call; gradient methods also do one backward pass per row).

Methods and their settings (all stated in the JSON output):
  forward      transformers forward alone, no_grad (1 row)
  saliency     captum Saliency on the word embeddings (1 forward + backward)
  ixg          captum InputXGradient on the word embeddings
  ig           captum LayerIntegratedGradients on the word-embedding layer, --ig-steps (50)
               Gauss-Legendre steps, internal_batch_size --ig-batch (50); baseline [PAD]
  lime         captum Lime, --lime-samples (default 500, not ferret's min(n^2, 5000)),
               default interpretable model (Lasso, alpha 0.01), batches of --batch (50)
  kernel_shap  captum KernelShap, --shap-samples (default 500), batches of --batch
  occlusion    captum Occlusion, sliding window of 1 token, replaced by [PAD]
  partition    shap Partition explainer with shap.maskers.Text(tokenizer),
               max_evals --partition-evals (500), batch_size --batch
Lime, KernelShap and Occlusion perturb only the non-special tokens (the special tokens are
put back around each perturbed row), replacing a removed token by [PAD] (<pad>).
The explained output is the logit of the predicted class, fixed before timing. A bare encoder
(no classification head) gets a fixed random 2-way linear head on the [CLS] state (seed 0).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import hf_load  # noqa: E402

METHODS = ["forward", "saliency", "ixg", "ig", "lime", "kernel_shap", "occlusion", "partition"]

# Invented filler text: common words that are single pieces in most English vocabularies.
FILLER = (
    "the film was good and the story was great but the end was too long so i think it "
    "was a very nice movie with a bad part in the middle and some good music at the end "
    "of the day the actors were fine and the plot made sense most of the time"
).split()


def build_text(tok, length: int) -> str:
    """A sentence of exactly `length` pieces, specials included (greedy word by word; a word
    that would overshoot is skipped, "." is the one-piece fallback)."""
    def count(t):
        return len(tok.encode(t).ids)

    words, i, text = FILLER, 0, ""
    if count("") > length:
        raise SystemExit(f"length {length} is shorter than the special tokens")
    while count(text) < length:
        for cand in [words[i % len(words)], ".", "a"]:
            trial = (text + " " + cand).strip()
            if count(trial) <= length:
                text = trial
                break
        else:
            raise SystemExit(f"cannot build a text of exactly {length} pieces")
        i += 1
        if i > 20 * length:
            raise SystemExit(f"cannot build a text of exactly {length} pieces")
    return text


class Counted:
    """The model as a function of ids or embeddings, counting the rows it is given."""

    def __init__(self, model, token_types: bool):
        self.model = model
        self.token_types = token_types
        self.rows = 0
        self.head = None
        if hf_load.labels(model) is None:
            gen = torch.Generator().manual_seed(0)
            self.head = torch.randn(model.config.hidden_size, 2, generator=gen) * 0.1

    def _out(self, **kw):
        out = self.model(**kw)
        if self.head is None:
            return out.logits
        return out.last_hidden_state[:, 0] @ self.head

    def _extra(self, n_rows, n_tokens):
        kw = {"attention_mask": torch.ones(n_rows, n_tokens, dtype=torch.long)}
        if self.token_types:
            kw["token_type_ids"] = torch.zeros(n_rows, n_tokens, dtype=torch.long)
        return kw

    def ids(self, input_ids):
        self.rows += input_ids.shape[0]
        return self._out(input_ids=input_ids, **self._extra(*input_ids.shape))

    def embeds(self, inputs_embeds):
        self.rows += inputs_embeds.shape[0]
        return self._out(inputs_embeds=inputs_embeds, **self._extra(*inputs_embeds.shape[:2]))


def make_methods(model, hf_tok, args):
    """name -> function(ids [1,n] tensor, special mask, text, target, counted) running one
    explanation."""
    from captum.attr import (InputXGradient, KernelShap, LayerIntegratedGradients, Lime,
                             Occlusion, Saliency)

    emb_layer = model.get_input_embeddings()
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0

    def forward(ids, special, text, target, f):
        with torch.no_grad():
            f.ids(ids)

    def saliency(ids, special, text, target, f):
        e = emb_layer(ids).detach().requires_grad_(True)
        Saliency(f.embeds).attribute(e, target=target, abs=False)

    def ixg(ids, special, text, target, f):
        e = emb_layer(ids).detach().requires_grad_(True)
        InputXGradient(f.embeds).attribute(e, target=target)

    def ig(ids, special, text, target, f):
        base = torch.where(special, ids, torch.full_like(ids, pad))
        LayerIntegratedGradients(f.ids, emb_layer).attribute(
            ids, baselines=base, target=target, n_steps=args.ig_steps,
            internal_batch_size=args.ig_batch,
        )

    def inner(ids, f):
        """Forward over the non-special tokens only, with [CLS]/[SEP] put back around them."""
        first, last = ids[:, :1], ids[:, -1:]

        def g(x):
            n = x.shape[0]
            return f.ids(torch.cat([first.expand(n, -1), x, last.expand(n, -1)], dim=1))

        return g, ids[:, 1:-1]

    def lime(ids, special, text, target, f):
        g, x = inner(ids, f)
        Lime(g).attribute(x, baselines=pad, target=target, n_samples=args.lime_samples,
                          perturbations_per_eval=args.batch,
                          feature_mask=torch.arange(x.shape[1]).unsqueeze(0))

    def kernel_shap(ids, special, text, target, f):
        g, x = inner(ids, f)
        KernelShap(g).attribute(x, baselines=pad, target=target, n_samples=args.shap_samples,
                                perturbations_per_eval=args.batch,
                                feature_mask=torch.arange(x.shape[1]).unsqueeze(0))

    def occlusion(ids, special, text, target, f):
        g, x = inner(ids, f)
        Occlusion(g).attribute(x, sliding_window_shapes=(1,), baselines=pad, target=target,
                               perturbations_per_eval=args.batch)

    def partition(ids, special, text, target, f):
        import shap

        def texts_to_logits(texts):
            enc = hf_tok(list(texts), padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                f.rows += enc["input_ids"].shape[0]
                kw = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
                if f.token_types:
                    kw["token_type_ids"] = enc.get("token_type_ids",
                                                   torch.zeros_like(enc["input_ids"]))
                logits = f._out(**kw)
            return logits[:, target].numpy()

        explainer = shap.Explainer(texts_to_logits, shap.maskers.Text(hf_tok),
                                   algorithm="partition")
        explainer([text], max_evals=args.partition_evals, batch_size=args.batch, silent=True)

    table = dict(forward=forward, saliency=saliency, ixg=ixg, ig=ig, lime=lime,
                 kernel_shap=kernel_shap, occlusion=occlusion, partition=partition)
    return {m: table[m] for m in args.methods}


def settings(args) -> dict:
    return dict(
        ig=dict(n_steps=args.ig_steps, internal_batch_size=args.ig_batch,
                method="gausslegendre", layer="word embeddings", baseline="[PAD]"),
        lime=dict(n_samples=args.lime_samples, perturbations_per_eval=args.batch,
                  interpretable_model="captum default (SkLearnLasso alpha=0.01)",
                  baseline="[PAD]"),
        kernel_shap=dict(n_samples=args.shap_samples, perturbations_per_eval=args.batch,
                         baseline="[PAD]"),
        occlusion=dict(window=1, baseline="[PAD]", perturbations_per_eval=args.batch),
        partition=dict(max_evals=args.partition_evals, batch_size=args.batch,
                       masker="shap.maskers.Text(tokenizer)"),
        target="logit of the predicted class",
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--lengths", default="8,32,128", help="comma-separated (default 8,32,128)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ig-steps", type=int, default=50)
    ap.add_argument("--ig-batch", type=int, default=50)
    ap.add_argument("--lime-samples", type=int, default=500)
    ap.add_argument("--shap-samples", type=int, default=500)
    ap.add_argument("--partition-evals", type=int, default=500)
    ap.add_argument("--batch", type=int, default=50, help="rows per model call (perturbations)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {METHODS}")
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    from transformers import AutoTokenizer

    model = hf_load.load_model(args.model_dir)
    tok = hf_load.load_tokenizer(args.model_dir, model.config)
    hf_tok = AutoTokenizer.from_pretrained(args.model_dir)
    f = Counted(model, hf_load.uses_token_types(model))
    methods = make_methods(model, hf_tok, args)

    results = []
    for length in lengths:
        if length > hf_load.max_tokens(model.config):
            ap.error(f"length {length} exceeds what the model accepts")
        text = build_text(tok, length)
        enc = tok.encode(text)
        ids = torch.tensor([enc.ids])
        special = torch.tensor([enc.special_tokens_mask]).bool()
        with torch.no_grad():
            target = int(f.ids(ids)[0].argmax())
        for name, run in methods.items():
            for _ in range(args.warmup):
                run(ids, special, text, target, f)
            times = []
            for _ in range(args.repeats):
                f.rows = 0
                t0 = time.perf_counter()
                run(ids, special, text, target, f)
                times.append((time.perf_counter() - t0) * 1000.0)
            results.append(dict(method=name, length=length, median_ms=statistics.median(times),
                                min_ms=min(times), repeats=args.repeats, forward_rows=f.rows))
            print(f"  {name:12s} L={length:4d} {statistics.median(times):10.2f} ms "
                  f"{f.rows:6d} rows", file=sys.stderr)

    print_table(results, lengths, list(methods))
    if args.json:
        import captum
        import shap
        import transformers
        report = dict(
            tool="python", model=os.path.abspath(args.model_dir), threads=args.threads,
            lengths=lengths, device="cpu", machine=platform.machine(),
            processor=platform.processor(), cpu_count=os.cpu_count(),
            versions=dict(torch=torch.__version__, transformers=transformers.__version__,
                          captum=captum.__version__, shap=shap.__version__),
            settings=settings(args), results=results,
        )
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
            fh.write("\n")


def print_table(results, lengths, methods):
    cell = {(r["method"], r["length"]): r for r in results}
    head = "method       " + "".join(f"{'L=' + str(n):>22s}" for n in lengths)
    print(head)
    print("-" * len(head))
    for m in methods:
        row = f"{m:12s} "
        for n in lengths:
            r = cell[(m, n)]
            row += f"{r['median_ms']:12.2f} ms {r['forward_rows']:5d} r"
        print(row)
    print("(median ms per explanation; r = model input rows per explanation)")


if __name__ == "__main__":
    main()
