#!/usr/bin/env bash
# Reruns the experiments of docs/RESULTS.md (dev profile: dependencies are built with opt-level 3).
#   scripts/results.sh [DATA_DIR]      (default ../shared/data)
set -euo pipefail
D=${1:-../shared/data}
E="cargo run --quiet --"
mkdir -p target/results
$E train --model assets/models/minilm-sst2 --data sst:$D/sst --val sst:$D/sst#dev --out target/results/expnet-sst2.safetensors
X="--expnet target/results/expnet-sst2.safetensors"
$E eval $X --data sst:$D/sst --split test --limit 150 --format markdown \
  --methods expnet,attention,rollout,flow,saliency,grad_x_input,chefer,grad_sam,occlusion > target/results/sst2-fast.md
$E eval $X --data sst:$D/sst --split test --limit 20 --format markdown \
  --methods expnet,integrated_gradients,lime,kernel_shap > target/results/sst2-slow.md
$E eval $X --data movies:$D/movies --split test --limit 40 --no-faithfulness --format markdown \
  --methods expnet,attention,rollout,saliency,grad_x_input,chefer,grad_sam > target/results/movies.md
cat target/results/*.md
