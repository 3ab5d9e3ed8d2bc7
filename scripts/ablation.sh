#!/usr/bin/env bash
# Feature ablation of ExpNet on SST-2 (docs/RESULTS.md, "Ablation"): drops one
# feature group or one layer at a time, retrains on SST-2 train (early stopping
# on dev; features come from one cached extraction), and evaluates on the whole
# SST-2 test set. Prints a markdown table.
#   scripts/ablation.sh [DATA_DIR] [EXPNET_BIN]
set -euo pipefail
D=${1:-../shared/data}
B=${2:-"cargo run --quiet --release --"}
O=${OUT:-target/ablation}
mkdir -p $O
variants=("none" "cls_to_token" "token_to_cls" "received" "self_attn" "relative_position,special_flag" \
  "L0" "L1" "L2" "L3" "L4" "L5" "L0,L1,L2" "L3,L4,L5")
for v in "${variants[@]}"; do
  name=${v//,/+}
  drop=(); [ "$v" != "none" ] && drop=(--drop "$v")
  if [ ! -f "$O/$name.safetensors" ]; then
    $B train --model assets/models/minilm-sst2 --data sst:$D/sst --val sst:$D/sst#dev \
      "${drop[@]}" --out "$O/$name.safetensors" 2> "$O/$name.train.log"
  fi
  if [ ! -f "$O/$name.json" ]; then
    $B eval --expnet "$O/$name.safetensors" --data sst:$D/sst --split test --methods expnet \
      --no-faithfulness --format json > "$O/$name.json" 2> "$O/$name.eval.log"
  fi
done
python3 - "$O" "${variants[@]}" <<'PY'
import json, re, sys
out, variants = sys.argv[1], sys.argv[2:]
print("| dropped | val F1@k (dev) | test F1@k [95% CI] | test AUPRC | test AUROC |")
print("|---|---|---|---|---|")
for v in variants:
    name = v.replace(",", "+")
    log = open(f"{out}/{name}.train.log").read()
    best = re.findall(r"best ([0-9.]+) at", log)
    r = json.load(open(f"{out}/{name}.json"))["methods"][0]
    f1, ap, roc = r["token_f1"], r["auprc"], r["auroc"]
    print(f"| {v.replace(',', ', ')} | {float(best[-1]):.3f} | {f1['mean']:.3f} [{f1['lo']:.3f},{f1['hi']:.3f}] | {ap['mean']:.3f} | {roc['mean']:.3f} |")
PY
