#!/usr/bin/env python3
"""Per-text cost of two methods from one `expnet explain --input … --methods A,B`
run (JSON Lines on stdin or in a file): the mean ms per text of each, their ratio
(mean A / mean B, the "ms per text" comparison), and the median and 10th
percentile of the per-text ratios, each with a bootstrap 95% interval over texts.

    expnet explain --input TEXTS --methods expnet,kernel_shap --samples 502 --expnet STUDENT \\
        --batch-size 1 > run.jsonl
    python3 scripts/research/method_cost.py run.jsonl kernel_shap expnet
"""
import json
import random
import statistics
import sys


def main():
    path, slow, fast = sys.argv[1], sys.argv[2], sys.argv[3]
    a, b = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            e = json.loads(line)["explanations"]
            a.append(e[slow]["ms"])
            b.append(e[fast]["ms"])
    n = len(a)
    ratios = sorted(x / max(y, 1e-9) for x, y in zip(a, b))
    rng = random.Random(0)

    def boot(stat):
        vals = []
        for _ in range(2000):
            idx = [rng.randrange(n) for _ in range(n)]
            vals.append(stat(idx))
        vals.sort()
        return vals[50], vals[1949]

    mean_ratio = lambda idx: sum(a[i] for i in idx) / max(sum(b[i] for i in idx), 1e-9)
    lo, hi = boot(mean_ratio)
    print(f"texts: {n}")
    print(f"{slow}: mean {statistics.mean(a):.1f} ms, median {statistics.median(a):.1f} ms")
    print(f"{fast}: mean {statistics.mean(b):.3f} ms, median {statistics.median(b):.3f} ms")
    print(f"mean {slow} / mean {fast}: {mean_ratio(range(n)):.0f}x [{lo:.0f}, {hi:.0f}]")
    print(f"per-text ratio: median {statistics.median(ratios):.0f}x, 10th percentile {ratios[n // 10]:.0f}x, "
          f"share of texts >= 1000x: {sum(r >= 1000 for r in ratios) / n:.2f}")


if __name__ == "__main__":
    main()
