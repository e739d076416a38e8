#!/usr/bin/env bash
# Produces the published performance figures (docs/performance.md, docs/capture-backends.md) and
# writes bench/RESULTS.md.
# Needs root (BPF). Usage: bench/run.sh [BUILD_DIR]   (default: build)
# Also writes bench/latency_throughput.png (gnuplot). Knobs for quick runs: BENCH_SYSCALL_ROUNDS,
# BENCH_SYSCALL_ITERS, PARSER_BENCH_MIN_TIME, the BENCH_* of bench/agent/run.sh; BENCH_NOTE is
# written at the top of RESULTS.md (e.g. that the machine was busy).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
out=$here/bench/RESULTS.md
mkdir -p "$here/bench/out"

echo "bench: per-syscall overhead (none / floor / infertap), this takes about a minute"
rounds=${BENCH_SYSCALL_ROUNDS:-9}
iters=${BENCH_SYSCALL_ITERS:-200000}
la0=$(cut -d' ' -f1-3 /proc/loadavg)
"$build/infertap-bench-syscall" --rounds "$rounds" --iters "$iters" --json > "$here/bench/out/syscall.json"
la1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$here/bench/syscall_table.py" "$here/bench/out/syscall.json" "$out" "$la0" "$la1" \
  "$rounds" "$iters" "${BENCH_NOTE:-}"

echo "bench: offline pipeline throughput (bench/parser/run.sh), about a minute"
{
  echo
  echo "## Offline pipeline throughput"
  echo
  echo "Produced by \`bench/parser/run.sh ${build#"$here"/}\` (Google Benchmark, no root):"
  echo
  bash "$here/bench/parser/run.sh" "$build"
} | tee -a "$out" | tail -8

echo "bench: agent end to end (bench/agent/run.sh), about five minutes"
{
  echo
  echo "## Agent end to end"
  echo
  echo "Produced by \`bench/agent/run.sh ${build#"$here"/}\` (root; simulator, load generator and agent as real processes on loopback):"
  echo
  BENCH_PLOT=$here/bench/latency_throughput.png bash "$here/bench/agent/run.sh" "$build"
  echo
  echo "Throughput and p50/p99 latency against offered load, with and without the agent (the sweep row above):"
  echo
  echo "![throughput and latency against offered load](latency_throughput.png)"
} | tee -a "$out" | tail -14

echo "bench: capture backends side by side (bench/backends/run.sh), about a minute"
{
  echo
  echo "## Capture backends side by side"
  echo
  echo "Produced by \`bench/backends/run.sh ${build#"$here"/}\` (root; no agent / syscall backend / cgroup backend in rotated rounds; decision: [docs/capture-backends.md](../docs/capture-backends.md)):"
  echo
  bash "$here/bench/backends/run.sh" "$build"
} | tee -a "$out" | tail -14
