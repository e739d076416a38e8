// The pool poller (docs/pool-gauges.md): scrapes the model-server pods of each pool on this node
// and keeps the inference_pool_* gauges of the metrics registry current.
//
// Split in two so the rules are testable without a network:
//  - pure state: OnScrapeResult() records one pod's scrape outcome, Tick(now) recomputes every
//    gauge from the per-pod state (freshness, averages, removals);
//  - a worker thread (Start/Stop) that schedules a GET per pod every poll_interval through
//    HttpFetcher and feeds the results into the same two calls.
//
// Rules: a pod is fresh for `staleness` after its last successful scrape. Per pool, the averages
// of queue, running and kv utilization are taken over fresh pods (kv over fresh pods that report
// it) with real division; inference_pool_ready_pods is the number of fresh pods. With no fresh
// pod the average series are removed, not frozen; per-pod series exist only while the pod is
// fresh; all of a pod's series go when it leaves the target set, all of a pool's when the pool
// does. A failed scrape (connect error, timeout, non-200, too large, unparsable, unknown engine)
// counts infertap_pool_scrape_errors_total{name,model_server_pod} and leaves the pod's last good
// values to age out.
//
// Scheduling: each pod has its own timer, so a pod whose transfer hangs until the timeout never
// delays the next scrape of another pod.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/metrics/metrics.hpp"
#include "agent/poller/engines.hpp"
#include "agent/poller/fetcher.hpp"
#include "parsers/promtext/promtext.hpp"

namespace infertap::poller {

using Clock = std::function<std::chrono::steady_clock::time_point()>;

struct PoolTarget {
  std::string pool;     // InferencePool name (label `name`)
  std::string pod;      // pod name (label `model_server_pod`)
  std::string address;  // host:port ("[v6]:port" for IPv6)
  std::string path = "/metrics";
  Engine engine = Engine::kAuto;  // --engine or the pod's engine-type label; kAuto detects

  bool operator==(const PoolTarget&) const = default;
};

struct PollerOptions {
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds timeout{1000};
  std::chrono::milliseconds staleness{2000};
  size_t max_body_bytes = 8u << 20;
  promtext::Limits parse_limits;
};

// One pod as the poller sees it (for the inspection API and `infertap top`).
struct PodStatus {
  PoolTarget target;
  bool fresh = false;
  std::optional<PodStats> stats;  // last good values, fresh or not
  std::string last_error;         // of the last failed scrape, "" after a success
  uint64_t scrape_errors = 0;
};

// What the gauges were set from at the last Tick(): the one producer of the pool averages and
// of pod freshness, read by /metrics (through the registry) and /v1/state (through this).
struct PollerSnapshot {
  std::map<std::string, PoolGauges> pools;  // by pool label; pools with targets only
  std::vector<PodStatus> pods;              // `fresh` as of that Tick
};

class PoolPoller {
 public:
  PoolPoller(Metrics& metrics, Clock clock, PollerOptions options = {});
  ~PoolPoller();  // Stop()
  PoolPoller(const PoolPoller&) = delete;
  PoolPoller& operator=(const PoolPoller&) = delete;

  // Replaces the target set (any thread; the k8s watch or the CLI config calls it). Pods that
  // stay keep their state; a pod whose address/path/engine changed starts fresh.
  void SetTargets(std::vector<PoolTarget> targets);

  // Worker thread. Start() after Stop() is allowed. Stop() returns promptly (it wakes the
  // worker and cancels transfers in flight) and joins.
  void Start();
  void Stop();

  // --- pure path (the worker uses it; tests drive it with a fake clock) ---
  // Records the outcome of one scrape of (pool, pod) at `now`. Unknown pods are ignored (the
  // target was removed while its scrape was in flight).
  void OnScrapeResult(const std::string& pool, const std::string& pod,
                      std::chrono::steady_clock::time_point now, const FetchResult& result);
  // Recomputes all pool and per-pod gauges for time `now`.
  void Tick(std::chrono::steady_clock::time_point now);

  // What the last Tick() set (the only judgement of freshness: there is no second one on a
  // reader's clock, so /v1/state and /metrics cannot disagree).
  PollerSnapshot Snapshot() const;

 private:
  struct PodState {
    PoolTarget target;
    std::optional<PodStats> stats;
    std::optional<std::chrono::steady_clock::time_point> last_ok;
    std::string last_error;
    uint64_t scrape_errors = 0;
    bool gauges_set = false;  // per-pod series currently exported
    // Worker-only scheduling.
    std::chrono::steady_clock::time_point next_due{};
    std::optional<uint64_t> in_flight;
  };
  using Key = std::pair<std::string, std::string>;  // (pool, pod)

  bool FreshLocked(const PodState& p, std::chrono::steady_clock::time_point now) const;
  void Run();

  Metrics& metrics_;
  const Clock clock_;
  const PollerOptions options_;

  mutable std::mutex mu_;
  std::map<Key, PodState> pods_;
  std::map<std::string, PoolGauges> pools_;  // pools currently exported, as last set

  std::mutex run_mu_;  // serializes Start/Stop
  std::thread worker_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> targets_changed_{false};
  std::unique_ptr<HttpFetcher> fetcher_;  // owned by the worker while it runs
};

}  // namespace infertap::poller
