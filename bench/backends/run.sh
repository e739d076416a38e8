#!/usr/bin/env bash
# The capture backends side by side (docs/capture-backends.md): no agent, --capture-backend
# syscall, --capture-backend cgroup, in alternated rounds, each figure as median (min–max):
#   a. what an untraced process pays (a small write+read loop outside the traced cgroup)
#   b. CPU per captured streamed request (sim + load + agent, the part added over no agent, the
#      agent's own, the capture programs' kernel run time from BPF stats)
#   c. record accuracy on the same traffic (each record against the load's truth; the two
#      backends' records of the same requests compared field by field)
# Needs root (BPF, a cgroup of its own under the cgroup v2 hierarchy, kernel.bpf_stats_enabled,
# restored at exit). Usage: bench/backends/run.sh BUILD_DIR   (needs infertap, infertap-sim,
# infertap-load, infertap-bench-loop; bpftool). Prints a markdown table on stdout, progress on
# stderr. About 2–3 minutes with the defaults.
# Knobs: BENCH_BACKENDS_ROUNDS (5) BENCH_BACKENDS_REQUESTS (3000) BENCH_BACKENDS_CONNECTIONS (16)
#        BENCH_BACKENDS_TOKENS (64) BENCH_BACKENDS_LOOP_ITERS (300000) BENCH_SPREAD_LIMIT (0.10)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: bench/backends/run.sh BUILD_DIR}" && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/backends: needs root" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "bench/backends: needs bpftool" >&2; exit 1; }
pid=
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
timeout --signal=TERM 900 python3 "$here/bench_backends.py" "$build" &
pid=$!
rc=0
wait "$pid" || rc=$?
pid=
exit $rc
