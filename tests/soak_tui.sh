#!/usr/bin/env bash
# Soak test of the terminal explorer in a real pty (tmux), as abuse from a
# user, a terminal and a supervisor would look:
#
#   tests/soak_tui.sh [--keys N] COMMAND...
#
# Starts COMMAND under `sh` (dash on Debian: it does not repair the tty for
# us) in a temporary folder, sends N random keys (default 3000) in bursts
# with pastes whose line breaks are CR (as tmux sends them) and window
# resizes in between, checks a CR paste becomes "here second", suspends and
# resumes with SIGTSTP/SIGCONT, then sends SIGTERM and checks: no panic, the
# process exits within seconds with 143, and the terminal left the alternate
# screen, shows the cursor, stopped mouse reporting and is in cooked mode.
# Exits non-zero on the first failure.
set -euo pipefail

KEYS=3000
if [ "${1:-}" = "--keys" ]; then KEYS=$2; shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [--keys N] COMMAND..."; exit 2; }
command -v tmux >/dev/null || { echo "FAIL: tmux is not installed"; exit 1; }

S="expnet-soak-$$"
WORK=$(mktemp -d)
LOG="$WORK/stderr.log"
CMD=$(printf '%q ' "$@")
cleanup() { tmux kill-session -t "$S" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "---- screen ----"; tmux capture-pane -t "$S" -p 2>/dev/null || true
  echo "---- stderr ----"; cat "$LOG" 2>/dev/null || true
  exit 1
}
screen() { tmux capture-pane -t "$S" -p; }
fmt() { tmux display-message -p -t "$S" "$1"; }
wait_for() {
  local pat=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    if screen | grep -Eq -- "$pat"; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for /$pat/"
}
# wait_until SECONDS COMMAND...: until COMMAND succeeds.
wait_until() {
  local secs=$1 i; shift
  for ((i = 0; i < secs * 10; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}
tty_cooked() { stty -F "$TTY" -a | grep -Eq '(^| )icanon( |$)' && stty -F "$TTY" -a | grep -Eq '(^| )echo( |$)'; }
alt_is() { [ "$(fmt '#{alternate_on}')" = "$1" ]; }
stopped() { ps -o stat= -p "$PID" | grep -q '^T'; }

tmux new-session -d -s "$S" -c "$WORK" -x 100 -y 30 \
  "sh -c '$CMD 2>$LOG; echo __EXIT__ \$?; sleep 120'"
tmux set-option -t "$S" remain-on-exit on >/dev/null
TTY=$(fmt '#{pane_tty}')
wait_for 'EDIT' 30
# The explorer is a descendant of the pane's shell (sh, maybe under $SHELL).
find_pid() {
  local p c want
  p=$(fmt '#{pane_pid}')
  want=$(basename "$1" | cut -c1-15)
  for _ in 1 2 3 4; do
    c=$(ps -o pid= --ppid "$p" | tr -d ' ' | head -n1)
    [ -n "$c" ] || return 0
    if [ "$(ps -o comm= -p "$c")" = "$want" ]; then echo "$c"; return 0; fi
    p=$c
  done
}
PID=$(find_pid "$1")
[ -n "$PID" ] || fail "cannot find the explorer's process"
alt_is 1 || fail "the explorer did not enter the alternate screen"

# Random keys: no q / Ctrl-C / Ctrl-Z (they quit or stop; tested below).
NAMED=(Escape Enter Tab BTab Left Right Up Down PageUp PageDown Home End BSpace DC F1 C-w C-u C-k C-t C-a C-e 1 2 3 4 i / r m M w a t e y o '?' Space)
PRINT='abcdefghijklmnoprstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!-éü漢' # no ';' (a tmux command separator)
SIZES=("100 30" "40 12" "120 40" "39 11" "60 16" "200 50" "80 24")
sent=0
burst=0
while [ "$sent" -lt "$KEYS" ]; do
  args=()
  for _ in $(seq 1 40); do
    if ((RANDOM % 3 == 0)); then
      args+=("${PRINT:RANDOM % ${#PRINT}:1}")
    else
      args+=("${NAMED[RANDOM % ${#NAMED[@]}]}")
    fi
  done
  tmux send-keys -t "$S" "${args[@]}"
  sent=$((sent + ${#args[@]}))
  burst=$((burst + 1))
  if ((burst % 5 == 0)); then
    read -r w h <<<"${SIZES[RANDOM % ${#SIZES[@]}]}"
    tmux resize-window -t "$S" -x "$w" -y "$h"
  fi
  if ((burst % 7 == 0)); then
    tmux set-buffer -b soak "pasted line one"$'\r'"line two"$'\r\n'"three"
    tmux paste-buffer -p -b soak -t "$S"
  fi
  sleep 0.02
done
echo "ok: $sent random keys, $burst bursts with resizes and CR pastes"
kill -0 "$PID" 2>/dev/null || fail "the explorer died during the key storm"

# A CR paste into an empty input reads as two words, not one glued word.
tmux resize-window -t "$S" -x 100 -y 30
tmux send-keys -t "$S" Escape Escape Escape Escape
sleep 0.2
tmux send-keys -t "$S" i C-e C-u
tmux set-buffer -b soak "here"$'\r'"second"
tmux paste-buffer -p -b soak -t "$S"
wait_for 'here second' 10
echo "ok: CR paste became a space"

# Suspend from outside: terminal restored while stopped, set up again after SIGCONT.
kill -TSTP "$PID"
wait_until 5 stopped || fail "SIGTSTP did not stop the explorer"
alt_is 0 || fail "stopped explorer left the alternate screen on"
tty_cooked || fail "stopped explorer left the terminal raw: $(stty -F "$TTY" -a | head -n4)"
kill -CONT "$PID"
wait_until 5 alt_is 1 || fail "SIGCONT did not bring the explorer back"
wait_for 'here second' 5
echo "ok: SIGTSTP restores the terminal, SIGCONT redraws"

kill -TERM "$PID"
wait_for '__EXIT__' 5
code=$(screen | grep -Eo '__EXIT__ [0-9]+' | awk '{print $2}')
[ "$code" = 143 ] || fail "exit status after SIGTERM: $code (want 143)"
alt_is 0 || fail "terminal still in the alternate screen after SIGTERM"
[ "$(fmt '#{cursor_flag}')" = 1 ] || fail "cursor hidden after SIGTERM"
[ "$(fmt '#{mouse_any_flag}')" = 0 ] || fail "mouse reporting left on after SIGTERM"
tty_cooked || fail "terminal left raw after SIGTERM: $(stty -F "$TTY" -a | head -n4)"
if grep -Eq 'panicked|RUST_BACKTRACE' "$LOG"; then fail "panic on stderr"; fi
echo "ok: SIGTERM exits 143 with the terminal restored, no panic"
echo "soak_tui: 4 passed, 0 failed"
