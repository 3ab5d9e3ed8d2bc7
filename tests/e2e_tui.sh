#!/usr/bin/env bash
# End-to-end test of the terminal explorer in a real terminal (tmux).
#
#   tests/e2e_tui.sh [COMMAND...]
#
# COMMAND starts the explorer (default: target/debug/examples/tui_fake, built
# with `cargo build --example tui_fake`); e.g. `tests/e2e_tui.sh target/debug/expnet tui`.
# It types a sentence, waits for coloured tokens, moves around the head grid,
# toggles ExpNet/rollout, quits, and checks that the terminal left the
# alternate screen and the program exited 0. Exits non-zero on the first failure.
set -euo pipefail

if [ $# -eq 0 ]; then set -- target/debug/examples/tui_fake; fi
command -v tmux >/dev/null || { echo "FAIL: tmux is not installed"; exit 1; }
[ -x "$1" ] || command -v "$1" >/dev/null || { echo "FAIL: cannot run '$1' (build it first)"; exit 1; }

S="expnet-e2e-$$"
CMD=$(printf '%q ' "$@")
LOG=$(mktemp)
cleanup() { tmux kill-session -t "$S" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "---- screen ----"
  tmux capture-pane -t "$S" -p 2>/dev/null || true
  exit 1
}
screen() { tmux capture-pane -t "$S" -p; }
# wait_for PATTERN [SECONDS]: until the plain screen matches the regex.
wait_for() {
  local pat=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    if screen | grep -Eq -- "$pat"; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for /$pat/"
}
# poll_change FN OLD [SECONDS]: until `FN` prints something other than OLD; prints it.
poll_change() {
  local fn=$1 old=$2 secs=${3:-10} i v
  for ((i = 0; i < secs * 10; i++)); do
    v=$($fn)
    if [ -n "$v" ] && [ "$v" != "$old" ]; then echo "$v"; return 0; fi
    sleep 0.1
  done
  echo "$old"
}
head_label() { screen | grep -Eo 'Layer [0-9]+/[0-9]+ · (Head [0-9]+/[0-9]+|mean)' | head -n1; }
current_method() { screen | head -n1 | grep -Eo '[^ ]+ · [A-Za-z_-]+ *$' | awk '{print $1}'; }

tmux new-session -d -s "$S" -x 120 -y 40 \
  "env COLORTERM=truecolor TERM=xterm-256color $CMD 2>$LOG; echo \"__EXIT__ \$?\"; sleep 60"
tmux set-option -t "$S" remain-on-exit on >/dev/null

wait_for 'EDIT' 30
# The model may still be loading; typing must work anyway and not be lost.
tmux send-keys -t "$S" -l "this film is great fun"
wait_for 'this film is great fun' 5
wait_for '[1-9][0-9]* tokens' 120

# Coloured tokens: the line showing "great" in the tokens pane carries
# background colour escapes (truecolor or 256-colour).
ok=0
for _ in $(seq 1 600); do
  if tmux capture-pane -t "$S" -e -p | grep -F 'great' | grep -Eq $'\e\\[[0-9;]*4[8];[25];'; then ok=1; break; fi
  sleep 0.1
done
[ $ok = 1 ] || fail "no coloured token background on the 'great' line"
echo "ok: coloured tokens"

tmux send-keys -t "$S" Escape
wait_for ' NAV ' 5
tmux send-keys -t "$S" 2
wait_for 'Layer [0-9]+/[0-9]+ · Head' 5
before=$(head_label)
tmux send-keys -t "$S" Right
mid=$(poll_change head_label "$before")
tmux send-keys -t "$S" Down
after=$(poll_change head_label "$mid")
[ -n "$before" ] && [ "$before" != "$after" ] || fail "head label did not change ('$before' -> '$after')"
read -r _ l0 _ _ h0 <<<"${before//\// }"
read -r _ l1 _ _ h1 <<<"${after//\// }"
[ "$l1" != "$l0" ] && [ "$h1" != "$h0" ] || fail "Right/Down should move head and layer ('$before' -> '$after')"
echo "ok: head selection $before -> $after"

m0=$(current_method)
tmux send-keys -t "$S" r
m1=$(poll_change current_method "$m0")
tmux send-keys -t "$S" r
m2=$(poll_change current_method "$m1")
[ -n "$m0" ] && [ "$m0" != "$m1" ] && [ "$m0" = "$m2" ] || fail "r should toggle the method and back ('$m0' -> '$m1' -> '$m2')"
echo "ok: r toggles $m0 -> $m1 -> $m2"

tmux send-keys -t "$S" q
wait_for '__EXIT__' 10
screen | grep -q '__EXIT__ 0' || { cat "$LOG"; fail "explorer exited with an error"; }
alt=$(tmux display-message -p -t "$S" '#{alternate_on}')
[ "$alt" = 0 ] || fail "terminal still in the alternate screen after quitting"
echo "ok: quit, exit 0, alternate screen left"
echo "e2e_tui: 4 passed, 0 failed"
