// What each helper and map operation of the captured path costs (docs/performance.md "Profile of
// the captured path"): bench/bpf_cost.bpf.c has one sys_exit program per operation, each running
// its operation COST_REPS times for this benchmark's measuring thread only. Per round, every
// program is attached alone in turn (rotated order) while the measuring thread, pinned to CPU 0,
// runs --iters getppid() calls; run_time_ns from BPF_ENABLE_STATS before and after gives the
// program's time. Figure = (time of the op's program - time of op_base in the same round)
// / (iters * COST_REPS): ns per operation, warm. Median (min-max) over --rounds rounds.
// A ring buffer consumer runs on CPU 1 the whole time (like the agent's drain thread).
// Needs root. Usage: infertap-bench-bpf-cost [--rounds 7] [--iters 20000] [--markdown]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bpf_cost.skel.h"

namespace {

constexpr int kReps = 8;  // COST_REPS in bench/bpf_cost.bpf.c

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

uint64_t RunTimeNs(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len)) return 0;
  return info.run_time_ns;
}

int Drop(void*, void*, size_t) { return 0; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"per-operation cost of the capture programs' helpers and maps; needs root"};
  int rounds = 7;
  long iters = 20000;
  bool markdown = false;
  app.add_option("--rounds", rounds, "rounds (median reported)")->capture_default_str();
  app.add_option("--iters", iters, "getppid() calls per program per round")->capture_default_str();
  app.add_flag("--markdown", markdown, "print a markdown table");
  CLI11_PARSE(app, argc, argv);

  Pin(0);
  static char ubuf[4096];
  std::memset(ubuf, 'x', sizeof(ubuf));
  bpf_cost_bpf* skel = bpf_cost_bpf__open();
  if (!skel) {
    std::fprintf(stderr, "bench: cannot open bpf_cost\n");
    return 1;
  }
  skel->bss->target_pid = uint32_t(syscall(SYS_gettid));
  skel->bss->ubuf = reinterpret_cast<uint64_t>(ubuf);
  if (bpf_cost_bpf__load(skel)) {
    std::fprintf(stderr, "bench: cannot load bpf_cost (see the verifier log above)\n");
    return 1;
  }
  {
    uint64_t key = 1;
    uint64_t v88[11] = {};
    uint64_t v16[2] = {};
    bpf_map__update_elem(skel->maps.hash, &key, sizeof(key), v88, sizeof(v88), BPF_ANY);
    bpf_map__update_elem(skel->maps.lru, &key, sizeof(key), v16, sizeof(v16), BPF_ANY);
  }
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    std::fprintf(stderr, "bench: BPF_ENABLE_STATS failed: %s\n", std::strerror(errno));
    return 1;
  }
  ring_buffer* rb = ring_buffer__new(bpf_map__fd(skel->maps.ring), Drop, nullptr, nullptr);
  std::atomic<bool> stop{false};
  std::thread drain([&] {
    Pin(1);
    while (!stop) {
      ring_buffer__consume(rb);
      usleep(100);
    }
  });

  std::vector<bpf_program*> progs;
  bpf_program* base = nullptr;
  bpf_program* p;
  bpf_object__for_each_program(p, skel->obj) {
    progs.push_back(p);
    if (std::strcmp(bpf_program__name(p), "op_base") == 0) base = p;
  }
  std::map<std::string, std::vector<double>> per_op;  // ns per operation, per round
  std::vector<double> base_ns;                         // op_base ns per invocation of the thread
  for (int r = 0; r < rounds; ++r) {
    std::map<bpf_program*, double> t;
    for (size_t k = 0; k < progs.size(); ++k) {
      bpf_program* prog = progs[(k + size_t(r)) % progs.size()];
      bpf_link* link = bpf_program__attach(prog);
      if (!link) {
        std::fprintf(stderr, "bench: cannot attach %s\n", bpf_program__name(prog));
        return 1;
      }
      for (int i = 0; i < 1000; ++i) syscall(SYS_getppid);
      const uint64_t t0 = RunTimeNs(bpf_program__fd(prog));
      for (long i = 0; i < iters; ++i) syscall(SYS_getppid);
      const uint64_t t1 = RunTimeNs(bpf_program__fd(prog));
      bpf_link__destroy(link);
      t[prog] = double(t1 - t0) / double(iters);
    }
    base_ns.push_back(t[base]);
    for (bpf_program* q : progs)
      if (q != base) per_op[bpf_program__name(q) + 3].push_back((t[q] - t[base]) / kReps);
  }
  stop = true;
  drain.join();
  ring_buffer__free(rb);
  const unsigned long long ring_fail = skel->bss->ring_fail;
  close(stats_fd);

  auto stats = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return std::array<double, 3>{v[v.size() / 2], v.front(), v.back()};
  };
  const auto b = stats(base_ns);
  if (markdown) {
    std::printf("| operation | ns per operation, median (min–max) over %d rounds |\n|---|---|\n",
                rounds);
    for (bpf_program* q : progs) {
      if (q == base) continue;
      const auto s = stats(per_op[bpf_program__name(q) + 3]);
      std::printf("| `%s` | %.1f (%.1f–%.1f) |\n", bpf_program__name(q) + 3, s[0], s[1], s[2]);
    }
    std::printf(
        "\nop_base (guard + %d empty iterations, BPF-stats overhead included): %.1f ns per "
        "invocation (%.1f–%.1f); %ld getppid() per program per round; failed ring reservations: "
        "%llu\n",
        kReps, b[0], b[1], b[2], iters, ring_fail);
  } else {
    for (bpf_program* q : progs) {
      if (q == base) continue;
      const auto s = stats(per_op[bpf_program__name(q) + 3]);
      std::printf("%-28s %8.1f ns  (%.1f-%.1f)\n", bpf_program__name(q) + 3, s[0], s[1], s[2]);
    }
    std::printf("op_base per invocation %.1f ns (%.1f-%.1f); ring reservations failed: %llu\n",
                b[0], b[1], b[2], ring_fail);
  }
  bpf_cost_bpf__destroy(skel);
  return 0;
}
