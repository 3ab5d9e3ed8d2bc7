#!/usr/bin/env bash
# Reruns the ExpNet experiments of docs/RESULTS.md with the release binary.
#   scripts/results.sh [DATA_DIR] [LIMIT]
# DATA_DIR defaults to ../shared/data; LIMIT caps the evaluated examples per
# data set (LIME/KernelSHAP are slow on 2 cores).
set -euo pipefail
D=${1:-../shared/data}
LIMIT=${2:-200}
E="cargo run --quiet --"   # dev profile: dependencies are built with opt-level 3
mkdir -p target/results
# In-domain: ExpNet trained on SST-2 train (embedded model) -> SST-2 test.
$E train --data sst:$D/sst --val sst:$D/sst#dev --out target/results/expnet-sst2.safetensors
$E eval --expnet target/results/expnet-sst2.safetensors --data sst:$D/sst --split test \
  --methods expnet,attention,rollout,flow,saliency,grad_x_input,chefer,grad_sam,occlusion \
  --format markdown > target/results/sst2-test-fast.md
$E eval --expnet target/results/expnet-sst2.safetensors --data sst:$D/sst --split test \
  --methods integrated_gradients,lime,kernel_shap --limit "$LIMIT" --format markdown > target/results/sst2-test-slow.md
# Cross-domain, same model: SST-2 -> ERASER Movies test windows.
$E eval --expnet target/results/expnet-sst2.safetensors --data movies:$D/movies --split test \
  --methods expnet,attention,rollout,saliency,grad_x_input,chefer,grad_sam --limit "$LIMIT" \
  --format markdown > target/results/movies-test.md
cat target/results/*.md
