#!/usr/bin/env bash
# Distilled ExpNet experiments of docs/RESULTS.md ("Distilled ExpNet"): the
# embedded SST-2 classifier, occlusion teacher, the first LIMIT SST-2 train
# sentences (seeded 85/15 split into train and validation), the first 300
# SST-2 test sentences held out (never used for a choice).
# Usage: scripts/distill.sh [OUTDIR] [VARIANT...]   (default OUTDIR ~/.cache/expnet-models/distill)
# EXPNET_BIN=path uses that binary instead of building.
#   LIMIT=2300 (default): the 2,000-text table (1,955 train / 345 validation).
#   LIMIT=800 scripts/distill.sh OUT w1-attention w1-lens w1-hidden w1-all w1-all-mse w1-all-rank score-all
#     : the first table (680 train / 120 validation, window ±1 rows).
# TASK=hx: the same on HateXplain (train posts; the first 300 test posts held out)
#   with the quick HateXplain classifier of docs/MODELS.md (HX_MODEL=folder to
#   use another); file names get a -hx suffix.
# TEACHER=kernel-shap SAMPLES=500 REFERENCE=4000: another teacher (occlusion by default)
#   at a sample budget, and a REFERENCE-sample run of it on the 300 test texts that the
#   student and a second same-budget teacher run (another seed) are compared with;
#   file names get a -TEACHER-SAMPLES suffix.
# The teacher cache is shared by every variant, so only the first run pays for the teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$HOME/.cache/expnet-models/distill}
shift || true
DATA=${DATA:-../shared/data}
LIMIT=${LIMIT:-2300}
mkdir -p "$OUT"
[ -n "${EXPNET_BIN:-}" ] || cargo build --release --quiet
E=${EXPNET_BIN:-target/release/expnet}
TASK=${TASK:-sst}
case $TASK in
  sst) MODEL=(); SET="sst:$DATA/sst"; SFX="" ;;
  hx) HX=${HX_MODEL:-$HOME/.cache/expnet-models/minilm-hatexplain-quick}
      [ -f "$HX/config.json" ] || { echo "no HateXplain classifier at $HX (docs/MODELS.md rebuilds it)" >&2; exit 2; }
      MODEL=(--model "$HX"); SET="hatexplain:$DATA/hatexplain"; SFX="-hx" ;;
  *) echo "TASK must be sst or hx" >&2; exit 2 ;;
esac
TEACHER=${TEACHER:-occlusion}
TEX=(--teacher "$TEACHER")
[ -z "${SAMPLES:-}" ] || TEX+=(--samples "$SAMPLES")
[ -z "${REFERENCE:-}" ] || TEX+=(--reference-samples "$REFERENCE")
TAG=$TEACHER${SAMPLES:+-$SAMPLES}
[ "$TAG" = occlusion ] || SFX="$SFX-$TAG"
common=("${MODEL[@]}" "${TEX[@]}" --input "$SET#train" --limit "$LIMIT" --val-fraction 0.15
        --test "$SET#test" --test-limit 300 --cache "$OUT/$TAG-$TASK.teacher.jsonl" --no-register)
run() { # NAME ARGS...
  local name=$1$SFX; shift
  $E distill "${common[@]}" "$@" --out "$OUT/$name-$LIMIT.safetensors" > "$OUT/$name-$LIMIT.json" 2> "$OUT/$name-$LIMIT.log"
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(score-all score-decision score-full score-full-ctx all full full-ctx)
S=(--target score)   # regress on z-scored teacher scores (the default before --target existed)
for v in "${variants[@]}"; do
  case $v in
    # First table (LIMIT=800): window ±1 rows.
    w1-attention) run "$v" "${S[@]}" --features attention --window 1 ;;
    w1-lens) run "$v" "${S[@]}" --features lens --window 1 ;;
    w1-hidden) run "$v" "${S[@]}" --features hidden --window 1 ;;
    w1-all) run "$v" "${S[@]}" --features all --window 1 ;;
    w1-all-mse) run "$v" "${S[@]}" --features all --loss mse --window 1 ;;
    w1-all-rank) run "$v" "${S[@]}" --features all --loss rank --window 1 ;;
    # Window 0 (the default), z-scored targets.
    score-all) run "$v" "${S[@]}" --features all ;;                 # attention + hidden + lens + class
    score-decision) run "$v" "${S[@]}" --features decision ;;       # attention + decision-aligned head contributions + class
    score-full) run "$v" "${S[@]}" --features full ;;               # all + decision
    score-full-ctx) run "$v" "${S[@]}" --features full --context 4 ;;   # contextual student (self-attention over tokens)
    # Rank targets (the default).
    all) run "$v" --features all ;;
    full) run "$v" --features full ;;
    full-ctx) run "$v" --features full --context 4 ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
done
# Faithfulness and cost of a student and its teacher on the same 300 test sentences, one run.
if [ -f "$OUT/all$SFX-$LIMIT.safetensors" ]; then
  $E eval "${MODEL[@]}" --data "$SET" --split test --limit 300 --expnet "$OUT/all$SFX-$LIMIT.safetensors" \
    --methods "expnet,${TEACHER//-/_}" --format markdown > "$OUT/eval-all$SFX-$LIMIT.md"
fi
