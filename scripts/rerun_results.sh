#!/usr/bin/env bash
# Reruns every table of docs/RESULTS.md, e.g. after the embedded classifier or
# its ExpNet changed (issue 12: the classifier may only be replaced together
# with a rerun of all of them). Each part resumes from what exists under ROOT,
# so an interrupted run (or a session that ends) continues where it stopped.
#
#   scripts/rerun_results.sh ROOT PART...
#
# PARTs, in the order they were run in session 11 (two single-threaded parts
# at a time share the 2 cores well; `models` first):
#   models     the classifiers the tables read (scripts/models.sh: the full and
#              quick HateXplain ones, the quick e-SNLI one, Movies)
#   sst        scripts/results.sh PART=sst (in-domain SST-2, Movies) + ablation
#   hx         scripts/results.sh PART=hx (in-domain HateXplain, cross-task)
#   transfer   shape-free transfer (scripts/transfer.sh), decomposition variants
#              over two and three tasks, residual-on-ALTI variants
#   transfer4  the four-task and gradient-feature variants, and the shipped
#              transfer ExpNet (scripts/models.sh transfer-expnet: it rewrites
#              assets/expnet/transfer.safetensors)
#   distill    occlusion-teacher distillation tables (2,300 and 800 texts, all
#              8,534 SST-2 train sentences, contextual students, faithfulness)
#   ks         the KernelSHAP-teacher distillation (500 samples, a 4,000-sample
#              reference on the 300 test texts): the longest part, hours on 2 cores
#   python     the PyTorch research rows (occlusion variants, encoder students);
#              needs the pyref venv of the developers' guide (PY=python)
#
# EXPNET_BIN=path uses that binary; by default target/release/expnet is (re)built first,
# so the tables never come from a binary that embeds the previous assets.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:?usage: scripts/rerun_results.sh ROOT PART... (see the header)}
shift
mkdir -p "$ROOT"
ROOT=$(realpath "$ROOT")
D=${DATA:-../shared/data}
M=${MODELS:-$HOME/.cache/expnet-models}
PY=${PY:-$HOME/.cache/pyref/bin/python}
[ -n "${EXPNET_BIN:-}" ] || cargo build --release --locked
export EXPNET_BIN=${EXPNET_BIN:-$PWD/target/release/expnet}
E=$EXPNET_BIN
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
T=$ROOT/transfer
step() { echo "== $1 ($(date -u +%H:%M:%S))"; }
# One feature cache for every transfer folder: each task's rows are extracted once.
shared_cache() { for d in "$@"; do mkdir -p "$T/$d" "$T/cache"; ln -sfn "$T/cache" "$T/$d/cache"; done; }

for part in "$@"; do
  case $part in
    models)
      step models
      scripts/models.sh hatexplain hatexplain-quick esnli-quick movies ;;
    sst)
      step "results.sh, SST-2 part"
      PART=sst OUT=$ROOT/results scripts/results.sh "$D" "$M/minilm-hatexplain" "$E"
      step ablation
      OUT=$ROOT/ablation scripts/ablation.sh "$D" "$E" > "$ROOT/ablation.md" ;;
    hx)
      step "results.sh, HateXplain part"
      PART=hx OUT=$ROOT/results scripts/results.sh "$D" "$M/minilm-hatexplain" "$E" ;;
    transfer)
      shared_cache transfer transfer-decomp transfer-decomp-3
      step transfer.sh
      scripts/transfer.sh "$T/transfer"
      step "decomposition, two tasks"
      scripts/transfer_decomp.sh "$T/transfer-decomp" dcls dall donly
      step "decomposition and residual on ALTI, three tasks"
      TASKS="sst hx nli" scripts/transfer_decomp.sh "$T/transfer-decomp-3" attcls dcls donly dnopos donlynopos \
        dsmall aonly aonlysmall gcls aprior dprior gprior ;;
    transfer4)
      shared_cache transfer-decomp-4 transfer-grad-3 transfer-grad-4
      step "the shipped transfer ExpNet"
      scripts/models.sh transfer-expnet
      step "four tasks"
      TASKS="sst hx nli mov" BASELINES=attention,rollout,value_norm,alti,globenc GRADIENTS=1 \
        scripts/transfer_decomp.sh "$T/transfer-decomp-4" gcls
      step "gradient features, three tasks"
      TASKS="sst hx nli" scripts/transfer_decomp.sh "$T/transfer-grad-3" ggrad ggradz gronly gsprior agrad grnopos
      step "gradient features, four tasks"
      TASKS="sst hx nli mov" BASELINES=attention,rollout,value_norm,alti,globenc \
        scripts/transfer_decomp.sh "$T/transfer-grad-4" ggrad
      step "the shipped transfer ExpNet on classifiers it never saw"
      for c in "minilm-movies movies:$D/movies movies" "minilm-sst2-retrain sst:$D/sst sst2-retrain" "minilm-movies sst:$D/sst movies-on-sst2"; do
        set -- $c
        [ -f "$M/$1/config.json" ] || { echo "skipped: no $M/$1 (docs/MODELS.md)"; continue; }
        [ -s "$T/shipped-$3.md" ] || "$E" eval --model "$M/$1" --data "$2" --split test --limit 200 \
          --methods attention,alti,saliency,expnet --no-faithfulness --format markdown > "$T/shipped-$3.md"
      done ;;
    distill)
      O=$ROOT/distill
      step "distillation, 2,300 texts"
      LIMIT=2300 scripts/distill.sh "$O" all full score-all score-decision score-full
      for v in all full; do
        [ -s "$O/eval-$v-2300.md" ] || "$E" eval --data "sst:$D/sst" --split test --limit 300 --expnet "$O/$v-2300.safetensors" \
          --methods expnet,occlusion --format markdown > "$O/eval-$v-2300.md"
      done
      step "distillation, 800 texts"
      LIMIT=800 scripts/distill.sh "$O" w1-attention w1-lens w1-hidden w1-all w1-all-mse w1-all-rank score-all
      step "distillation, all 8,534 SST-2 train sentences"
      python3 scripts/research/sst_sentences.py "$D/sst/train.txt" > "$O/sst-train-all.txt"
      cp -n "$O/occlusion-sst.teacher.jsonl" "$O/occ-sst-all.teacher.jsonl"
      [ -s "$O/full-8534.json" ] || "$E" distill --teacher occlusion --input "$O/sst-train-all.txt" --val-fraction 0.15 \
        --test "sst:$D/sst#test" --test-limit 300 --cache "$O/occ-sst-all.teacher.jsonl" \
        --out "$O/full-8534.safetensors" --no-register > "$O/full-8534.json"
      [ -s "$O/eval-full-8534.md" ] || "$E" eval --data "sst:$D/sst" --split test --limit 300 --expnet "$O/full-8534.safetensors" \
        --methods expnet,occlusion --format markdown > "$O/eval-full-8534.md"
      step "contextual students"
      LIMIT=2300 scripts/distill.sh "$O" score-full-ctx full-ctx ;;
    ks)
      step "KernelSHAP teacher"
      RAYON_NUM_THREADS=${KS_THREADS:-2} LIMIT=2400 TEACHER=kernel-shap SAMPLES=500 REFERENCE=4000 \
        scripts/distill.sh "$ROOT/distill-ks" full
      "$PY" scripts/research/ks_reference_agreement.py "$ROOT/distill-ks/kernel-shap-500-sst.teacher.jsonl" \
        "$ROOT/distill-ks/full-kernel-shap-500-2400.safetensors" "$E" > "$ROOT/distill-ks/reference-agreement.txt" ;;
    python)
      O=$ROOT/distill
      step "occlusion variants (transformers)"
      "$PY" scripts/research/occlusion_variants.py "$O/occlusion-sst.teacher.jsonl" > "$O/occlusion-variants.txt"
      step "encoder students (PyTorch)"
      for k in "2 occ-sst-all.teacher.jsonl --texts $O/sst-train-all.txt --epochs 5" "6 occ-sst-all.teacher.jsonl --texts $O/sst-train-all.txt --epochs 5" \
               "2 occlusion-sst.teacher.jsonl --epochs 6" "6 occlusion-sst.teacher.jsonl --epochs 5"; do
        set -- $k
        log=$O/encoder-student-k$1-${2%%.*}.log
        [ -s "$log" ] || "$PY" scripts/research/encoder_student.py "$O/$2" --layers "$1" "${@:3}" > "$log" 2>&1
      done ;;
    *) echo "unknown part $part (models sst hx transfer transfer4 distill ks python)" >&2; exit 2 ;;
  esac
done
