#!/usr/bin/env bash
# Decomposition-feature (and gradient-feature: ggrad, ggradz, gsprior, gronly) variants
# of the shape-free transfer ExpNet (docs/RESULTS.md, "Shape-free transfer ExpNet" ->
# "With decomposition features", "With gradient features", issue 11):
# value-norm-weighted attention and ALTI (optionally GlobEnc) per depth bin
# (`expnet train --decomposition`), trained per task and leave-one-task-out,
# tested on each task's test split with its own classifier.
#   scripts/transfer_decomp.sh [OUTDIR] [VARIANT...]
#     OUTDIR default ~/.cache/expnet-models/transfer-decomp; VARIANTs below (default: dcls dall donly)
# Same classifiers, training data and --limit as scripts/transfer.sh (run it first:
# it builds the quick classifiers); link or copy its cache/features-*.safetensors
# into OUTDIR/cache to skip re-extracting attentions. TASKS="sst hx nli" adds e-SNLI,
# TASKS="sst hx nli mov" ERASER Movies too (classifier: scripts/models.sh movies).
# Every step is skipped when its output exists, so a rerun resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$HOME/.cache/expnet-models/transfer-decomp}
shift || true
VARIANTS=${*:-"dcls dall donly"}
D=${DATA:-../shared/data}
M=${MODELS:-$HOME/.cache/expnet-models}
LIMIT=${LIMIT:-200}
TASKS=${TASKS:-"sst hx"}
mkdir -p "$OUT"
[ -n "${EXPNET_BIN:-}" ] || cargo build --release --quiet
E=${EXPNET_BIN:-target/release/expnet}
declare -A MODEL=([sst]=assets/models/minilm-sst2 [hx]=$M/minilm-hatexplain-quick [nli]=$M/minilm-esnli-quick [mov]=$M/minilm-movies)
for t in $TASKS; do
  [ -f "${MODEL[$t]}/config.json" ] || [ "$t" = sst ] || { echo "no classifier for $t at ${MODEL[$t]} (hint: run scripts/transfer.sh first, and scripts/models.sh movies for mov)" >&2; exit 1; }
done
# Movies: ExpNet rationales from the validation reviews (the classifier trained on the train split).
declare -A TRAIN=([sst]="sst:$D/sst" [hx]="hatexplain:$D/hatexplain#dev" [nli]="esnli:$D/esnli#dev" [mov]="movies:$D/movies#val")
declare -A TEST=([sst]="sst:$D/sst" [hx]="hatexplain:$D/hatexplain" [nli]="esnli:$D/esnli" [mov]="movies:$D/movies")
declare -A VARIANT=(
  # decomposition groups + [CLS]->token attention
  [dcls]="--decomposition value_norm,alti --drop token_to_cls,received,self_attn"
  # decomposition groups + all four attention groups
  [dall]="--decomposition value_norm,alti"
  # decomposition groups only (no attention group)
  [donly]="--decomposition value_norm,alti --drop cls_to_token,token_to_cls,received,self_attn"
  # dcls with GlobEnc as well
  [gcls]="--decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn"
  # ALTI alone + [CLS]->token attention
  [acls]="--decomposition alti --drop token_to_cls,received,self_attn"
  # dcls without the relative-position column (a task-specific prior)
  [dnopos]="--decomposition value_norm,alti --drop token_to_cls,received,self_attn,relative_position"
  # donly without the relative-position column
  [donlynopos]="--decomposition value_norm,alti --drop cls_to_token,token_to_cls,received,self_attn,relative_position"
  # dcls with a smaller network (16 hidden units)
  [dsmall]="--decomposition value_norm,alti --drop token_to_cls,received,self_attn --hidden 16"
  # ALTI alone (per-layer and rolled-out share per bin) + the special flag
  [aonly]="--decomposition alti --drop cls_to_token,token_to_cls,received,self_attn,relative_position"
  # aonly with a smaller network (8 hidden units)
  [aonlysmall]="--decomposition alti --drop cls_to_token,token_to_cls,received,self_attn,relative_position --hidden 8"
  # residual on ALTI (`--prior alti`): the untrained net is the alti method's ranking
  [aprior]="--decomposition alti --drop cls_to_token,token_to_cls,received,self_attn,relative_position --prior alti"
  # dcls features, residual on ALTI
  [dprior]="--decomposition value_norm,alti --drop token_to_cls,received,self_attn --prior alti"
  # gcls features, residual on ALTI
  [gprior]="--decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn --prior alti"
  # gcls + the four shared-backward-pass scores (`--gradient`, issue 11 item 4), rank-normalised
  [ggrad]="--decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn --gradient all"
  # ggrad with the gradient columns z-scored per input instead of ranked
  [ggradz]="--decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn --gradient all --gradient-normalization z"
  # ggrad, residual on saliency (the untrained net ranks tokens as saliency does)
  [gsprior]="--decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn --gradient all --prior saliency"
  # the four gradient columns alone (+ position and the special flag), no attention or decomposition
  [gronly]="--drop cls_to_token,token_to_cls,received,self_attn --gradient all"
  # ALTI columns + the four gradient columns, no attention, no position (aonly + gradient)
  [agrad]="--decomposition alti --drop cls_to_token,token_to_cls,received,self_attn,relative_position --gradient all"
  # gronly without the relative-position column
  [grnopos]="--drop cls_to_token,token_to_cls,received,self_attn,relative_position --gradient all"
  # attention only, as scripts/transfer.sh (for runs with other TASKS)
  [att]=""
  [attcls]="--drop token_to_cls,received,self_attn"
)
# Baselines, once per test task (same examples as every ExpNet row): forward-only
# (BASELINES; flow is slow on Movies' 260-piece windows) and, with GRADIENTS=1, the
# gradient and attention×gradient families.
BASELINES=${BASELINES:-attention,rollout,flow,value_norm,alti,globenc}
for held in $TASKS; do
  r=$OUT/eval-$held-baselines.md
  [ -s "$r" ] || nice $E eval --model "${MODEL[$held]}" --data "${TEST[$held]}" --split test --limit "$LIMIT" \
      --methods "$BASELINES" --no-faithfulness --format markdown > "$r" 2> "$r.log"
  r=$OUT/eval-$held-gradients.md
  [ -z "${GRADIENTS:-}" ] || [ -s "$r" ] || nice $E eval --model "${MODEL[$held]}" --data "${TEST[$held]}" --split test --limit "$LIMIT" \
      --methods saliency,grad_x_input,integrated_gradients,chefer,grad_sam --no-faithfulness --format markdown > "$r" 2> "$r.log"
done
for v in $VARIANTS; do
  [ -n "${VARIANT[$v]:-}" ] || { echo "unknown variant $v (valid: ${!VARIANT[*]})" >&2; exit 1; }
  for t in $TASKS; do
    f=$OUT/tf-$t-$v.safetensors
    [ -s "$f" ] || nice $E train --model "${MODEL[$t]}" --data "${TRAIN[$t]}" --depth-bins 4 --normalization rank \
        ${VARIANT[$v]} --out "$f" --cache "$OUT/cache" 2> "$f.log"
  done
  for held in $TASKS; do
    srcs=()
    for t in $TASKS; do [ "$t" = "$held" ] || srcs+=("${TRAIN[$t]}@${MODEL[$t]}"); done
    f=$OUT/loto-$held-$v.safetensors
    [ -s "$f" ] || nice $E train --model "${MODEL[$held]}" --data "$(IFS=,; echo "${srcs[*]}")" --depth-bins 4 \
        --normalization rank ${VARIANT[$v]} --out "$f" --cache "$OUT/cache" 2> "$f.log"
  done
  for held in $TASKS; do
    for which in loto-$held-$v tf-$held-$v; do
      r=$OUT/eval-$held-$which.md
      [ -s "$r" ] || nice $E eval --model "${MODEL[$held]}" --data "${TEST[$held]}" --split test --limit "$LIMIT" \
          --methods attention,expnet --expnet "$OUT/$which.safetensors" --no-faithfulness --format markdown > "$r" 2> "$r.log"
    done
  done
done
# One line per ExpNet: held-out task, file, F1@k and AUPRC with intervals.
for r in "$OUT"/eval-*.md; do
  grep -h '^| expnet' "$r" | sed "s|^|$(basename "$r" .md) |" || true
done
