// `infertap capture`: record raw capture events to a file and/or summarise connections.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/capture/capture_file.hpp"
#include "agent/capture/summary.hpp"
#include "agent/capture/tracker.hpp"
#include "agent/cli/commands.hpp"
#include "agent/cli/targets.hpp"
#include "agent/common/log.hpp"

namespace infertap::cli {
namespace {

struct CaptureArgs {
  TargetArgs targets;
  std::string output;
  double duration_s = 0;
  bool summary = false;
  uint32_t ring_bytes = 16u << 20;
  uint32_t syscall_cap = IT_DEFAULT_SYSCALL_CAP;
  uint32_t conns_max = 0;  // hidden, tests only
};

uint64_t MonoNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

int RunCapture(const CaptureArgs& a) {
  // Before anything can be announced: a signal that arrives right after "capturing"/"running"
  // is printed must stop us gracefully (flushing files, detaching), not kill us.
  InstallStopSignals();
  std::vector<TracedEndpoint> endpoints;
  if (Status s = ResolveTargets(a.targets, &endpoints); !s) {
    std::fprintf(stderr, "infertap capture: %s\n", s.message().c_str());
    return 2;
  }
  if (a.output.empty() && !a.summary) {
    std::fprintf(stderr, "infertap capture: nothing to do: give -o FILE and/or --summary\n");
    return 2;
  }

  CaptureOptions opts;
  opts.ring_buffer_bytes = a.ring_bytes;
  opts.syscall_cap = a.syscall_cap;
  opts.conns_max = a.conns_max;
  Status st;
  std::unique_ptr<BpfCapture> cap = BpfCapture::Start(opts, &st);
  if (!cap) {
    std::fprintf(stderr, "infertap capture: %s\n", st.message().c_str());
    return 1;
  }
  if (st = cap->SetEndpoints(endpoints); !st) {
    std::fprintf(stderr, "infertap capture: %s\n", st.message().c_str());
    return 1;
  }

  std::unique_ptr<CaptureWriter> writer;
  if (!a.output.empty()) {
    writer = CaptureWriter::Create(a.output, cap->WallOffsetNs(), &st);
    if (!writer) {
      std::fprintf(stderr, "infertap capture: %s\n", st.message().c_str());
      return 1;
    }
  }
  SummarySink summary;
  ConnectionTracker tracker(summary);
  // A recorder only with a file to record into (it holds a reference to the writer).
  std::optional<RecordingSink> recorder;
  if (writer) recorder.emplace(*writer, &tracker);
  EventSink& sink = recorder ? static_cast<EventSink&>(*recorder) : tracker;

  std::string what;
  for (const auto& e : endpoints) what += (what.empty() ? "" : ", ") + e.endpoint.ToString();
  LOG_INFO("capturing %s side of %s (%zu programs attached, %s variant)%s%s",
           CaptureSideName(a.targets.side), what.c_str(), cap->attached_programs(),
           std::string(BpfVariantName(cap->variant())).c_str(), a.output.empty() ? "" : " to ",
           a.output.c_str());

  const uint64_t start = MonoNowNs();
  const uint64_t deadline = a.duration_s > 0 ? start + uint64_t(a.duration_s * 1e9) : 0;
  while (!StopRequested() && (!deadline || MonoNowNs() < deadline)) {
    PollResult r = cap->Poll(sink, 100);
    if (!r.status) {
      std::fprintf(stderr, "infertap capture: %s\n", r.status.message().c_str());
      return 1;
    }
    tracker.Flush(MonoNowNs());
    if (recorder && !recorder->status()) {
      std::fprintf(stderr, "infertap capture: %s\n", recorder->status().message().c_str());
      return 1;
    }
  }
  // Drain what is already in the ring before stopping.
  while (cap->Poll(sink, 0).events > 0) {
  }
  const KernelStats ks = cap->ReadStats();
  cap.reset();  // detach before the (possibly slow) output
  tracker.FinishAll(MonoNowNs());
  if (writer) {
    if (Status s = writer->Close(); !s || !recorder->status()) {
      std::fprintf(stderr, "infertap capture: %s\n",
                   (!s ? s : recorder->status()).message().c_str());
      return 1;
    }
    LOG_INFO("wrote %llu events to %s", (unsigned long long)writer->records(), a.output.c_str());
  }
  if (ks.lost_events > 0)
    LOG_WARN("%llu capture events lost (ring buffer full); affected streams show gaps",
             (unsigned long long)ks.lost_events);
  if (ks.conns_full > 0)
    LOG_WARN("%llu connections not traced: the kernel connection table was full",
             (unsigned long long)ks.conns_full);
  if (a.summary) summary.Print(stdout);
  return 0;
}

}  // namespace

Runner RegisterCapture(CLI::App& app) {
  auto args = std::make_shared<CaptureArgs>();
  auto* cmd = app.add_subcommand(
      "capture",
      "Record raw capture events of traced model-server connections (needs root or "
      "CAP_BPF+CAP_PERFMON)");
  AddTargetOptions(*cmd, args->targets);
  cmd->add_option("-o,--output", args->output, "Write the raw event stream to this capture file");
  cmd->add_option("--duration", args->duration_s,
                  "Stop after this many seconds (default: until "
                  "SIGINT/SIGTERM)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--summary", args->summary,
                "On exit print one JSON object per connection: pid, fd, role, local, remote, "
                "bytes_in, bytes_out, gap_bytes, events");
  AddRingBufferOption(*cmd, args->ring_bytes);
  // Hidden (empty group): the tests shrink the kernel connection table to fill it.
  cmd->add_option("--conns-max", args->conns_max, "Bound of the kernel connection table (tests)")
      ->check(CLI::Range(1u, 65536u))
      ->group("");
  cmd->add_option("--syscall-cap", args->syscall_cap,
                  "Bytes captured per syscall; the rest is reported as a gap")
      ->check(CLI::Range(1u, 16u << 20))
      ->capture_default_str();
  return [args] { return RunCapture(*args); };
}

}  // namespace infertap::cli
