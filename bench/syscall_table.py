#!/usr/bin/env python3
"""Turns `infertap-bench-syscall --json` into the first section of bench/RESULTS.md (bench/run.sh).
Usage: syscall_table.py JSON OUT LOAD_BEFORE LOAD_AFTER ROUNDS ITERS [NOTE]
Every figure is the median over the alternated rounds with their min–max (docs/performance.md)."""
import datetime
import json
import platform
import statistics
import sys

LIMIT = 0.10  # the spread rule, the same as bench/agent/bench_agent.py (BENCH_SPREAD_LIMIT)


def verdict(ok, untrusted=False):
    """A figure whose rounds spread too widely gets no verdict of its own (docs/performance.md)."""
    v = "meets target" if ok else "MISSES target"
    return f"untrusted (median {'meets' if ok else 'misses'})" if untrusted else v


def spread(values, unit="", lo_t=None, hi_t=None, digits=0):
    """(median, 'median (min–max over n rounds)' plus a flag when the spread is too wide)."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    rel = (hi - lo) / abs(med) if med else float("inf")
    f = lambda x: f"{x:.{digits}f}"
    text = f"{f(med)}{unit} ({f(lo)}–{f(hi)} over {len(values)} rounds)"
    flags = []
    if rel > LIMIT:
        flags.append(f"SPREAD TOO WIDE TO TRUST ({rel * 100:.0f}% > {LIMIT * 100:.0f}%)")
    if (lo_t is not None and lo < lo_t <= hi) or (hi_t is not None and lo <= hi_t < hi):
        flags.append("range straddles the target")
    return med, text + ("; **" + "; ".join(flags) + "**" if flags else ""), rel > LIMIT


def main():
    r = json.load(open(sys.argv[1]))
    out, la0, la1, rounds, iters = sys.argv[2:7]
    note = sys.argv[7] if len(sys.argv) > 7 else ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    R = r["rounds_ns_per_iter"]
    P, T = R["pipe"], R["tcp"]
    # Per round, from that round's alternated measurements only.
    pipe_ratio = [(i - n) / (f - n) for n, f, i in zip(P["none"], P["floor"], P["infertap"])]
    tcp_ratio = [(i - n) / (f - n) for n, f, i in zip(T["none"], T["floor"], T["infertap"])]
    # On the traced socket only the write is captured: one captured syscall per iteration.
    cap64 = [a - b for a, b in zip(R["traced64"], R["untraced64"])]
    cap4k = [a - b for a, b in zip(R["traced4k"], R["untraced4k"])]
    p, t = r["pipe_added_ns_per_syscall"], r["tcp_added_ns_per_syscall"]
    # The raw tracepoints run for every syscall: what an unhooked one (getppid) pays, per syscall.
    O = R["other"]
    other_floor = [(f - n) / 2 for n, f in zip(O["none"], O["floor"])]
    other_inf = [(i - n) / 2 for n, i in zip(O["none"], O["infertap"])]
    mp, sp, up = spread(pipe_ratio, hi_t=1.15, digits=3)
    mt, st, ut = spread(tcp_ratio, hi_t=1.15, digits=3)
    m64, s64, u64 = spread(cap64, " ns", hi_t=300)
    m4k, s4k, u4k = spread(cap4k, " ns", hi_t=300)
    rows = [
        ("added cost per untraced read/write, pipe (infertap ÷ floor)",
         f'{sp}; medians {p["infertap"]:.0f} ns vs floor {p["floor"]:.0f} ns', "≤ 1.15 × floor",
         verdict(mp <= 1.15, up)),
        ("added cost per untraced read/write, untraced TCP socket (infertap ÷ floor)",
         f'{st}; medians {t["infertap"]:.0f} ns vs floor {t["floor"]:.0f} ns', "≤ 1.15 × floor",
         verdict(mt <= 1.15, ut)),
        ("added cost per unhooked syscall (getppid), floor", spread(other_floor, " ns")[1],
         "— (reported)", "—"),
        ("added cost per unhooked syscall (getppid), infertap", spread(other_inf, " ns")[1],
         "— (reported)", "—"),
        ("added wall time per captured syscall, 64 B payload, over an untraced one", s64,
         "≤ 300 ns", verdict(m64 <= 300, u64)),
        ("added wall time per captured syscall, 4 KiB payload, over an untraced one", s4k,
         "≤ 300 ns", verdict(m4k <= 300, u4k)),
    ]
    # The compatible variant (docs/capture.md#kernel-requirements), rotated in the same rounds.
    C = R.get("compat")
    if C:
        cp = [(c - n) / (f - n) for n, f, c in zip(P["none"], P["floor"], C["pipe"])]
        ct = [(c - n) / (f - n) for n, f, c in zip(T["none"], T["floor"], C["tcp"])]
        co = [(c - n) / 2 for n, c in zip(O["none"], C["other"])]
        c64 = [a - b for a, b in zip(C["traced64"], C["untraced64"])]
        c4k = [a - b for a, b in zip(C["traced4k"], C["untraced4k"])]
        m, s, u = spread(cp, hi_t=1.15, digits=3)
        rows.append(("compat variant: added cost per untraced read/write, pipe (÷ floor)", s,
                     "≤ 1.15 × floor", verdict(m <= 1.15, u)))
        m, s, u = spread(ct, hi_t=1.15, digits=3)
        rows.append(("compat variant: added cost per untraced read/write, TCP (÷ floor)", s,
                     "≤ 1.15 × floor", verdict(m <= 1.15, u)))
        rows.append(("compat variant: added cost per unhooked syscall (getppid)",
                     spread(co, " ns")[1], "— (reported)", "—"))
        m, s, u = spread(c64, " ns", hi_t=300)
        rows.append(("compat variant: added wall time per captured syscall, 64 B", s, "≤ 300 ns",
                     verdict(m <= 300, u)))
        m, s, u = spread(c4k, " ns", hi_t=300)
        rows.append(("compat variant: added wall time per captured syscall, 4 KiB", s, "≤ 300 ns",
                     verdict(m <= 300, u)))
    b = r.get("bpf_stats")
    bpf_rows = []
    if b:
        # Kernel time in our programs per loop iteration; traced minus untraced is the program
        # cost of one captured syscall.
        def diff(k1, k2):
            return [a - u for a, u in zip(b[k1]["bpf_ns_per_iter"], b[k2]["bpf_ns_per_iter"])]
        _, s, _ = spread(b["pipe_64B_untraced"]["bpf_ns_per_iter"], " ns")
        rows.append(("BPF run time per untraced write+read iteration, pipe 64 B (BPF stats)", s,
                     "— (reported)", "—"))
        _, s, _ = spread(b["tcp_64B_untraced"]["bpf_ns_per_iter"], " ns")
        rows.append(("BPF run time per untraced write+read iteration, TCP 64 B (BPF stats)", s,
                     "— (reported)", "—"))
        mb, s, ub = spread(diff("tcp_64B_traced", "tcp_64B_untraced"), " ns", hi_t=300)
        rows.append(("BPF run time added per captured syscall, 64 B (traced − untraced iteration)",
                     s, "≤ 300 ns", verdict(mb <= 300, ub)))
        mb, s, ub = spread(diff("tcp_4KiB_traced", "tcp_4KiB_untraced"), " ns", hi_t=300)
        rows.append(("BPF run time added per captured syscall, 4 KiB (traced − untraced iteration)",
                     s, "≤ 300 ns", verdict(mb <= 300, ub)))
        kinds = ("pipe_64B_untraced", "tcp_64B_untraced", "tcp_64B_traced", "tcp_4KiB_traced")
        for n in sorted({n for k in b for n in b[k]["programs"]}):
            cells = []
            for k in kinds:
                x = b[k]["programs"].get(n)
                cells.append(f'{x["run_time_ns"] / x["run_cnt"]:.0f} ({x["run_cnt"]})'
                             if x and x["run_cnt"] else "—")
            bpf_rows.append((n, *cells))
    rows.append(("lost capture events during the run", str(r["kernel_lost_events"]), "0",
                 verdict(r["kernel_lost_events"] == 0)))
    for name, value, target, v in rows:
        print(f"  {name}: {value}  (target {target}: {v})")
    with open(out, "w") as f:
        f.write("# infertap benchmark results\n\n")
        f.write(f"Produced by `bench/run.sh` (root): `build/infertap-bench-syscall --rounds {rounds} "
                f"--iters {iters} --json`, then `bench/parser/run.sh` and `bench/agent/run.sh` "
                "(sections below).\n")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        f.write(f"Run {now} on kernel {platform.release()}, {cpu}, 2 cores.\n\n")
        if note:
            f.write(f"**Note:** {note}\n\n")
        f.write(
            "Method ([docs/performance.md](../docs/performance.md)): every figure is the median over "
            "alternated rounds with the min–max of its rounds, flagged **SPREAD TOO WIDE TO TRUST** "
            "when (max − min) ÷ median exceeds 10 %, and marked when its range straddles the "
            "target. The syscall figures rotate four configurations round by round — no BPF "
            "program, an empty program on exactly infertap's hooks (the floor, `bpf/floor.bpf.c`: "
            "the raw `sys_enter`/`sys_exit` tracepoints and `sched_process_exit`), and infertap's "
            "capture programs, modern and compatible variant, with a filter that does not match "
            "the loop (A/B/C/D, B/C/D/A, ...); each measurement is a fresh child process pinned to "
            "CPU 0 running a tight 64-byte `write()`+`read()` loop (or two `getppid()` per "
            "iteration, a syscall infertap does not hook, for what every other syscall pays), and a "
            "round's figure uses only that round's measurements. The captured-syscall cost writes on a traced loopback TCP socket vs an "
            "untraced one, both with infertap attached, with the ring buffer drained on the other "
            "CPU. The BPF run-time figures are the kernel's own accounting (`BPF_ENABLE_STATS`, "
            "the switch behind `kernel.bpf_stats_enabled`, held on for this run only): `run_time_ns` "
            "and `run_cnt` of every capture program read before and after each loop. They count CPU "
            "time spent in our programs, not wall time, so a busy machine barely moves them; other "
            "processes' syscalls in the same window are counted too (similar in the traced and "
            "untraced windows).\n\n")
        f.write(f"Load average before the syscall figures {la0}, after {la1}.\n\n")
        f.write("| figure | measured | target | verdict |\n|---|---|---|---|\n")
        for row in rows:
            f.write("| " + " | ".join(row) + " |\n")
        f.write("\nRaw medians (ns per write+read iteration):\n\n")
        f.write("| loop | none | floor | infertap |\n|---|---|---|---|\n")
        for label, k in (("pipe 64 B", "pipe_ns_per_iter"), ("TCP 64 B (untraced socket)",
                                                              "tcp_ns_per_iter"),
                         ("getppid() twice", "other_ns_per_iter")):
            f.write(f'| {label} | {r[k]["none"]:.1f} | {r[k]["floor"]:.1f} | '
                    f'{r[k]["infertap"]:.1f} |\n')
        f.write(f'\nSlowdown of the pipe loop: floor {r["pipe_slowdown"]["floor"]:.3f}×, infertap '
                f'{r["pipe_slowdown"]["infertap"]:.3f}×.\n')
        if bpf_rows:
            f.write("\nPer-program BPF run time, ns per invocation (`run_time_ns ÷ run_cnt`, "
                    "invocations in brackets), summed over the rounds of each loop (every process "
                    "on the machine counts, not only the loop):\n\n")
            f.write("| program | pipe 64 B, untraced | TCP 64 B, untraced | TCP 64 B, traced | "
                    "TCP 4 KiB, traced |\n|---|---|---|---|---|\n")
            for row in bpf_rows:
                f.write("| " + " | ".join(row) + " |\n")
    print(f"bench: wrote {out}")


if __name__ == "__main__":
    main()
