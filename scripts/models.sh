#!/usr/bin/env bash
# Rebuilds the classifiers the experiments need, each only when missing, under
# ~/.cache/expnet-models/ (or MODELS=DIR). Commands and what each reached: docs/MODELS.md.
#
#   scripts/models.sh [NAME...]     NAMEs: movies hatexplain esnli (default: all three),
#                                   sst2-phrases (SST-2 on every polar phrase, docs/MODELS.md),
#                                   hatexplain-quick esnli-quick (the transfer experiments'),
#                                   transfer-expnet (rebuilds assets/expnet/transfer.safetensors
#                                   from the two quick classifiers and the embedded one)
#
# Needs the release binary (cargo build --release) or EXPNET_BIN, and the base encoder
# (fetched with ../shared/scripts/fetch-base-model.sh when BASE is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MODELS:-$HOME/.cache/expnet-models}
DATA=${DATA:-../shared/data}
BASE=${BASE:-/work/base-model}
BIN=${EXPNET_BIN:-target/release/expnet}
[ -x "$BIN" ] || cargo build --release --locked
[ -f "$BASE/model.safetensors" ] || bash ../shared/scripts/fetch-base-model.sh "$BASE"
mkdir -p "$M"

build() { # NAME then finetune arguments
  local name=$1; shift
  if [ -f "$M/$name/model.safetensors" ]; then echo "$name: present"; return; fi
  echo "$name: training ($(date -u +%H:%M:%S))"
  local t0=$SECONDS
  "$BIN" finetune --base "$BASE" --out "$M/$name" "$@" 2>&1 | tr '\r' '\n' | grep --line-buffered -v ' ETA ' | tee "$M/$name.log"
  echo "$name: $((SECONDS - t0)) s" | tee -a "$M/$name.log"
}

# The shipped shape-free ExpNet (issue 11): the validation-selected `gcls` variant of
# scripts/transfer_decomp.sh trained on SST-2, HateXplain and e-SNLI rationales, each
# read through its own classifier. Run from the models folder so the file records the
# classifiers by folder name, not by this machine's paths.
transfer_expnet() {
  local out=$PWD/assets/expnet/transfer.safetensors bin data
  bin=$(realpath "$BIN"); data=$(realpath "$DATA")
  (cd "$M" && "$bin" train --data "sst:$data/sst,hatexplain:$data/hatexplain#dev@minilm-hatexplain-quick,esnli:$data/esnli#dev@minilm-esnli-quick" \
      --depth-bins 4 --normalization rank --decomposition value_norm,alti,globenc --drop token_to_cls,received,self_attn \
      --out "$out" --cache "$M/transfer-expnet-cache") 2>&1 | tee "$M/transfer-expnet.log"
}

for what in "${@:-movies hatexplain esnli}"; do
  for w in $what; do
    case $w in
      movies) build minilm-movies --data "movies:$DATA/movies" --epochs 2 --max-len 128 ;;
      hatexplain) build minilm-hatexplain --data "hatexplain:$DATA/hatexplain" --epochs 2 --max-len 128 ;;
      esnli) build minilm-esnli --data "esnli:$DATA/esnli#dev" --epochs 2 --max-len 64 ;;
      sst2-phrases) build minilm-sst2-phrases --data "sst-phrases:$DATA/sst" --epochs 2 --f16 ;;
      hatexplain-quick) build minilm-hatexplain-quick --data "hatexplain:$DATA/hatexplain" --epochs 1 --max-len 64 --limit 4000 ;;
      esnli-quick) build minilm-esnli-quick --data "esnli:$DATA/esnli#dev" --epochs 1 --max-len 64 --limit 4000 ;;
      transfer-expnet)
        build minilm-hatexplain-quick --data "hatexplain:$DATA/hatexplain" --epochs 1 --max-len 64 --limit 4000
        build minilm-esnli-quick --data "esnli:$DATA/esnli#dev" --epochs 1 --max-len 64 --limit 4000
        transfer_expnet ;;
      *) echo "unknown model $w (movies, hatexplain, esnli, sst2-phrases, hatexplain-quick, esnli-quick, transfer-expnet)" >&2; exit 2 ;;
    esac
  done
done
