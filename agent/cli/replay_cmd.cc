// `infertap replay`: the whole pipeline offline, on a capture file (or a pcap, docs/cli.md). The
// same tracker, parsers, records and metrics code as the live agent.
#include <cstdio>
#include <memory>
#include <string>

#include "agent/capture/capture_file.hpp"
#include "agent/capture/summary.hpp"
#include "agent/capture/tracker.hpp"
#include "agent/cli/commands.hpp"
#include "agent/cli/targets.hpp"
#include "agent/common/version.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/pipeline/pipeline.hpp"
#include "agent/replay/pcap_replay.hpp"

namespace infertap::cli {
namespace {

struct ReplayArgs {
  std::string file;
  TargetArgs targets;
  AttributionArgs attribution;
  bool summary = false;
  bool records = false;
};

// Each connection to two consumers (pipeline + summary): `--summary` only.
class TeeConsumers : public ConnConsumerFactory {
 public:
  TeeConsumers(ConnConsumerFactory& a, ConnConsumerFactory& b) : a_(a), b_(b) {}
  std::unique_ptr<ConnConsumer> NewConsumer(const ConnInfo& conn) override {
    return std::make_unique<Tee>(a_.NewConsumer(conn), b_.NewConsumer(conn));
  }

 private:
  class Tee final : public ConnConsumer {
   public:
    Tee(std::unique_ptr<ConnConsumer> a, std::unique_ptr<ConnConsumer> b)
        : a_(std::move(a)), b_(std::move(b)) {}
    void OnOpen() override {
      a_->OnOpen();
      b_->OnOpen();
    }
    void OnData(Direction d, uint64_t ts, std::span<const uint8_t> bytes) override {
      a_->OnData(d, ts, bytes);
      b_->OnData(d, ts, bytes);
    }
    void OnGap(Direction d, uint64_t ts, uint64_t len) override {
      a_->OnGap(d, ts, len);
      b_->OnGap(d, ts, len);
    }
    void OnClose(uint64_t ts) override {
      a_->OnClose(ts);
      b_->OnClose(ts);
    }

   private:
    std::unique_ptr<ConnConsumer> a_, b_;
  };
  ConnConsumerFactory& a_;
  ConnConsumerFactory& b_;
};

class JsonLinesPrinter : public RecordListener {
 public:
  explicit JsonLinesPrinter(int64_t wall_offset_ns) : wall_offset_ns_(wall_offset_ns) {}
  void OnRecord(const RequestRecord& r) override {
    std::string line = RecordToJson(r, wall_offset_ns_);
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }

 private:
  int64_t wall_offset_ns_;
};

int RunReplay(const ReplayArgs& a) {
  if (a.summary && a.records) {
    std::fprintf(stderr, "infertap replay: --summary and --records are exclusive\n");
    return 2;
  }
  std::vector<TracedEndpoint> endpoints;
  if (Status s = ResolveTargets(a.targets, &endpoints); !s) {
    std::fprintf(stderr, "infertap replay: %s\n", s.message().c_str());
    return 2;
  }
  PipelineOptions popts;
  std::vector<EndpointAttribution> table;
  if (Status s = ResolveAttribution(a.attribution, endpoints, &popts, &table); !s) {
    std::fprintf(stderr, "infertap replay: %s\n", s.message().c_str());
    return 2;
  }

  Status st;
  const bool is_pcap = !LooksLikeCaptureFile(a.file) && LooksLikePcap(a.file);
  std::unique_ptr<CaptureReader> reader;
  if (!is_pcap) {
    reader = CaptureReader::Open(a.file, &st);
    if (!reader) {
      std::fprintf(stderr, "infertap replay: %s%s\n", st.message().c_str(),
                   st.message().find("bad magic") != std::string::npos
                       ? " and not a pcap/pcapng file either"
                       : "");
      return 1;
    }
  }

  MetricsOptions mopts;
  mopts.metric_prefix = a.attribution.metric_prefix;
  mopts.max_models = a.attribution.max_models;
  mopts.version = kVersion;
  mopts.revision = kRevision;
  // A pcap replayed without --target traces every flow: they all belong to --pool.
  if (a.targets.targets.empty()) popts.default_pool = a.attribution.pool;
  Metrics metrics(mopts);
  Pipeline pipeline(popts, &metrics);
  pipeline.SetEndpoints(table);
  // pcap timestamps are already wall-clock time.
  JsonLinesPrinter printer(reader ? reader->WallOffsetNs() : 0);
  if (a.records) pipeline.AddListener(&printer);
  SummarySink summary;
  SinkConsumers summary_consumers(summary);
  TeeConsumers tee(pipeline, summary_consumers);
  ConnConsumerFactory& consumers = a.summary ? static_cast<ConnConsumerFactory&>(tee) : pipeline;
  if (is_pcap) {
    // --target says which side is the model server; without it the reader infers it (SYN).
    std::vector<Endpoint> servers;
    if (!a.targets.targets.empty())
      for (const TracedEndpoint& e : endpoints) servers.push_back(e.endpoint);
    PcapStats ps;
    Status rs = PcapReplay().Replay(a.file, servers, consumers, &ps);
    if (!rs) {
      std::fprintf(stderr, "infertap replay: %s\n", rs.message().c_str());
      return 1;
    }
    metrics.AddCaptureEvents(ps.tcp_packets, ps.bytes);
  } else {
    ConnectionTracker tracker(consumers);
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
    metrics.AddCaptureEvents(tracker.stats().events, tracker.stats().data_bytes);
  }
  if (a.summary) {
    summary.Print(stdout);
  } else if (!a.records) {
    const std::string text = metrics.Serialize();
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

Runner RegisterReplay(CLI::App& app) {
  auto args = std::make_shared<ReplayArgs>();
  auto* cmd = app.add_subcommand(
      "replay",
      "Run the whole pipeline offline on a capture or pcap file; prints the Prometheus exposition "
      "(default), request records (--records) or connections (--summary)");
  cmd->add_option("FILE", args->file,
                  "Capture file written by `infertap capture -o`, or a pcap/pcapng file (TCP is "
                  "reassembled per flow; --target marks the model-server side)")
      ->required();
  AddTargetOptions(*cmd, args->targets);
  AddAttributionOptions(*cmd, args->attribution);
  cmd->add_flag("--records", args->records,
                "Print one JSON request record per line (docs/records.md)");
  cmd->add_flag("--summary", args->summary, "Print one JSON object per connection");
  return [args] { return RunReplay(*args); };
}

}  // namespace infertap::cli
