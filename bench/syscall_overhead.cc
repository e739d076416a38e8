// Per-syscall overhead of the capture programs (docs/performance.md), measured as ratios in one
// run.
//
// Four configurations, rotated round by round (A/B/C/D, B/C/D/A, ...) so drift hits all alike:
//   none     no BPF program attached
//   floor    empty programs on exactly infertap's hooks (bpf/floor.bpf.c): what the kernel's
//            tracepoint machinery alone costs
//   infertap the real capture programs (the modern variant), filter set to an endpoint the loop
//            does not use
//   compat   the same with the compatible variant (docs/capture.md#kernel-requirements), loaded
//            side by side on this kernel
// Each measurement runs in a fresh child process (the agent never traces its own process) pinned
// to one CPU: a tight loop of 64-byte write()+read() on a pipe, and on an untraced loopback TCP
// pair. A fourth measurement writes on a traced TCP socket (64 B and 4 KiB) with infertap
// attached, against the same loop on an untraced socket, to give the cost per captured syscall.
// The hooks are the raw sys_enter/sys_exit tracepoints, which run for every syscall: a loop of
// getppid() (a syscall infertap does not hook) gives what every other syscall pays.
// The kernel's own accounting of BPF run time (BPF_ENABLE_STATS, held only while this process
// runs) gives per-program ns per invocation and BPF ns per loop iteration, read before and after
// each traced and untraced loop: a figure that does not depend on how busy the machine is.
// --json prints every round's values so the caller reports min-median-max (bench/run.sh).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "floor.skel.h"

namespace {

using Clock = std::chrono::steady_clock;

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// Connected loopback pair; the listener binds `port` so the filter can (not) match it.
bool TcpPair(uint16_t port, int* client, int* server) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) || listen(l, 1)) return false;
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(*client, reinterpret_cast<sockaddr*>(&a), sizeof(a))) return false;
  *server = accept(l, nullptr, nullptr);
  close(l);
  setsockopt(*client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(*server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return *server >= 0;
}

enum class Loop { kPipe, kTcpUntraced, kTcpTraced, kOther };

// Two getppid() per iteration, so that every loop has two syscalls per iteration.
void OtherLoop(long iters) {
  for (long i = 0; i < iters; ++i) {
    syscall(SYS_getppid);
    syscall(SYS_getppid);
  }
}

// Runs in a child: returns ns per iteration (one write + one read).
double MeasureInChild(Loop loop, size_t size, long iters, uint16_t port, int cpu) {
  int res[2];
  if (pipe(res)) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    Pin(cpu);
    if (loop == Loop::kOther) {
      OtherLoop(1000);
      const auto t0 = Clock::now();
      OtherLoop(iters);
      const double ns =
          std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(iters);
      if (write(res[1], &ns, sizeof(ns)) != sizeof(ns)) _exit(1);
      _exit(0);
    }
    int wfd, rfd;
    if (loop == Loop::kPipe) {
      int p[2];
      if (pipe(p)) _exit(1);
      rfd = p[0];
      wfd = p[1];
    } else {
      int c, s;
      if (!TcpPair(port, &c, &s)) _exit(1);
      wfd = s;  // the server-side socket: traced when `port` is in the filter
      rfd = c;
    }
    std::vector<char> buf(size, 'x');
    // Warm-up: first use of an fd resolves it once in the kernel.
    for (int i = 0; i < 1000; ++i) {
      if (write(wfd, buf.data(), size) != ssize_t(size)) _exit(1);
      size_t got = 0;
      while (got < size) got += size_t(read(rfd, buf.data(), size - got));
    }
    const auto t0 = Clock::now();
    for (long i = 0; i < iters; ++i) {
      if (write(wfd, buf.data(), size) != ssize_t(size)) _exit(1);
      size_t got = 0;
      while (got < size) {
        ssize_t n = read(rfd, buf.data(), size - got);
        if (n <= 0) _exit(1);
        got += size_t(n);
      }
    }
    const double ns =
        std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / double(iters);
    if (write(res[1], &ns, sizeof(ns)) != sizeof(ns)) _exit(1);
    _exit(0);
  }
  close(res[1]);
  double ns = -1;
  if (read(res[0], &ns, sizeof(ns)) != sizeof(ns)) ns = -1;
  close(res[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return ns;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// run_cnt and run_time_ns of each program, in the order of `progs`.
struct RunStat {
  uint64_t cnt = 0, ns = 0;
};
std::vector<RunStat> ReadRunStats(const std::vector<std::pair<std::string, int>>& progs) {
  std::vector<RunStat> out(progs.size());
  for (size_t i = 0; i < progs.size(); ++i) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(progs[i].second, &info, &len) == 0)
      out[i] = {info.run_cnt, info.run_time_ns};
  }
  return out;
}

// Per loop kind: BPF ns per loop iteration for every round, and per-program sums over rounds.
struct BpfAccount {
  std::vector<double> ns_per_iter;
  std::vector<RunStat> per_prog;
};

std::string JsonArray(const std::vector<double>& v) {
  std::string s = "[";
  char buf[32];
  for (size_t i = 0; i < v.size(); ++i) {
    std::snprintf(buf, sizeof(buf), "%s%.1f", i ? "," : "", v[i]);
    s += buf;
  }
  return s + "]";
}

struct CountingSink : infertap::EventSink {
  std::atomic<uint64_t> events{0};
  void OnEvent(std::span<const uint8_t>) override { events++; }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"infertap per-syscall overhead benchmark (docs/performance.md); needs root"};
  int rounds = 9;
  long iters = 200000;
  bool json = false;
  app.add_option("--rounds", rounds, "A/B/C rounds (median reported)")->capture_default_str();
  app.add_option("--iters", iters, "loop iterations per measurement")->capture_default_str();
  app.add_flag("--json", json, "print one JSON object instead of text");
  CLI11_PARSE(app, argc, argv);

  if (infertap::Status s = infertap::CheckCapturePrivileges(); !s) {
    std::fprintf(stderr, "bench: %s\n", s.message().c_str());
    return 1;
  }
  const int loop_cpu = 0;
  Pin(1);  // this process and its ring-buffer drain thread stay off the measured CPU

  floor_bpf* floor = floor_bpf__open_and_load();
  if (!floor) {
    std::fprintf(stderr, "bench: cannot load the floor programs\n");
    return 1;
  }
  infertap::Status st;
  infertap::CaptureOptions modern_opts, compat_opts;
  modern_opts.variant = infertap::BpfVariant::kModern;
  compat_opts.variant = infertap::BpfVariant::kCompat;
  auto cap = infertap::BpfCapture::Start(modern_opts, &st);
  if (!cap) {
    std::fprintf(stderr, "bench: modern variant: %s\n", st.message().c_str());
    return 1;
  }
  auto capc = infertap::BpfCapture::Start(compat_opts, &st);
  if (!capc) {
    std::fprintf(stderr, "bench: compat variant: %s\n", st.message().c_str());
    return 1;
  }
  const uint16_t traced_port = 47001, untraced_port = 47002;
  std::string err;
  auto ep = infertap::ParseEndpoint("127.0.0.1:" + std::to_string(traced_port), &err);
  // A failed setup would measure the floor (or nothing) as "infertap": stop instead.
  for (infertap::BpfCapture* c : {cap.get(), capc.get()}) {
    if (st = c->SetEndpoints({{*ep, IT_ROLE_SERVER, 0}}); !st) {
      std::fprintf(stderr, "bench: %s\n", st.message().c_str());
      return 1;
    }
    if (st = c->SetAttached(false); !st) {
      std::fprintf(stderr, "bench: %s\n", st.message().c_str());
      return 1;
    }
  }

  // Held open for the run only: the kernel turns the accounting off again when the fd closes
  // (also when this process dies), so kernel.bpf_stats_enabled needs no restoring.
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0)
    std::fprintf(stderr, "bench: BPF_ENABLE_STATS failed (%s): no BPF run-time figures\n",
                 std::strerror(errno));
  const auto progs = cap->ProgramFds();
  enum Acct { kAcctPipe, kAcctUntraced64, kAcctTraced64, kAcctUntraced4k, kAcctTraced4k, kAccts };
  const char* acct_names[kAccts] = {"pipe_64B_untraced", "tcp_64B_untraced", "tcp_64B_traced",
                                    "tcp_4KiB_untraced", "tcp_4KiB_traced"};
  BpfAccount acct[kAccts];
  for (auto& a : acct) a.per_prog.resize(progs.size());
  // Runs one measurement with infertap attached and books the BPF run time it caused.
  const long warmup = 1000;  // MeasureInChild's warm-up iterations, also traced
  auto measured = [&](Acct a, Loop loop, size_t size, long n, uint16_t port) {
    const auto before = ReadRunStats(progs);
    const double ns = MeasureInChild(loop, size, n, port, loop_cpu);
    const auto after = ReadRunStats(progs);
    uint64_t total = 0;
    for (size_t i = 0; i < progs.size(); ++i) {
      acct[a].per_prog[i].cnt += after[i].cnt - before[i].cnt;
      acct[a].per_prog[i].ns += after[i].ns - before[i].ns;
      total += after[i].ns - before[i].ns;
    }
    acct[a].ns_per_iter.push_back(double(total) / double(n + warmup));
    return ns;
  };

  CountingSink sink;
  std::atomic<bool> stop{false};
  std::thread drain([&] {
    while (!stop) {
      cap->Poll(sink, 10);
      capc->Poll(sink, 10);
    }
  });

  enum Cfg { kNone, kFloor, kInfertap, kCompat, kCfgs };
  // A configuration that could not be set up ends the run: its figures would be mislabelled.
  auto set_cfg = [&](Cfg c) {
    floor_bpf__detach(floor);
    infertap::Status s = cap->SetAttached(false);
    if (s) s = capc->SetAttached(false);
    if (s && c == kFloor && floor_bpf__attach(floor))
      s = infertap::Status::Error("cannot attach the floor programs");
    if (s && c == kInfertap) s = cap->SetAttached(true);
    if (s && c == kCompat) s = capc->SetAttached(true);
    if (!s) {
      std::fprintf(stderr, "bench: %s\n", s.message().c_str());
      std::exit(1);
    }
  };

  std::vector<double> pipe_t[kCfgs], tcp_t[kCfgs], other_t[kCfgs], traced64, untraced64,
      traced4k, untraced4k, traced64c, untraced64c, traced4kc, untraced4kc;
  for (int r = 0; r < rounds; ++r) {
    for (int k = 0; k < kCfgs; ++k) {
      const Cfg c = Cfg((r + k) % kCfgs);  // rotate the order every round
      set_cfg(c);
      pipe_t[c].push_back(c == kInfertap ? measured(kAcctPipe, Loop::kPipe, 64, iters, 0)
                                         : MeasureInChild(Loop::kPipe, 64, iters, 0, loop_cpu));
      tcp_t[c].push_back(MeasureInChild(Loop::kTcpUntraced, 64, iters, untraced_port, loop_cpu));
      other_t[c].push_back(MeasureInChild(Loop::kOther, 0, iters, 0, loop_cpu));
    }
    set_cfg(kInfertap);
    // Traced vs untraced socket, both with infertap attached, alternated.
    untraced64.push_back(measured(kAcctUntraced64, Loop::kTcpUntraced, 64, iters, untraced_port));
    traced64.push_back(measured(kAcctTraced64, Loop::kTcpTraced, 64, iters, traced_port));
    traced4k.push_back(measured(kAcctTraced4k, Loop::kTcpTraced, 4096, iters / 4, traced_port));
    untraced4k.push_back(
        measured(kAcctUntraced4k, Loop::kTcpUntraced, 4096, iters / 4, untraced_port));
    // The same with the compatible variant (wall time only).
    set_cfg(kCompat);
    untraced64c.push_back(MeasureInChild(Loop::kTcpUntraced, 64, iters, untraced_port, loop_cpu));
    traced64c.push_back(MeasureInChild(Loop::kTcpTraced, 64, iters, traced_port, loop_cpu));
    traced4kc.push_back(MeasureInChild(Loop::kTcpTraced, 4096, iters / 4, traced_port, loop_cpu));
    untraced4kc.push_back(
        MeasureInChild(Loop::kTcpUntraced, 4096, iters / 4, untraced_port, loop_cpu));
  }
  set_cfg(kNone);
  stop = true;
  drain.join();
  infertap::KernelStats ks = cap->ReadStats();
  const infertap::KernelStats ksc = capc->ReadStats();
  ks.events += ksc.events;
  ks.lost_events += ksc.lost_events;
  floor_bpf__destroy(floor);
  if (stats_fd >= 0) close(stats_fd);

  // Each iteration is one write + one read: per-syscall figures divide by two.
  auto per_syscall = [](double ns_per_iter) { return ns_per_iter / 2; };
  const double pn = Median(pipe_t[kNone]), pf = Median(pipe_t[kFloor]),
               pi = Median(pipe_t[kInfertap]);
  const double tn = Median(tcp_t[kNone]), tf = Median(tcp_t[kFloor]), ti = Median(tcp_t[kInfertap]);
  const double on = Median(other_t[kNone]), of = Median(other_t[kFloor]),
               oi = Median(other_t[kInfertap]);
  const double other_floor_add = per_syscall(of - on), other_inf_add = per_syscall(oi - on);
  const double pipe_floor_add = per_syscall(pf - pn), pipe_inf_add = per_syscall(pi - pn);
  const double tcp_floor_add = per_syscall(tf - tn), tcp_inf_add = per_syscall(ti - tn);
  // On the traced socket only the write is captured: one captured syscall per iteration.
  const double cap64 = Median(traced64) - Median(untraced64);
  const double cap4k = Median(traced4k) - Median(untraced4k);

  if (json) {
    std::printf(
        "{\"rounds\":%d,\"iters\":%ld,\"pipe_ns_per_iter\":{\"none\":%.1f,\"floor\":%.1f,"
        "\"infertap\":%.1f},\"tcp_ns_per_iter\":{\"none\":%.1f,\"floor\":%.1f,\"infertap\":%.1f},"
        "\"pipe_added_ns_per_syscall\":{\"floor\":%.1f,\"infertap\":%.1f,\"ratio\":%.3f},"
        "\"tcp_added_ns_per_syscall\":{\"floor\":%.1f,\"infertap\":%.1f,\"ratio\":%.3f},"
        "\"other_ns_per_iter\":{\"none\":%.1f,\"floor\":%.1f,\"infertap\":%.1f},"
        "\"other_added_ns_per_syscall\":{\"floor\":%.1f,\"infertap\":%.1f},"
        "\"pipe_slowdown\":{\"floor\":%.3f,\"infertap\":%.3f},"
        "\"captured_syscall_added_ns\":{\"64B\":%.1f,\"4KiB\":%.1f},"
        "\"kernel_events\":%llu,\"kernel_lost_events\":%llu,\"events_drained\":%llu,",
        rounds, iters, pn, pf, pi, tn, tf, ti, pipe_floor_add, pipe_inf_add,
        pipe_inf_add / pipe_floor_add, tcp_floor_add, tcp_inf_add, tcp_inf_add / tcp_floor_add,
        on, of, oi, other_floor_add, other_inf_add, pf / pn, pi / pn, cap64, cap4k, (unsigned long long)ks.events,
        (unsigned long long)ks.lost_events, (unsigned long long)sink.events.load());
    // Every round's ns per iteration, in round order (the rounds alternate the configurations).
    std::printf("\"rounds_ns_per_iter\":{\"pipe\":{\"none\":%s,\"floor\":%s,\"infertap\":%s},",
                JsonArray(pipe_t[kNone]).c_str(), JsonArray(pipe_t[kFloor]).c_str(),
                JsonArray(pipe_t[kInfertap]).c_str());
    std::printf("\"tcp\":{\"none\":%s,\"floor\":%s,\"infertap\":%s},",
                JsonArray(tcp_t[kNone]).c_str(), JsonArray(tcp_t[kFloor]).c_str(),
                JsonArray(tcp_t[kInfertap]).c_str());
    std::printf("\"other\":{\"none\":%s,\"floor\":%s,\"infertap\":%s},",
                JsonArray(other_t[kNone]).c_str(), JsonArray(other_t[kFloor]).c_str(),
                JsonArray(other_t[kInfertap]).c_str());
    std::printf("\"compat\":{\"pipe\":%s,\"tcp\":%s,\"other\":%s,\"untraced64\":%s,"
                "\"traced64\":%s,\"untraced4k\":%s,\"traced4k\":%s},",
                JsonArray(pipe_t[kCompat]).c_str(), JsonArray(tcp_t[kCompat]).c_str(),
                JsonArray(other_t[kCompat]).c_str(), JsonArray(untraced64c).c_str(),
                JsonArray(traced64c).c_str(), JsonArray(untraced4kc).c_str(),
                JsonArray(traced4kc).c_str());
    std::printf("\"untraced64\":%s,\"traced64\":%s,\"untraced4k\":%s,\"traced4k\":%s},",
                JsonArray(untraced64).c_str(), JsonArray(traced64).c_str(),
                JsonArray(untraced4k).c_str(), JsonArray(traced4k).c_str());
    std::printf("\"bpf_stats\":");
    if (stats_fd < 0) {
      std::printf("null}\n");
    } else {
      std::printf("{");
      for (int a = 0; a < kAccts; ++a) {
        std::printf("%s\"%s\":{\"bpf_ns_per_iter\":%s,\"programs\":{", a ? "," : "", acct_names[a],
                    JsonArray(acct[a].ns_per_iter).c_str());
        bool first = true;
        for (size_t i = 0; i < progs.size(); ++i) {
          if (!acct[a].per_prog[i].cnt) continue;
          std::printf("%s\"%s\":{\"run_cnt\":%llu,\"run_time_ns\":%llu}", first ? "" : ",",
                      progs[i].first.c_str(), (unsigned long long)acct[a].per_prog[i].cnt,
                      (unsigned long long)acct[a].per_prog[i].ns);
          first = false;
        }
        std::printf("}}");
      }
      std::printf("}}\n");
    }
  } else {
    std::printf("pipe 64B write+read, ns/iter: none %.1f  floor %.1f  infertap %.1f  compat %.1f\n",
                pn, pf, pi, Median(pipe_t[kCompat]));
    std::printf("tcp  64B write+read, ns/iter: none %.1f  floor %.1f  infertap %.1f\n", tn, tf, ti);
    std::printf("added per untraced syscall: pipe floor %.1f ns, infertap %.1f ns (ratio %.3f)\n",
                pipe_floor_add, pipe_inf_add, pipe_inf_add / pipe_floor_add);
    std::printf("added per untraced syscall: tcp  floor %.1f ns, infertap %.1f ns (ratio %.3f)\n",
                tcp_floor_add, tcp_inf_add, tcp_inf_add / tcp_floor_add);
    std::printf("getppid() x2, ns/iter: none %.1f  floor %.1f  infertap %.1f\n", on, of, oi);
    std::printf("added per unhooked syscall: floor %.1f ns, infertap %.1f ns\n", other_floor_add,
                other_inf_add);
    std::printf("added per captured syscall over untraced: 64 B %.1f ns, 4 KiB %.1f ns\n", cap64,
                cap4k);
    std::printf("kernel events %llu, lost %llu, drained %llu\n", (unsigned long long)ks.events,
                (unsigned long long)ks.lost_events, (unsigned long long)sink.events.load());
  }
  return 0;
}
