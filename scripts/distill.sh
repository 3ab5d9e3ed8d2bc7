#!/usr/bin/env bash
# Distilled ExpNet experiments of docs/RESULTS.md ("Distilled ExpNet"): the
# embedded SST-2 classifier, occlusion teacher, 800 SST-2 train sentences
# (680 train / 120 validation, seeded split), 300 SST-2 test sentences held out.
# Usage: scripts/distill.sh [OUTDIR]   (default ~/.cache/expnet-models/distill)
# The teacher cache is shared by every variant, so only the first run pays for the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$HOME/.cache/expnet-models/distill}
DATA=${DATA:-../shared/data}
LIMIT=${LIMIT:-800}
mkdir -p "$OUT"
cargo build --release --quiet
E=target/release/expnet
common=(--teacher occlusion --input "sst:$DATA/sst#train" --limit "$LIMIT" --val-fraction 0.15
        --test "sst:$DATA/sst#test" --test-limit 300 --cache "$OUT/occlusion-sst.teacher.jsonl" --no-register)
run() { # NAME ARGS...
  local name=$1; shift
  $E distill "${common[@]}" "$@" --out "$OUT/$name.safetensors" > "$OUT/$name.json" 2> "$OUT/$name.log"
}
run occ-all --features all --window 1      # attention + hidden + lens + class, window 1, mse+rank
run occ-attention --features attention --window 1     # attention features only (the calibration's weakest)
run occ-lens --features lens --window 1
run occ-hidden --features hidden --window 1
run occ-all-mse --features all --loss mse --window 1
run occ-all-rank --features all --loss rank --window 1
run occ-all-w0 --features all --window 0
# Faithfulness of student and teacher on the same 300 test sentences.
$E eval --data "sst:$DATA/sst" --split test --limit 60 --expnet "$OUT/occ-all.safetensors" \
  --methods expnet,occlusion,attention,rollout --format markdown > "$OUT/eval-occ-all.md"
