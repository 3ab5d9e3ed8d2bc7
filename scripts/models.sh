#!/usr/bin/env bash
# Rebuilds the classifiers the experiments need, each only when missing, under
# ~/.cache/expnet-models/ (or MODELS=DIR). Commands and what each reached: docs/MODELS.md.
#
#   scripts/models.sh [NAME...]     NAMEs: movies hatexplain esnli (default: all three)
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

for what in "${@:-movies hatexplain esnli}"; do
  for w in $what; do
    case $w in
      movies) build minilm-movies --data "movies:$DATA/movies" --epochs 2 --max-len 128 ;;
      hatexplain) build minilm-hatexplain --data "hatexplain:$DATA/hatexplain" --epochs 2 --max-len 128 ;;
      esnli) build minilm-esnli --data "esnli:$DATA/esnli#dev" --epochs 2 --max-len 64 ;;
      *) echo "unknown model $w (movies, hatexplain, esnli)" >&2; exit 2 ;;
    esac
  done
done
