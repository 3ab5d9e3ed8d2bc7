#!/usr/bin/env bash
# Reruns the experiments of docs/RESULTS.md and writes their tables under target/results/.
#   scripts/results.sh [DATA_DIR] [HATEXPLAIN_MODEL] [EXPNET_BIN]
# DATA_DIR defaults to ../shared/data; HATEXPLAIN_MODEL is the classifier of
# docs/MODELS.md (scripts/models.sh hatexplain; default
# ~/.cache/expnet-models/minilm-hatexplain). Every step is skipped when its
# output exists, so an interrupted run resumes.
# PART=sst runs what needs only the SST-2 classifier, PART=hx the rest (the
# HateXplain classifier's tables and both cross-task directions, which read the
# SST-2 part's ExpNets); two single-threaded copies (RAYON_NUM_THREADS=1), one
# per part, share 2 cores well. OUT=DIR writes elsewhere than target/results.
set -euo pipefail
D=${1:-../shared/data}
HX=${2:-$HOME/.cache/expnet-models/minilm-hatexplain}
B=${3:-"cargo run --quiet --release --"}
PART=${PART:-all}
O=${OUT:-target/results}
mkdir -p $O
SST=assets/models/minilm-sst2
sst() { [ "$PART" != hx ]; }
hx() { [ "$PART" != sst ]; }
BASE="attention,rollout,flow,saliency,grad_x_input,chefer,grad_sam"
run() { local out=$1; shift; if [ ! -s "$out" ]; then "$@" > "$out.tmp"; mv "$out.tmp" "$out"; fi; }
train() { local out=$1; shift; if [ ! -s "$out" ]; then $B train "$@" --out "$out" 2> "$out.log"; fi; }

# ExpNets: the shipped one (SST-2) and one per variant / task.
cp -n assets/expnet/minilm-sst2.safetensors $O/expnet-sst2.safetensors
if hx; then
train $O/expnet-hx.safetensors --model $HX --data hatexplain:$D/hatexplain#dev
for v in "z:--normalization z" "stats-z:--pooling stats --normalization z"; do
  name=${v%%:*}; flags=${v#*:}
  train $O/expnet-hx-$name.safetensors --model $HX --data hatexplain:$D/hatexplain#dev $flags
done
# HateXplain with 9x more training rationales: the ERASER train split (union of
# annotators), early-stopped on the raw dev split (majority gold, as the test).
train $O/expnet-hx-eraser.safetensors --model $HX --data hatexplain-eraser:$D/hatexplain#train --val hatexplain:$D/hatexplain#dev
train $O/expnet-hx-eraser-stats-z.safetensors --model $HX --data hatexplain-eraser:$D/hatexplain#train \
  --val hatexplain:$D/hatexplain#dev --pooling stats --normalization z
train $O/expnet-hx-eraser-cls-stats-z.safetensors --model $HX --data hatexplain-eraser:$D/hatexplain#train \
  --val hatexplain:$D/hatexplain#dev --pooling stats --normalization z --drop token_to_cls,received,self_attn
train $O/expnet-hx-eraser-cls-stats-z-top.safetensors --model $HX --data hatexplain-eraser:$D/hatexplain#train \
  --val hatexplain:$D/hatexplain#dev --pooling stats --normalization z --drop token_to_cls,received,self_attn,L0,L1,L2
train $O/expnet-hx-eraser-cls-stats-rank-top.safetensors --model $HX --data hatexplain-eraser:$D/hatexplain#train \
  --val hatexplain:$D/hatexplain#dev --pooling stats --normalization rank --drop token_to_cls,received,self_attn,L0,L1,L2
fi
# SST-2 variants for the cross-task direction SST-2 → HateXplain.
if sst; then
for v in "z:--normalization z" "stats-z:--pooling stats --normalization z" "low:--drop L4,L5" "stats-rank:--pooling stats --normalization rank" \
  "cls-stats-z:--pooling stats --normalization z --drop token_to_cls,received,self_attn" \
  "cls-stats-rank:--pooling stats --normalization rank --drop token_to_cls,received,self_attn" \
  "cls-stats-z-top:--pooling stats --normalization z --drop token_to_cls,received,self_attn,L0,L1,L2" \
  "cls-stats-rank-top:--pooling stats --normalization rank --drop token_to_cls,received,self_attn,L0,L1,L2" \
  "cls-stats-rank-top2:--pooling stats --normalization rank --drop token_to_cls,received,self_attn,L0,L1,L2,L3" \
  "nb2:--neighbours 2"; do
  name=${v%%:*}; flags=${v#*:}
  train $O/expnet-sst2-$name.safetensors --model $SST --data sst:$D/sst --val sst:$D/sst#dev $flags
done

# In-domain, whole test sets, plausibility (all methods that cost at most one backward pass).
run $O/sst2-test.md $B eval --model $SST --expnet $O/expnet-sst2.safetensors --data sst:$D/sst --split test \
  --no-faithfulness --format markdown --methods expnet,$BASE
# Faithfulness and occlusion on the first 150 examples; slow methods on 20.
run $O/sst2-150.md $B eval --model $SST --expnet $O/expnet-sst2.safetensors --data sst:$D/sst --split test --limit 150 \
  --format markdown --methods expnet,$BASE,occlusion
run $O/sst2-slow.md $B eval --model $SST --expnet $O/expnet-sst2.safetensors --data sst:$D/sst --split test --limit 20 \
  --format markdown --methods expnet,integrated_gradients,lime,kernel_shap
# Variants in-domain (ExpNet only; the baselines are in the tables above).
for v in -nb2 -cls-stats-z -z -stats-z; do
  run $O/sst2$v-test.md $B eval --model $SST --expnet $O/expnet-sst2$v.safetensors --data sst:$D/sst --split test \
    --no-faithfulness --format markdown --methods expnet
done
# Cross-domain, same model: SST-2 → ERASER Movies (first 40 windows).
run $O/movies.md $B eval --model $SST --expnet $O/expnet-sst2.safetensors --data movies:$D/movies --split test --limit 40 \
  --no-faithfulness --format markdown --methods expnet,attention,rollout,saliency,grad_x_input,chefer,grad_sam
fi

if hx; then
run $O/hx-test.md $B eval --model $HX --expnet $O/expnet-hx.safetensors --data hatexplain:$D/hatexplain --split test \
  --no-faithfulness --format markdown --methods expnet,$BASE
# Faithfulness and occlusion on the first 150 examples.
run $O/hx-150.md $B eval --model $HX --expnet $O/expnet-hx.safetensors --data hatexplain:$D/hatexplain --split test --limit 150 \
  --format markdown --methods expnet,$BASE,occlusion
# Slow methods on 20 examples.
run $O/hx-slow.md $B eval --model $HX --expnet $O/expnet-hx.safetensors --data hatexplain:$D/hatexplain --split test --limit 20 \
  --format markdown --methods expnet,integrated_gradients,lime,kernel_shap

# Cross-task, as in the paper: an ExpNet trained on one task explains the other task's classifier.
for v in "" "-z" "-stats-z" "-low" "-stats-rank" "-nb2" "-cls-stats-z" "-cls-stats-rank" "-cls-stats-z-top" "-cls-stats-rank-top" "-cls-stats-rank-top2"; do
  run $O/cross-sst2$v-to-hx.md $B eval --model $HX --expnet $O/expnet-sst2$v.safetensors --data hatexplain:$D/hatexplain \
    --split test --no-faithfulness --format markdown --methods expnet
done
for v in "" "-z" "-stats-z" "-eraser" "-eraser-stats-z" "-eraser-cls-stats-z" "-eraser-cls-stats-z-top" "-eraser-cls-stats-rank-top"; do
  run $O/cross-hx$v-to-sst2.md $B eval --model $SST --expnet $O/expnet-hx$v.safetensors --data sst:$D/sst \
    --split test --no-faithfulness --format markdown --methods expnet
done
# Variants in-domain (ExpNet only; the baselines are in the tables above).
for v in -eraser -eraser-stats-z -eraser-cls-stats-z; do
  run $O/hx$v-test.md $B eval --model $HX --expnet $O/expnet-hx$v.safetensors --data hatexplain:$D/hatexplain --split test \
    --no-faithfulness --format markdown --methods expnet
done
for v in -z -stats-z; do
  run $O/hx$v-test.md $B eval --model $HX --expnet $O/expnet-hx$v.safetensors --data hatexplain:$D/hatexplain --split test \
    --no-faithfulness --format markdown --methods expnet
done
fi
for f in $O/*.md; do echo "## $f"; cat "$f"; done
