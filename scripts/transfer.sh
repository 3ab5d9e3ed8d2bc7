#!/usr/bin/env bash
# Transfer experiments of docs/RESULTS.md ("Shape-free transfer ExpNet"):
# shape-free ExpNets (--depth-bins, rank-normalised) trained on one task's
# rationales through that task's own classifier, tested on another task with
# that task's classifier, next to every forward-only and gradient baseline.
#   scripts/transfer.sh [OUTDIR]      (default ~/.cache/expnet-models/transfer)
# Classifiers: the embedded SST-2 one, and quick HateXplain / e-SNLI ones
# rebuilt here when missing (1 epoch on 4,000 examples each, max 64 tokens;
# smaller than docs/MODELS.md's HateXplain classifier, to fit a session).
# Every step is skipped when its output exists, so a rerun resumes.
# EXPNET_BIN=path uses that binary instead of building; TASKS="sst hx nli" adds e-SNLI.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$HOME/.cache/expnet-models/transfer}
D=${DATA:-../shared/data}
M=${MODELS:-$HOME/.cache/expnet-models}
BASE=${BASE_MODEL:-$M/all-MiniLM-L6-v2}
LIMIT=${LIMIT:-200}
TASKS=${TASKS:-"sst hx"}
mkdir -p "$OUT"
[ -n "${EXPNET_BIN:-}" ] || cargo build --release --quiet
E=${EXPNET_BIN:-target/release/expnet}
[ -f "$BASE/config.json" ] || bash ../shared/scripts/fetch-base-model.sh "$BASE"
SST=assets/models/minilm-sst2
HX=$M/minilm-hatexplain-quick
NLI=$M/minilm-esnli-quick
[ -f "$HX/config.json" ] || $E finetune --base "$BASE" --data "hatexplain:$D/hatexplain" --out "$HX" --epochs 1 --max-len 64 --limit 4000
if [[ " $TASKS " == *" nli "* ]]; then
  [ -f "$NLI/config.json" ] || $E finetune --base "$BASE" --data "esnli:$D/esnli#dev" --out "$NLI" --epochs 1 --max-len 64 --limit 4000
fi
declare -A MODEL=([sst]=$SST [hx]=$HX [nli]=$NLI)
declare -A TRAIN=([sst]="sst:$D/sst" [hx]="hatexplain:$D/hatexplain#dev" [nli]="esnli:$D/esnli#dev")
declare -A TEST=([sst]="sst:$D/sst" [hx]="hatexplain:$D/hatexplain" [nli]="esnli:$D/esnli")
METHODS=attention,rollout,value_norm,alti,globenc,saliency,grad_x_input,chefer,grad_sam,expnet
# Feature variants: all four attention groups, or [CLS]->token only.
declare -A VARIANT=([all]="" [cls]="--drop token_to_cls,received,self_attn")
for v in all cls; do
  sfx=$([ $v = all ] && echo "" || echo "-$v")
  # One shape-free ExpNet per training task, read through that task's classifier.
  for t in $TASKS; do
    f=$OUT/tf-$t$sfx.safetensors
    [ -s "$f" ] || $E train --model "${MODEL[$t]}" --data "${TRAIN[$t]}" --depth-bins 4 --normalization rank \
        ${VARIANT[$v]} --out "$f" --cache "$OUT/cache" 2> "$f.log"
  done
  # Leave-one-task-out: train on every other task (each source @ its own model).
  for held in $TASKS; do
    srcs=()
    for t in $TASKS; do [ "$t" = "$held" ] || srcs+=("${TRAIN[$t]}@${MODEL[$t]}"); done
    f=$OUT/loto-$held$sfx.safetensors
    [ -s "$f" ] || $E train --model "${MODEL[$held]}" --data "$(IFS=,; echo "${srcs[*]}")" --depth-bins 4 \
        --normalization rank ${VARIANT[$v]} --out "$f" --cache "$OUT/cache" 2> "$f.log"
  done
  # Each test task with its own classifier: the left-out ExpNet (transfer) and
  # the in-task shape-free one (reference), against every baseline.
  for held in $TASKS; do
    for which in loto-$held$sfx tf-$held$sfx; do
      r=$OUT/eval-$held-$which.md
      [ -s "$r" ] || $E eval --model "${MODEL[$held]}" --data "${TEST[$held]}" --split test --limit "$LIMIT" \
          --methods "$METHODS" --expnet "$OUT/$which.safetensors" --no-faithfulness --format markdown > "$r" 2> "$r.log"
    done
  done
done
echo "tables in $OUT/eval-*.md"
