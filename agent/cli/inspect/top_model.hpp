// The numbers behind `infertap top` (docs/cli.md), kept apart from the terminal and the network so
// tests can drive them with a fake clock.
//
// Records feed the rate and latency columns; each is stamped with its *arrival* time (when the CLI
// read it), not its `ts` (request start): a record describes a request that just completed, and
// the sliding window must hold the requests that completed in its last `window_s` seconds.
// State snapshots feed in-flight, queue, KV cache and the header.
//
// Rates are per second over the effective window: min(window_s, now − start of the stream). The
// agent sends only records published after the client connected, so right after connecting the
// window is as long as the connection, not `window_s`; dividing by `window_s` would understate
// every rate for the first seconds (and for --once, always).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "agent/cli/inspect/agent_json.hpp"

namespace infertap::cli {

// One line of the table: either a pool (aggregated over all its models, plus the pool's gauges)
// or one model of that pool. Unknown values are nullopt and render as "-".
struct TopRow {
  bool is_pool = false;
  std::string pool;
  std::string model;  // empty for pool rows
  std::optional<double> req_per_s;
  std::optional<int64_t> in_flight;   // from /v1/state
  std::optional<double> error_ratio;  // 0..1, records with error_code != "" / records in window
  std::optional<double> p50_s;        // duration percentiles (nearest rank)
  std::optional<double> p99_s;
  std::optional<double> ttft_p50_s;      // over records that carry ttft_s
  std::optional<double> in_tok_per_s;    // input_tokens of records in window / window
  std::optional<double> out_tok_per_s;   // output_tokens of records in window / window
  std::optional<double> queue;           // pool rows: average_queue_size
  std::optional<double> kv_utilization;  // pool rows: average_kv_cache_utilization, 0..1
  std::optional<int64_t> ready_pods;     // pool rows
  int64_t records = 0;                   // records in window (for tests and the totals line)
};

// What the frame shows besides the table; set by the caller (clock and URL are not the model's).
struct FrameInfo {
  std::string agent_url;
  std::string clock;        // e.g. "18:04:05", already formatted in local time
  std::string status;       // "" or a problem to show in the footer ("agent unreachable: ...")
  bool interactive = true;  // footer says "q quit"
};

class TopModel {
 public:
  struct Options {
    double window_s = 10;
    // Bounds memory at ~20 MB. At 10 s that is 20k requests/s on one node; beyond it the oldest
    // samples go first and dropped_samples() says so in the footer.
    size_t max_samples = 200000;
  };

  TopModel() : TopModel(Options{}) {}
  explicit TopModel(Options options) : options_(options) {}

  // A new record stream began at `now_s`: forget all samples and count rates from here on.
  void StartWindow(double now_s);
  // `arrival_s` on the same monotonic clock as StartWindow/SetNow, never decreasing.
  void AddRecord(const TopRecord& record, double arrival_s);
  void SetState(AgentState state) { state_ = std::move(state); }
  // Moves the clock to `now_s` and drops samples that left the window.
  void SetNow(double now_s);

  void set_info(FrameInfo info) { info_ = std::move(info); }
  const FrameInfo& info() const { return info_; }
  const std::optional<AgentState>& state() const { return state_; }
  double window_s() const { return options_.window_s; }
  // Seconds the rates are computed over, or nullopt before any stream started.
  std::optional<double> effective_window_s() const;
  uint64_t dropped_samples() const { return dropped_samples_; }
  size_t samples() const { return samples_.size(); }

  // Pools sorted by name, each followed by its models: busiest (req/s) first, then by name.
  // Pools and models come from the state snapshot and from records in the window.
  std::vector<TopRow> Rows() const;
  // All pools together (is_pool, pool and model empty; gauges unset).
  TopRow Totals() const;

 private:
  struct Sample {
    double arrival_s;
    std::string pool;
    std::string model;
    bool error;
    double duration_s;
    std::optional<double> ttft_s;
    std::optional<int64_t> input_tokens;
    std::optional<int64_t> output_tokens;
  };
  TopRow Aggregate(const std::vector<const Sample*>& samples) const;

  Options options_;
  std::deque<Sample> samples_;
  std::optional<double> start_s_;
  double now_s_ = 0;
  uint64_t dropped_samples_ = 0;
  std::optional<AgentState> state_;
  FrameInfo info_;
};

// Nearest-rank percentile (p in (0, 1]) of `values`, which it reorders; nullopt when empty.
// Nearest rank returns a value that was observed, so p99 of few samples is the slowest request
// rather than an interpolation nobody saw.
std::optional<double> Percentile(std::vector<double>& values, double p);

}  // namespace infertap::cli
