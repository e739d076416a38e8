#!/usr/bin/env bash
# End-to-end agent figures of docs/performance.md, measured with real processes on loopback:
#   1. agent CPU (user+sys) per streamed request        (target ≤ 12 µs), over BENCH_CPU_ROUNDS rounds
#   2. throughput with agent ÷ without at saturation     (target ≥ 0.97 with --cpu-per-token 30us; 0 µs reported)
#      and total CPU per request of sim + load + agent, with ÷ without (target ≤ 1.03), same rounds
#   3. lost capture events at 2,000 streamed requests/s  (target 0)
#   4. agent RSS with 10,000 idle traced connections     (target ≤ 128 MiB)
#   5. throughput and p50/p99 latency against offered load, with and without (BENCH_PLOT=x.png plots)
# Every figure with rounds is given as median (min–max) and flagged when its spread is too wide;
# the load average before and after each figure is printed with it.
# Needs root (BPF). Usage: bench/agent/run.sh BUILD_DIR   (needs infertap, infertap-sim, infertap-load)
# Prints a markdown table on stdout, progress on stderr. Takes about 5–6 minutes.
# Method (details in bench_agent.py): fresh agent per figure; agent CPU from schedstat (and
# /proc/PID/stat); throughput A/B alternates without/with runs on two single-threaded simulators with
# one closed-loop load each; sim, load and agent run at nice -19 (not pinned) so other work on a
# shared host barely perturbs them; 10,000 idle connections come from idle_conns.py (stdlib).
# Knobs: BENCH_ONLY=cpu,ratio30,ratio0,lost,rss,sweep BENCH_CPU_REQUESTS BENCH_CPU_ROUNDS
#        BENCH_AB_ROUNDS BENCH_AB_SECONDS BENCH_RATE BENCH_RATE_SECONDS BENCH_IDLE_CONNS
#        BENCH_SWEEP_RATES=250,500,... BENCH_SWEEP_SECONDS BENCH_SWEEP_ROUNDS BENCH_PLOT
#        BENCH_SPREAD_LIMIT (default 0.10)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: bench/agent/run.sh BUILD_DIR}" && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/agent: needs root" >&2; exit 1; }
# 10,000 client sockets in the helper and as many in the simulator (children inherit the limit).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
timeout --signal=TERM 900 python3 "$here/bench_agent.py" "$build" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
exit $rc
