#!/usr/bin/env bash
# Distilled ExpNet experiments of docs/RESULTS.md ("Distilled ExpNet").
# Usage: scripts/distill.sh [OUTDIR]   (default ~/.cache/expnet-models/distill)
# The teacher cache is shared by every variant, so only the first run pays for the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$HOME/.cache/expnet-models/distill}
DATA=${DATA:-../shared/data}
mkdir -p "$OUT"
cargo build --release --quiet
E=target/release/expnet
common=(--teacher occlusion --input "sst:$DATA/sst#train" --limit 2300 --val-fraction 0.13
        --test "sst:$DATA/sst#test" --test-limit 400 --cache "$OUT/occlusion-sst.teacher.jsonl" --no-register)
for features in all attention hidden lens; do
  $E distill "${common[@]}" --features $features --out "$OUT/occ-$features.safetensors" > "$OUT/occ-$features.json" 2> "$OUT/occ-$features.log"
done
for loss in mse rank; do
  $E distill "${common[@]}" --features all --loss $loss --out "$OUT/occ-all-$loss.safetensors" > "$OUT/occ-all-$loss.json" 2> "$OUT/occ-all-$loss.log"
done
$E distill "${common[@]}" --features all --window 0 --out "$OUT/occ-all-w0.safetensors" > "$OUT/occ-all-w0.json" 2> "$OUT/occ-all-w0.log"
