#!/usr/bin/env python3
"""The two capture backends side by side (docs/capture-backends.md): no agent, `--capture-backend
syscall`, `--capture-backend cgroup`, in alternated rounds (the order rotates each round so drift
hits all alike), every figure as median (min-max) over the rounds.

  a. cost to an untraced process: infertap-bench-loop (small write+read pairs on a pipe and on a
     unix socketpair) run by a process OUTSIDE the traced cgroup, ns per iteration;
  b. cost per captured request: a streamed workload (infertap-load, 64-token streams) against
     infertap-sim running INSIDE the bench cgroup; CPU of sim + load + agent per request (from
     schedstat and rusage: independent of how busy the machine is), the part added over no agent,
     the agent's own CPU per request, and the kernel's accounting of the capture programs' run
     time per request (kernel.bpf_stats_enabled, bpftool prog show: run_time_ns of the agent's
     programs);
  c. accuracy on the same traffic: each round sends the same requests (same unique model names)
     through each backend; every record is judged against infertap-load's truth, and the
     records of the two backends are compared field by field (TTFT: the difference of packet
     and syscall timestamps is reported, not judged).

Driven by bench/backends/run.sh (root). Prints a markdown table on stdout, progress on stderr.
Creates and removes its own cgroup under the cgroup v2 hierarchy; every child is bounded in time
and ended on exit; kernel.bpf_stats_enabled is restored."""
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
SIM = os.path.join(BUILD, "infertap-sim")
LOAD = os.path.join(BUILD, "infertap-load")
AGENT = os.path.join(BUILD, "infertap")
LOOP = os.path.join(BUILD, "infertap-bench-loop")
LOGS = tempfile.mkdtemp(prefix="infertap-bench-backends.")
ENV = dict(os.environ)

ROUNDS = int(ENV.get("BENCH_BACKENDS_ROUNDS", "5"))
REQUESTS = int(ENV.get("BENCH_BACKENDS_REQUESTS", "3000"))
CONNS = int(ENV.get("BENCH_BACKENDS_CONNECTIONS", "16"))
TOKENS = int(ENV.get("BENCH_BACKENDS_TOKENS", "64"))
LOOP_ITERS = int(ENV.get("BENCH_BACKENDS_LOOP_ITERS", "300000"))
SPREAD_LIMIT = float(ENV.get("BENCH_SPREAD_LIMIT", "0.10"))
CONFIGS = ["none", "syscall", "cgroup"]

children = []
cgroup_dir = None
bpf_stats_before = None


def log(msg):
    print(f"bench/backends: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(name, argv, **kw):
    out = open(os.path.join(LOGS, name + ".out"), "wb")
    err = open(os.path.join(LOGS, name + ".err"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=err, **kw)
    p.logname = name
    children.append(p)
    return p


def read_log(p, kind):
    with open(os.path.join(LOGS, f"{p.logname}.{kind}"), "rb") as f:
        return f.read().decode(errors="replace")


def stop(p, timeout=10):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p in children:
        children.remove(p)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what} (logs in {LOGS})")


def cgroup2_root():
    for p in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        try:
            with open("/proc/self/mounts") as f:
                if any(l.split()[1] == p and l.split()[2] == "cgroup2" for l in f):
                    return p
        except OSError:
            pass
    raise RuntimeError("no cgroup v2 hierarchy is mounted")


def sched_ns(pid):
    """On-CPU ns of a process's live threads (/proc/PID/task/*/schedstat)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def children_cpu_ns():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def prog_ids(pid):
    """Ids of the BPF programs process `pid` holds (its bpf-prog fds' /proc fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpf_run_ns(pid):
    """run_time_ns summed over the BPF programs the process `pid` holds (kernel accounting,
    kernel.bpf_stats_enabled=1; bpftool omits the field while it is 0)."""
    total = 0
    for prog_id in prog_ids(pid):
        out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"],
                             capture_output=True, timeout=30)
        if out.returncode == 0:
            total += json.loads(out.stdout).get("run_time_ns", 0)
    return total


def start_sim():
    # The shell joins the bench cgroup, then execs the simulator: its sockets are the cgroup's.
    argv = ["/bin/sh", "-c", f'echo $$ > {cgroup_dir}/cgroup.procs && exec "$@"', "sh", SIM,
            "--listen", "127.0.0.1:0", "--tokens", str(TOKENS), "--itl-ms", "0", "--ttft-ms", "0",
            "--threads", "1", "--model", "m"]
    p = spawn("sim", argv)
    line = wait_for(lambda: p.poll() is None and next(
        (l for l in read_log(p, "out").splitlines() if "listening on" in l), None), 10, "sim")
    p.port = int(line.split()[-1].rsplit(":", 1)[1])
    return p


def start_agent(cfg, round_no, sim_port):
    m, i = free_port(), free_port()
    argv = [AGENT, "run", "--target", f"127.0.0.1:{sim_port}", "--metrics-auth", "none",
            "--metrics-addr", f"127.0.0.1:{m}", "--inspect-addr", f"127.0.0.1:{i}",
            "--poll-interval", "3600", "--metrics-staleness", "3600", "--capture-backend", cfg]
    if cfg == "cgroup":
        argv += ["--capture-cgroup", cgroup_dir]
    p = spawn(f"agent-{cfg}-{round_no}", argv)
    p.metrics_port, p.inspect_port = m, i

    def ready():
        if p.poll() is not None:
            raise RuntimeError(f"agent exited {p.returncode}: {read_log(p, 'err')[-2000:]}")
        return "running: tracing" in read_log(p, "err")
    wait_for(ready, 30, f"agent ({cfg}) 'running: tracing'")
    records = os.path.join(LOGS, f"records-{cfg}-{round_no}.jsonl")
    p.records_file = records
    p.records = spawn(f"records-{cfg}-{round_no}",
                      ["curl", "-sN", "-o", records, f"http://127.0.0.1:{i}/v1/records"])
    time.sleep(0.3)  # subscribed before the first request (the stream carries no backlog)
    return p


def metric(agent, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_loop(mode):
    out = subprocess.run(["timeout", "120", LOOP, "--mode", mode, "--iters", str(LOOP_ITERS)],
                         capture_output=True, check=True)
    return json.loads(out.stdout)["ns_per_iter"]


def run_load(tag, port, truth):
    argv = [LOAD, "--url", f"http://127.0.0.1:{port}/v1/chat/completions", "--stream",
            "--include-usage", "--tokens", str(TOKENS), "-c", str(CONNS), "-n", str(REQUESTS),
            "--unique-models", "--model", tag, "--truth", truth]
    p = subprocess.run(["timeout", "300", *argv], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"infertap-load exited {p.returncode}: {p.stderr.decode()[-500:]}")
    return json.loads(p.stdout)


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def judge(record, truth):
    """True when the record says exactly what the client saw (the faults tier's JudgeRecord)."""
    want = {"status": truth["status"], "request_bytes": truth["request_bytes"],
            "response_bytes": truth["response_bytes"], "chunks": truth["content_events"]}
    got = {k: record.get(k) for k in want}
    if truth["usage_prompt_tokens"] >= 0:
        want["input_tokens"], got["input_tokens"] = truth["usage_prompt_tokens"], record.get("input_tokens")
    if truth["usage_completion_tokens"] >= 0:
        want["output_tokens"], got["output_tokens"] = (truth["usage_completion_tokens"],
                                                       record.get("output_tokens"))
    return record.get("error_code", "") == "" and want == got


COMPARED = ("status", "stream", "error_code", "request_bytes", "response_bytes", "input_tokens",
            "output_tokens", "chunks", "method", "path", "model_name", "target_model_name")


def measure(cfg, round_no, sim):
    agent = start_agent(cfg, round_no, sim.port) if cfg != "none" else None
    res = {}
    try:
        res["loop_pipe"] = run_loop("pipe")
        res["loop_socketpair"] = run_loop("socketpair")
        tag = f"r{round_no}"
        truth_file = os.path.join(LOGS, f"truth-{cfg}-{round_no}.jsonl")
        # bpftool first: its own CPU (a reaped child) must not count as the load's.
        bpf0 = bpf_run_ns(agent.pid) if agent else 0
        sim0, ch0, t0 = sched_ns(sim.pid), children_cpu_ns(), time.monotonic()
        ag0 = sched_ns(agent.pid) if agent else 0
        summary = run_load(tag, sim.port, truth_file)
        if agent:
            # Everything emitted during the load is consumed and recorded before the agent's CPU
            # is read (the agent polls every 100 ms).
            wait_for(lambda: len(read_jsonl(agent.records_file)) >= REQUESTS, 60,
                     f"{REQUESTS} records ({cfg})")
        wall = time.monotonic() - t0
        sim_cpu, load_cpu = sched_ns(sim.pid) - sim0, children_cpu_ns() - ch0
        agent_cpu = sched_ns(agent.pid) - ag0 if agent else 0
        res["total_cpu_us"] = (sim_cpu + load_cpu + agent_cpu) / REQUESTS / 1e3
        res["agent_cpu_us"] = agent_cpu / REQUESTS / 1e3
        res["bpf_ns"] = (bpf_run_ns(agent.pid) - bpf0) / REQUESTS if agent else 0.0
        res["rps"] = summary["ok"] / wall
        if agent:
            truth = {t["model"]: t for t in read_jsonl(truth_file)}
            records = {r["target_model_name"]: r for r in read_jsonl(agent.records_file)
                       if r.get("target_model_name", "").startswith(tag + "-")}
            res["exact"] = sum(1 for m, t in truth.items() if m in records and judge(records[m], t))
            res["records"] = records
            res["lost"] = metric(agent, "infertap_capture_lost_events_total")
    finally:
        if agent:
            stop(agent.records)
            stop(agent)
    return res


def spread(values):
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def cell(values, fmt="{:.1f}"):
    if not values:
        return "—"
    med = statistics.median(values)
    s = f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return s + (" ⚠" if len(values) > 1 and spread(values) > SPREAD_LIMIT else "")


def main():
    global cgroup_dir, bpf_stats_before
    root = cgroup2_root()
    cgroup_dir = os.path.join(root, f"infertap-bench-{os.getpid()}")
    os.mkdir(cgroup_dir)
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        bpf_stats_before = f.read().strip()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    la0 = open("/proc/loadavg").read().split()[:3]
    sim = start_sim()
    results = {c: [] for c in CONFIGS}
    for r in range(ROUNDS):
        order = CONFIGS[r % 3:] + CONFIGS[:r % 3]
        for cfg in order:
            log(f"round {r + 1}/{ROUNDS}: {cfg}")
            results[cfg].append(measure(cfg, r, sim))
    stop(sim)
    la1 = open("/proc/loadavg").read().split()[:3]

    def col(cfg, key):
        return [x[key] for x in results[cfg] if key in x]

    def added(cfg):
        base = col("none", "total_cpu_us")
        return [x - statistics.median(base) for x in col(cfg, "total_cpu_us")] if base else []

    # c: the same requests through both backends, record by record.
    same = differ = 0
    ttft_diff_us = []
    for rs, rc in zip(results["syscall"], results["cgroup"]):
        for model, a in rs["records"].items():
            b = rc["records"].get(model)
            if b is None or any(a.get(k) != b.get(k) for k in COMPARED):
                differ += 1
                continue
            same += 1
            if "ttft_s" in a and "ttft_s" in b:
                ttft_diff_us.append((b["ttft_s"] - a["ttft_s"]) * 1e6)
    print(f"Rounds: {ROUNDS} (order rotated), {REQUESTS} streamed requests of {TOKENS} tokens over "
          f"{CONNS} connections per round and configuration; loop {LOOP_ITERS} iterations. "
          f"Load average before {' '.join(la0)}, after {' '.join(la1)}. Cells: median (min–max); "
          f"⚠ = spread over {SPREAD_LIMIT:.0%} of the median.")
    print()
    print("| figure | no agent | syscall backend | cgroup backend |")
    print("|---|---|---|---|")
    print("| a. untraced pipe write+read, ns/iteration | " +
          " | ".join(cell(col(c, "loop_pipe")) for c in CONFIGS) + " |")
    print("| a. untraced socketpair write+read, ns/iteration | " +
          " | ".join(cell(col(c, "loop_socketpair")) for c in CONFIGS) + " |")
    print("| b. CPU of sim + load + agent per request, µs | " +
          " | ".join(cell(col(c, "total_cpu_us")) for c in CONFIGS) + " |")
    print("| b. added over no agent per request, µs | — | " +
          " | ".join(cell(added(c)) for c in ("syscall", "cgroup")) + " |")
    print("| b. agent CPU per request, µs | — | " +
          " | ".join(cell(col(c, "agent_cpu_us")) for c in ("syscall", "cgroup")) + " |")
    print("| b. capture programs' kernel run time per request, ns (BPF stats) | — | " +
          " | ".join(cell(col(c, "bpf_ns"), "{:.0f}") for c in ("syscall", "cgroup")) + " |")
    print("| b. throughput, requests/s (closed loop, informational) | " +
          " | ".join(cell(col(c, "rps"), "{:.0f}") for c in CONFIGS) + " |")
    print("| c. exact records / requests | — | " +
          " | ".join(f"{sum(col(c, 'exact'))} / {REQUESTS * ROUNDS}" for c in ("syscall", "cgroup"))
          + " |")
    print("| c. lost capture events | — | " +
          " | ".join(f"{sum(col(c, 'lost')):.0f}" for c in ("syscall", "cgroup")) + " |")
    print()
    print(f"Records of the same requests equal between the backends ({', '.join(COMPARED)}): "
          f"{same} equal, {differ} differ or missing. TTFT cgroup − syscall: median "
          f"{statistics.median(ttft_diff_us) if ttft_diff_us else float('nan'):.1f} µs "
          f"(min {min(ttft_diff_us, default=float('nan')):.1f}, "
          f"max {max(ttft_diff_us, default=float('nan')):.1f}) — packets are stamped when the "
          f"kernel handles them, syscalls when the server reads or writes.")
    log(f"logs in {LOGS}")


def cleanup():
    for p in list(children):
        try:
            stop(p, timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
    if bpf_stats_before is not None:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(bpf_stats_before)
    if cgroup_dir and os.path.isdir(cgroup_dir):
        for _ in range(50):
            try:
                os.rmdir(cgroup_dir)
                break
            except OSError:
                try:
                    with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
                time.sleep(0.1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    finally:
        cleanup()
