// `infertap replay`: the capture pipeline offline, on a capture file.
#include <cstdio>
#include <string>

#include "agent/capture/capture_file.hpp"
#include "agent/capture/summary.hpp"
#include "agent/capture/tracker.hpp"
#include "agent/cli/commands.hpp"

namespace infertap::cli {
namespace {

struct ReplayArgs {
  std::string file;
  bool summary = false;
};

int RunReplay(const ReplayArgs& a) {
  if (!a.summary) {
    std::fprintf(stderr,
                 "infertap replay: only --summary is implemented in this build (metrics and "
                 "--records output are not implemented yet)\n");
    return 2;
  }
  Status st;
  std::unique_ptr<CaptureReader> reader = CaptureReader::Open(a.file, &st);
  if (!reader) {
    std::fprintf(stderr, "infertap replay: %s\n", st.message().c_str());
    return 1;
  }
  SummarySink summary;
  ConnectionTracker tracker(summary);
  for (;;) {
    PollResult r = reader->Poll(tracker, 0);
    if (!r.status) {
      std::fprintf(stderr, "infertap replay: %s\n", r.status.message().c_str());
      return 1;
    }
    tracker.Flush(tracker.newest_ts_ns());
    if (r.at_end) break;
  }
  tracker.FinishAll(tracker.newest_ts_ns());
  summary.Print(stdout);
  return 0;
}

}  // namespace

Runner RegisterReplay(CLI::App& app) {
  auto args = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand("replay", "Run the pipeline offline on a capture file");
  cmd->add_option("FILE", args->file, "Capture file written by `infertap capture -o`")
      ->required();
  cmd->add_flag("--summary", args->summary, "Print one JSON object per connection");
  return [args] { return RunReplay(*args); };
}

}  // namespace infertap::cli
