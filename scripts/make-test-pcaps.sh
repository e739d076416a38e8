#!/usr/bin/env bash
# Regenerates the committed packet captures in test/data/ (what each holds and the values a replay
# test asserts are in test/data/README.md; keep the two in sync).
#
# Real traffic, real capture: infertap-sim on loopback, curl as the client, tcpdump started before
# the traffic and stopped after it. Needs root (tcpdump), tcpdump, curl, and infertap-sim: taken
# from $INFERTAP_SIM, else build/infertap-sim, else built into build/.
#
# Usage: sudo scripts/make-test-pcaps.sh [OUTDIR]   (default: test/data)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/test/data}
MODEL=meta-llama/Llama-3.1-8B-Instruct
# Fixed ports (one per capture) so each BPF filter sees only its own traffic.
PORT_BASE=18100

die() { echo "make-test-pcaps: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (tcpdump on lo)"
command -v tcpdump >/dev/null || die "tcpdump not found (apt-get install -y tcpdump)"
command -v curl >/dev/null || die "curl not found"

# Capture in a private network namespace: its loopback carries only this script's traffic, so
# concurrent tests on the host's lo can neither collide with the ports nor overflow the capture
# ring (which drops packets and leaves holes in the committed files).
if [[ -z ${MAKE_TEST_PCAPS_NETNS:-} ]]; then
  exec unshare --net env MAKE_TEST_PCAPS_NETNS=1 "$0" "$@"
fi
ip link set lo up

SIM=${INFERTAP_SIM:-$ROOT/build/infertap-sim}
if [[ ! -x $SIM ]]; then
  cmake -S "$ROOT" -B "$ROOT/build" >/dev/null
  make -C "$ROOT/build" -j"$(nproc)" infertap-sim >/dev/null
  SIM=$ROOT/build/infertap-sim
fi

WORK=$(mktemp -d)
SIM_PID=
DUMP_PID=
cleanup() {
  [[ -n $DUMP_PID ]] && kill -TERM "$DUMP_PID" 2>/dev/null || true
  [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

# start_sim LISTEN: one fresh simulator per capture, so /metrics counters start from zero.
start_sim() {
  : >"$WORK/sim.out"
  "$SIM" --listen "$1" --model "$MODEL" >"$WORK/sim.out" 2>"$WORK/sim.err" &
  SIM_PID=$!
  for _ in $(seq 100); do grep -q listening "$WORK/sim.out" && return; sleep 0.05; done
  die "infertap-sim did not start: $(cat "$WORK/sim.err")"
}
stop_sim() { kill "$SIM_PID"; wait "$SIM_PID" || true; SIM_PID=; }

# start_dump IFACE PORT: --immediate-mode and -U hand each packet to the file as it comes (by
# default packets wait in a ring block that is lost when tcpdump is stopped); -B 32 MiB because
# the "any" device sees every loopback packet twice (out and in, libpcap discards one copy) and
# overflowed the default 2 MiB ring even in an idle namespace; -Z root keeps write access to $WORK.
start_dump() {
  tcpdump -i "$1" -B 32768 --immediate-mode -U -Z root -w "$WORK/cap.pcap" "tcp port $2" 2>"$WORK/dump.err" &
  DUMP_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$WORK/dump.err" && return; sleep 0.05; done
  die "tcpdump did not start: $(cat "$WORK/dump.err")"
}
# stop_dump NAME: lets the last ACKs and FINs reach the capture, then moves it into place.
stop_dump() {
  sleep 0.3
  kill -TERM "$DUMP_PID"
  wait "$DUMP_PID" || true
  DUMP_PID=
  grep -q "^0 packets dropped by kernel" "$WORK/dump.err" ||
    die "$1: the capture dropped packets: $(tr '\n' ' ' <"$WORK/dump.err")"
  mv "$WORK/cap.pcap" "$OUT/$1"
  echo "$1: $(stat -c %s "$OUT/$1") bytes"
}

syns() { tcpdump -nr "$1" 'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn' 2>/dev/null | wc -l; }
expect() { [[ $2 == "$3" ]] || die "$1: expected $3, got $2"; }

CHAT='{"model":"'$MODEL'","messages":[{"role":"user","content":"say hello to the pcap"}]'

# (a) One streaming chat completion with include_usage: 8 completion tokens, 5 prompt words.
P=$((PORT_BASE + 1))
start_sim 127.0.0.1:$P
start_dump lo $P
curl -sS -N -o "$WORK/a.out" -H 'content-type: application/json' -H 'x-sim-tokens: 8' \
  -H 'x-sim-itl-ms: 2' \
  -d "$CHAT"',"stream":true,"stream_options":{"include_usage":true}}' \
  http://127.0.0.1:$P/v1/chat/completions
stop_dump vllm_chat_stream_include_usage.pcap
stop_sim
expect a-tokens "$(grep -c '"content":"tok' "$WORK/a.out")" 8
expect a-usage "$(grep -c '"completion_tokens":8' "$WORK/a.out")" 1

# (b) One keep-alive connection, four exchanges (curl --next reuses the connection):
#     non-streaming chat (5 tokens), streaming completion with usage (4 tokens), a 400, GET /metrics.
P=$((PORT_BASE + 2))
start_sim 127.0.0.1:$P
start_dump lo $P
curl -sS -N -o "$WORK/b1.out" -H 'content-type: application/json' -H 'x-sim-tokens: 5' \
  -d "$CHAT"'}' http://127.0.0.1:$P/v1/chat/completions \
  --next -sS -N -o "$WORK/b2.out" -H 'content-type: application/json' -H 'x-sim-tokens: 4' \
  -H 'x-sim-itl-ms: 2' \
  -d '{"model":"'$MODEL'","prompt":"one two three","stream":true,"stream_options":{"include_usage":true}}' \
  http://127.0.0.1:$P/v1/completions \
  --next -sS -o "$WORK/b3.out" -H 'content-type: application/json' -H 'x-sim-status: 400' \
  -d "$CHAT"'}' http://127.0.0.1:$P/v1/chat/completions \
  --next -sS -o "$WORK/b4.out" http://127.0.0.1:$P/metrics
stop_dump vllm_keepalive_mixed.pcap
stop_sim
expect b-connections "$(syns "$OUT/vllm_keepalive_mixed.pcap")" 1
expect b1-usage "$(grep -c '"completion_tokens":5' "$WORK/b1.out")" 1
expect b2-tokens "$(grep -c '"text":"tok' "$WORK/b2.out")" 4
expect b3-error "$(grep -c '"error"' "$WORK/b3.out")" 1

# (c) Streaming chat, 6 tokens asked, error event after 3 (HTTP 200 already sent).
P=$((PORT_BASE + 3))
start_sim 127.0.0.1:$P
start_dump lo $P
curl -sS -N -o "$WORK/c.out" -H 'content-type: application/json' -H 'x-sim-tokens: 6' \
  -H 'x-sim-midstream-error-after: 3' -H 'x-sim-itl-ms: 2' \
  -d "$CHAT"',"stream":true,"stream_options":{"include_usage":true}}' \
  http://127.0.0.1:$P/v1/chat/completions
stop_dump vllm_midstream_error.pcap
stop_sim
expect c-tokens "$(grep -c '"content":"tok' "$WORK/c.out")" 3
expect c-error "$(grep -c '"error"' "$WORK/c.out")" 1

# (d) Client gives up mid-stream: tokens every 300 ms after a 10 ms first token, curl stops at
#     1 s, so exactly 4 tokens (at ~10, 310, 610, 910 ms) reach it; then curl closes the socket.
P=$((PORT_BASE + 4))
start_sim 127.0.0.1:$P
start_dump lo $P
curl -sS -N -o "$WORK/d.out" --max-time 1 -H 'content-type: application/json' \
  -H 'x-sim-tokens: 20' -H 'x-sim-ttft-ms: 10' -H 'x-sim-itl-ms: 300' \
  -d "$CHAT"',"stream":true,"stream_options":{"include_usage":true}}' \
  http://127.0.0.1:$P/v1/chat/completions || true  # exit 28: timeout, expected
sleep 0.5  # the server's next write after the close meets the RST
stop_dump vllm_client_abort.pcap
stop_sim
expect d-tokens "$(grep -c '"content":"tok' "$WORK/d.out")" 4

# (e) IPv6 on [::1], captured on the "any" pseudo-interface (link type LINUX_SLL2): streaming
#     chat with usage, 3 tokens.
P=$((PORT_BASE + 5))
start_sim "[::1]:$P"
start_dump any $P
curl -sS -N -g -o "$WORK/e.out" -H 'content-type: application/json' -H 'x-sim-tokens: 3' \
  -H 'x-sim-itl-ms: 2' \
  -d "$CHAT"',"stream":true,"stream_options":{"include_usage":true}}' \
  "http://[::1]:$P/v1/chat/completions"
stop_dump vllm_ipv6_any.pcap
stop_sim
expect e-tokens "$(grep -c '"content":"tok' "$WORK/e.out")" 3
