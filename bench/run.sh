#!/usr/bin/env bash
# Produces the published performance figures (docs/performance.md) and writes bench/RESULTS.md.
# Needs root (BPF). Usage: bench/run.sh [BUILD_DIR]   (default: build)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
out=$here/bench/RESULTS.md
mkdir -p "$here/bench/out"

echo "bench: per-syscall overhead (none / floor / infertap), this takes about a minute"
"$build/infertap-bench-syscall" --rounds 9 --iters 200000 --json > "$here/bench/out/syscall.json"
python3 - "$here/bench/out/syscall.json" "$out" <<'PY'
import json, sys, datetime, platform, subprocess
r = json.load(open(sys.argv[1]))
kernel = platform.release()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
def verdict(ok): return "meets target" if ok else "MISSES target"
p, t, c = r["pipe_added_ns_per_syscall"], r["tcp_added_ns_per_syscall"], r["captured_syscall_added_ns"]
rows = [
  ("added cost per untraced read/write, pipe (infertap ÷ floor)", f'{p["ratio"]:.3f} ({p["infertap"]:.0f} ns vs floor {p["floor"]:.0f} ns)', "≤ 1.15 × floor", verdict(p["ratio"] <= 1.15)),
  ("added cost per untraced read/write, untraced TCP socket (infertap ÷ floor)", f'{t["ratio"]:.3f} ({t["infertap"]:.0f} ns vs floor {t["floor"]:.0f} ns)', "≤ 1.15 × floor", verdict(t["ratio"] <= 1.15)),
  ("added kernel cost per captured syscall, 64 B payload, over an untraced one", f'{c["64B"]:.0f} ns', "≤ 300 ns", verdict(c["64B"] <= 300)),
  ("added kernel cost per captured syscall, 4 KiB payload, over an untraced one", f'{c["4KiB"]:.0f} ns', "≤ 300 ns", verdict(c["4KiB"] <= 300)),
  ("lost capture events during the run", str(r["kernel_lost_events"]), "0", verdict(r["kernel_lost_events"] == 0)),
]
for name, value, target, v in rows:
    print(f"  {name}: {value}  (target {target}: {v})")
with open(sys.argv[2], "w") as f:
    f.write("# infertap benchmark results\n\n")
    f.write("Produced by `bench/run.sh` (root): `build/infertap-bench-syscall --rounds 9 --iters 200000 --json`.\n")
    f.write(f"Run {datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')} on kernel {kernel}, {cpu}, 2 cores.\n\n")
    f.write("Method (docs/performance.md): every figure is a ratio or difference measured in one run. Three configurations — no BPF program, an empty program on exactly infertap's hooks (the floor, `bpf/floor.bpf.c`), and infertap's capture programs with a filter that does not match the loop — are rotated round by round (A/B/C, B/C/A, C/A/B, ...); each measurement is a fresh child process pinned to CPU 0 running a tight 64-byte `write()`+`read()` loop; medians over the rounds are reported. The captured-syscall cost writes on a traced loopback TCP socket vs an untraced one, both with infertap attached, with the ring buffer drained on the other CPU.\n\n")
    f.write("| figure | measured | target | verdict |\n|---|---|---|---|\n")
    for name, value, target, v in rows:
        f.write(f"| {name} | {value} | {target} | {v} |\n")
    f.write("\nRaw medians (ns per write+read iteration):\n\n")
    f.write(f"| loop | none | floor | infertap |\n|---|---|---|---|\n")
    f.write(f'| pipe 64 B | {r["pipe_ns_per_iter"]["none"]:.1f} | {r["pipe_ns_per_iter"]["floor"]:.1f} | {r["pipe_ns_per_iter"]["infertap"]:.1f} |\n')
    f.write(f'| TCP 64 B (untraced socket) | {r["tcp_ns_per_iter"]["none"]:.1f} | {r["tcp_ns_per_iter"]["floor"]:.1f} | {r["tcp_ns_per_iter"]["infertap"]:.1f} |\n')
    f.write(f'\nSlowdown of the pipe loop: floor {r["pipe_slowdown"]["floor"]:.3f}×, infertap {r["pipe_slowdown"]["infertap"]:.3f}× (docs/performance.md quotes about 1.25× for the floor on these machines).\n')
print(f"bench: wrote {sys.argv[2]}")
PY

echo "bench: offline pipeline throughput (bench/parser/run.sh), about a minute"
{
  echo
  echo "## Offline pipeline throughput"
  echo
  echo "Produced by \`bench/parser/run.sh ${build#$here/}\` (Google Benchmark, no root):"
  echo
  bash "$here/bench/parser/run.sh" "$build"
} | tee -a "$out" | tail -8

echo "bench: agent end to end (bench/agent/run.sh), about three minutes"
{
  echo
  echo "## Agent end to end"
  echo
  echo "Produced by \`bench/agent/run.sh ${build#$here/}\` (root; simulator, load generator and agent as real processes on loopback):"
  echo
  bash "$here/bench/agent/run.sh" "$build"
} | tee -a "$out" | tail -12
