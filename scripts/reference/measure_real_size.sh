#!/usr/bin/env bash
# Load time, forward / gradient time at 128 tokens and peak memory for the real-size random
# folders written by make_real_size.py. Usage: measure_real_size.sh DIR [EXPNET_BINARY]
set -euo pipefail
dir=${1:?folder written by make_real_size.py}
bin=${2:-target/release/expnet}
echo "| model | params (M) | weights MB | load s | load peak RSS MB | forward ms @128 | saliency ms @128 | bench peak RSS MB |"
echo "|---|---|---|---|---|---|---|---|"
for m in "$dir"/*/; do
  name=$(basename "$m")
  mb=$(du -m "$m/model.safetensors" | cut -f1)
  # Load + one 2-token forward: wall time ≈ load time.
  load=$( { /usr/bin/time -f "%e %M" "$bin" explain --model "$m" --methods attention "hi" >/dev/null; } 2>&1 | tail -1)
  bench=$( { /usr/bin/time -f "RSS %M" "$bin" bench --model "$m" --lengths 128 --methods saliency --repeats 3; } 2>&1)
  fwd=$(echo "$bench" | awk -F'|' '$2 ~ /forward/ && $3+0 == 128 {gsub(/ /,"",$4); print $4}')
  sal=$(echo "$bench" | awk -F'|' '$2 ~ /saliency/ && $3+0 == 128 {gsub(/ /,"",$4); print $4}')
  rss=$(echo "$bench" | awk '/^RSS/ {print int($2/1024)}')
  params=$(python3 -c "print(round($mb*1024*1024/4/1e6,1))")
  echo "| $name | $params | $mb | ${load% *} | $(( ${load#* } / 1024 )) | $fwd | $sal | $rss |"
done
