#!/usr/bin/env bash
# `infertap top` in a real terminal: an 80x24 tmux pane runs the live view against a fake agent
# (test/unit/inspect/fake_agent_main.cc: the example state of docs/serving.md, 20 records/s of default/llama, a
# connection count that grows with every /v1/state request). Asserts the frame (header, column
# titles, the pool and model rows with the right numbers, footer), that it refreshes, that a
# resize redraws for the new size, that it survives the agent restarting, that `q` and Ctrl-C exit 0 and give the terminal back (echo
# and canonical mode restored, alternate screen left). Needs tmux, no root.
#
# usage: top_tmux_test.sh INFERTAP DRIVER FAKE_AGENT
#   INFERTAP    the infertap binary: used when it exists and has the `top` subcommand
#   DRIVER      test/unit/inspect's top_cli_driver (same RegisterTop), used otherwise
#   FAKE_AGENT  the top_fake_agent binary
set -euo pipefail

# Prefer the real infertap binary when it is built and has `top`; the driver runs the same code.
cli=$2
fake=$3
if [[ -x $1 ]] && "$1" top --help > /dev/null 2>&1; then cli=$1; fi
# A missing tmux skips (exit 77, CTest's SKIP_RETURN_CODE) on a developer's machine and fails
# under INFERTAP_REQUIRE_BPF=1 (CI), where scripts/install-deps.sh must have installed it.
if ! command -v tmux > /dev/null; then
  if [[ ${INFERTAP_REQUIRE_BPF:-} == 1 ]]; then
    echo "FAIL: INFERTAP_REQUIRE_BPF=1, but tmux is not installed (scripts/install-deps.sh)"; exit 1
  fi
  echo "SKIP: tmux is not installed"; exit 77
fi

tmp=$(mktemp -d)
# A private tmux server (-S) with no user config: never touches the user's sessions.
tm() { tmux -S "$tmp/sock" -f /dev/null "$@"; }
fake_pid=
cleanup() {
  tm kill-server 2> /dev/null || true
  [[ -n $fake_pid ]] && kill "$fake_pid" 2> /dev/null && wait "$fake_pid" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- pane ---" >&2
  tm capture-pane -p -t "${session:-top}" >&2 2> /dev/null || true
  exit 1
}

# pane: the visible lines of the pane (tmux trims trailing blanks).
pane() { tm capture-pane -p -t "$session"; }
line() { pane | sed -n "$1p"; }

# wait_for SECONDS COMMAND...: retries COMMAND every 0.1 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# start_fake [PORT]: (re)starts the fake agent, on PORT if given.
start_fake() {
  rm -f "$tmp/port"
  "$fake" --port-file "$tmp/port" --rate 20 ${1:+--port "$1"} &
  fake_pid=$!
  wait_for 5 test -s "$tmp/port" || fail "fake agent did not start"
}
start_fake
port=$(cat "$tmp/port")
url="http://127.0.0.1:$port"

# start NAME: runs top in a new 80x24 session; afterwards the shell records the exit code and
# the terminal modes, then stays, so the pane keeps showing what top left behind.
start() {
  session=$1
  tm new-session -d -s "$session" -x 80 -y 24 \
    "TZ=UTC TERM=xterm '$cli' top --agent '$url'; echo \$? > '$tmp/$session.exit'; \
     stty -a > '$tmp/$session.stty'; echo AFTER-TOP; sleep 60"
}

# --- session 1: frame, refresh, resize, q ---
start top
has_frame() { [[ $(line 24) == "q quit"* ]]; }
wait_for 5 has_frame || fail "no frame with a footer on line 24"

title=$(line 1)
[[ $title =~ ^"infertap top  node n1  agent $url "\ +[0-9]{2}:[0-9]{2}:[0-9]{2}$ ]] ||
  fail "title line: '$title'"
((${#title} == 80)) || fail "title line is ${#title} columns, want 80 (clock right-aligned)"
[[ $(line 4) == "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%" ]] ||
  fail "column titles: '$(line 4)'"

# After ~2 s of 20 records/s the rates are measured over those seconds: about 20 req/s, 200
# input and 2000 output tokens/s. The rest of the row is exact.
sleep 2.2
row=$(pane | grep '^default ') || fail "no pool row"
read -r name rps infl err p50 p99 ttft ins outs queue kv <<< "$row"
awk -v v="$rps" 'BEGIN { exit !(v >= 15 && v <= 25) }' || fail "req/s $rps not ~20: '$row'"
awk -v v="$ins" 'BEGIN { exit !(v >= 150 && v <= 250) }' || fail "in/s $ins not ~200: '$row'"
awk -v v="$outs" 'BEGIN { exit !(v >= 1500 && v <= 2500) }' || fail "out/s $outs not ~2000"
[[ "$infl $err $p50 $p99 $ttft $queue $kv" == "2 0.0% 0.500s 0.500s 0.050s 0.5 12%" ]] ||
  fail "pool row: '$row'"
pane | grep -q '^  llama  ' || fail "no model row under the pool"
[[ $(line 2) =~ ^"req/s "[0-9.]+"  in-flight 2  err 0.0%  pods 1/1  conns "[0-9]+"  lost 0  parse-err 0"$ ]] ||
  fail "totals line: '$(line 2)'"

# Refresh: every frame fetches /v1/state, whose connection count the fake agent increments.
conns() { line 2 | sed -E 's/.*conns ([0-9]+).*/\1/'; }
first_conns=$(conns)
first_clock=${title: -8}
refreshed() { (($(conns) >= first_conns + 2)) && [[ $(line 1) != *"$first_clock" ]]; }
wait_for 4 refreshed || fail "no refresh: conns stayed near $first_conns"

# Resize: SIGWINCH redraws for 60x20 at once, with the narrow column set and the footer at 20.
tm resize-window -t top -x 60 -y 20
narrow() {
  [[ $(line 4) == "POOL / MODEL       REQ/S INFL  ERR%    P50   TTFT QUEUE  KV%" ]] &&
    [[ $(line 20) == "q quit"* ]]
}
wait_for 3 narrow || fail "no redraw for 60x20"

# The agent goes away: the view stays up and says so; it comes back: the view reconnects.
kill "$fake_pid"
wait "$fake_pid" || true
unreachable() { [[ $(pane | tail -1) == "q quit  agent unreachable (Couldn't connect to server)"* ]]; }
wait_for 4 unreachable || fail "no 'agent unreachable' in the footer"
start_fake "$port"
recovered() { [[ $(pane | tail -1) == "q quit  rates over "* ]] && pane | grep -qE '^default +[1-9]'; }
wait_for 5 recovered || fail "did not reconnect to the restarted agent"

tm send-keys -t top q
wait_for 3 test -s "$tmp/top.exit" || fail "q did not quit"
[[ $(cat "$tmp/top.exit") == 0 ]] || fail "exit code $(cat "$tmp/top.exit") after q"
grep -qw -- '-icanon' "$tmp/top.stty" && fail "terminal left in raw mode"
grep -qw -- '-echo' "$tmp/top.stty" && fail "terminal left without echo"
wait_for 2 sh -c "tmux -S '$tmp/sock' capture-pane -p -t top | grep -q AFTER-TOP" ||
  fail "shell output missing after exit"
pane | grep -q 'POOL / MODEL' && fail "the frame is still on screen: alternate screen not left"

# --- session 2: Ctrl-C quits with 0 too ---
start ctrlc
wait_for 5 has_frame || fail "no frame in the second session"
tm send-keys -t ctrlc C-c
wait_for 3 test -s "$tmp/ctrlc.exit" || fail "Ctrl-C did not quit"
[[ $(cat "$tmp/ctrlc.exit") == 0 ]] || fail "exit code $(cat "$tmp/ctrlc.exit") after Ctrl-C"
grep -qw -- '-icanon' "$tmp/ctrlc.stty" && fail "terminal left in raw mode after Ctrl-C"

echo "PASS: top in tmux via $cli (frame, refresh, resize, agent restart, q, Ctrl-C)"
