#!/usr/bin/env python3
"""Fine-tuning peer: tokens per second of a transformers training loop doing what
`expnet finetune` does, to compare with the tok/s that command reports.

    ~/.cache/pyref/bin/python scripts/bench_finetune.py BASE_DIR --sst ../shared/data/sst/train.txt \
        [--examples 640] [--batch-size 32] [--max-len 66] [--threads 2] [--json OUT]
    target/release/expnet finetune --base BASE_DIR --data sst:../shared/data/sst --limit 640 \
        --epochs 1 --out /tmp/ft-bench          (its last step line gives tok/s)

Same work as expnet's loop (src/finetune/mod.rs): the first --examples SST-2 sentences of the
PTB-tree file (root label 0/1 negative, 3/4 positive, 2 dropped), a new 2-way classification
head on the base encoder, sequences cut to --max-len word pieces, batches of --batch-size
drawn from a seeded shuffle with each window of 50 batches sorted by length (as expnet does,
so padding is alike), dropout 0.1 (train mode), cross-entropy, gradient clipping at norm 1,
AdamW (lr 5e-5, weight decay 0.01). tokens/s counts real (unpadded) tokens over every step
after the first, which is untimed warm-up; expnet's figure includes its first step, so the
comparison is conservative for expnet. torch runs with --threads intra-op threads.
"""

import argparse
import json
import os
import random
import sys
import time

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
from bench_corpus import cpu_name, sst2_examples  # noqa: E402


def batches(lengths: list, batch_size: int, seed: int) -> list:
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out = []
    window = batch_size * 50
    for w0 in range(0, len(order), window):
        w = sorted(order[w0:w0 + window], key=lambda i: lengths[i])
        out.extend(w[i:i + batch_size] for i in range(0, len(w), batch_size))
    rng.shuffle(out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_dir")
    ap.add_argument("--sst", required=True, help="PTB-tree file (e.g. sst/train.txt)")
    ap.add_argument("--examples", type=int, default=640)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=66)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(args.base_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        args.base_dir, num_labels=2, attn_implementation="eager", dtype=torch.float32)
    model.train()
    data = sst2_examples(args.sst, args.examples)
    enc = [tok(t, truncation=True, max_length=args.max_len)["input_ids"] for t, _ in data]
    labels = [y for _, y in data]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    pad = tok.pad_token_id
    timed_tokens, t0 = 0, None
    steps = batches([len(e) for e in enc], args.batch_size, args.seed)
    for k, b in enumerate(steps):
        if k == 1:
            t0 = time.perf_counter()
        n = max(len(enc[i]) for i in b)
        ids = torch.tensor([enc[i] + [pad] * (n - len(enc[i])) for i in b])
        mask = torch.tensor([[1] * len(enc[i]) + [0] * (n - len(enc[i])) for i in b])
        y = torch.tensor([labels[i] for i in b])
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if k >= 1:
            timed_tokens += sum(len(enc[i]) for i in b)
    secs = time.perf_counter() - t0
    result = {"tool": "transformers", "cpu": cpu_name(), "threads": args.threads, "examples": len(data),
              "steps_timed": len(steps) - 1, "tokens": timed_tokens, "seconds": secs,
              "tokens_per_sec": timed_tokens / secs}
    print(f"{cpu_name()}; torch threads {args.threads}")
    print(f"transformers fine-tuning: {timed_tokens} tokens in {len(steps) - 1} timed steps, {secs:.1f} s: "
          f"{timed_tokens / secs:.0f} tokens/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
