// The metrics registry (docs/metrics.md): every exposed series, and the recording rules that turn
// request records and pool samples into them.
//
// Threads: every method is safe to call from any thread. In the agent the pipeline thread calls
// OnRequestReceived/OnRecord and the capture counters, the pool poller thread calls the pool
// methods, and the HTTP server thread calls Serialize() or collects registry() directly.
//
// Recording rules (docs/metrics.md#seed-metrics, docs/metrics.md#beyond-the-seed), for the
// pipeline:
//  - OnRequestReceived(r) when the model server has received the whole request (headers + body)
//    and the exchange's final label pair is known while it is still in flight (the assembler
//    decides, parsers/exchange.cc MaybeCount): request_total +1, request_sizes observe
//    (request_bytes, 0 allowed), running_requests +1 and InFlight() +1. r.counted_in_flight is
//    true.
//  - OnRecord(r) once per record, after the exchange ended, under the same pair:
//      * r.counted_in_flight: running_requests −1 and InFlight() −1 (request_total was counted
//        already).
//      * otherwise, if r.request_complete or a response was seen (status != 0, e.g. a 413 sent
//        before the body ended and the connection closed): request_total +1 and request_sizes
//        now — the pair was only known at the end (a request without `model` answered by a
//        response without one, an early response), so running_requests is never touched and no
//        series of a provisional (empty) model appears.
//      * r.status != 0 (a response was seen, errors and cut-off responses included): duration and
//        response_sizes are observed; duration/output_tokens too when output_tokens > 0.
//      * error != kNone: request_error_total{error_code} +1.
//      * input/output tokens observed when > 0; cached tokens whenever the server reported them
//        (0 included); ttft and tpot whenever the record has them.
//  - Records with request_complete == false and no response (status 0): the client gave up (or
//    the capture lost bytes) before the model server had the request, so it is not an inference
//    request in the docs/metrics.md#seed-metrics sense. It is counted only in
//    infertap_requests_incomplete_total: not in request_total and not in
//    request_error_total{Incomplete} (which is for requests whose *response* was cut off).
//  Replaying finished records without live events: OnRecord(r) alone (with counted_in_flight
//  false) counts everything.
//
// Cardinality (docs/faults.md): at most `max_models` distinct (model_name, target_model_name) pairs
// get their own series. Later pairs are folded into model_name="__other__" AND
// target_model_name="__other__" (folding only the model would still let target names grow
// without bound), and every folded request counts in infertap_model_labels_folded_total. Pairs
// are never evicted, so a folded pair stays folded and increments/decrements always meet.
// Label values are made safe before use: invalid UTF-8 becomes U+FFFD (one bad request body must
// not make the whole page unscrapable) and values are cut at 256 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "parsers/record.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace infertap {

struct MetricsOptions {
  // "inference_model" (default) or "inference_objective": the name of the per-model family of
  // newer gateway releases (docs/metrics.md#beyond-the-seed). Pool metric names never change.
  std::string metric_prefix = "inference_model";
  size_t max_models = 1000;
  std::string version = "0.0.0";     // infertap_build_info{version}
  std::string revision = "unknown";  // infertap_build_info{revision}
};

// Pool-level gauges as computed by the pool poller; a nullopt removes that series (a pool with no
// fresh pod must show no average rather than a frozen one, docs/pool-gauges.md).
struct PoolGauges {
  size_t ready_pods = 0;
  std::optional<double> average_kv_cache_utilization;
  std::optional<double> average_queue_size;
  std::optional<double> average_running_requests;
};

// Requests received and not yet finished, per (pool, model_name, target_model_name).
struct InFlightKey {
  std::string pool, model_name, target_model_name;
  auto operator<=>(const InFlightKey&) const = default;
};

class Metrics {
 public:
  static constexpr std::string_view kOtherLabel = "__other__";
  static bool IsValidMetricPrefix(std::string_view prefix);

  // Throws std::invalid_argument for an invalid metric_prefix (check with IsValidMetricPrefix
  // first to report a usage error) or max_models == 0.
  explicit Metrics(MetricsOptions options = {});
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // For the HTTP exposer (prometheus::Exposer::RegisterCollectable takes a weak_ptr).
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // Prometheus text format 0.0.4 of everything registered.
  std::string Serialize() const;

  // --- Record path (pipeline thread) ---
  void OnRequestReceived(const RequestRecord& r);
  void OnRecord(const RequestRecord& r);

  // --- Upstream-EPP-style direct API (also what the golden tests drive) ---
  void RecordRequestCounter(std::string_view model, std::string_view target);
  void RecordRequestErrCounter(std::string_view model, std::string_view target,
                               std::string_view error_code);
  void RecordRequestSizes(std::string_view model, std::string_view target, uint64_t bytes);
  void RecordResponseSizes(std::string_view model, std::string_view target, uint64_t bytes);
  // Observed only when tokens > 0.
  void RecordInputTokens(std::string_view model, std::string_view target, uint64_t tokens);
  void RecordOutputTokens(std::string_view model, std::string_view target, uint64_t tokens);
  void RecordCachedTokens(std::string_view model, std::string_view target, uint64_t tokens);
  // start/end in CLOCK_MONOTONIC ns (as in RequestRecord). false, nothing recorded, if end < start.
  bool RecordRequestLatencies(std::string_view model, std::string_view target, uint64_t start_ns,
                              uint64_t end_ns);
  // false, nothing recorded, if end < start or tokens == 0.
  bool RecordNormalizedTimePerOutputToken(std::string_view model, std::string_view target,
                                          uint64_t start_ns, uint64_t end_ns, uint64_t tokens);
  void RecordTtft(std::string_view model, std::string_view target, double seconds);
  void RecordTpot(std::string_view model, std::string_view target, double seconds);
  void IncRunningRequests(std::string_view model);
  void DecRunningRequests(std::string_view model);
  void RecordPoolAvgKVCache(std::string_view pool, double value);
  void RecordPoolAvgQueueSize(std::string_view pool, double value);

  // --- Pool poller (poller thread) ---
  void SetPoolGauges(std::string_view pool, const PoolGauges& g);
  // Removes every pool-level series of `pool` (the pool is no longer polled on this node).
  void RemovePool(std::string_view pool);
  // nullopt removes the series (pod stale or gone; engines without kv, like TGI, never set it).
  void SetPodGauges(std::string_view pool, std::string_view pod, std::optional<double> queue,
                    std::optional<double> kv_cache);
  void IncPoolScrapeErrors(std::string_view pool, std::string_view pod);
  // Drops the pod's error counter when the pod leaves the target set (bounded cardinality).
  void RemovePoolScrapeErrors(std::string_view pool, std::string_view pod);

  // --- infertap self metrics ---
  void AddCaptureEvents(uint64_t events, uint64_t bytes);
  // `kernel_total` is the running total kept by the kernel side; the counter advances by the
  // delta since the last call. A smaller total means the kernel counter restarted (maps were
  // recreated), and the new total is added as a fresh delta.
  void SetCaptureLostEventsTotal(uint64_t kernel_total);
  void SetConnectionsTracked(int64_t connections);
  void IncParseErrors(std::string_view reason);
  void IncHttpExchangesIgnored();

  // Counts after folding, for tests and the inspection API.
  size_t TrackedModelPairs() const;
  // The requests in flight (labels as recorded, before sanitizing and folding): the one count
  // that running_requests shows summed per model_name and /v1/state shows per key. Taken under
  // the same lock as the gauges, so the two never disagree.
  std::map<InFlightKey, int64_t> InFlight() const;

 private:
  enum Hist : size_t {
    kRequestSizes,
    kResponseSizes,
    kInputTokens,
    kOutputTokens,
    kDuration,
    kNormalizedTpot,
    kTtft,
    kTpot,
    kCachedTokens,
    kHistCount,
  };
  struct PairSeries {
    std::string model, target;
    prometheus::Counter* request_total = nullptr;
    std::array<prometheus::Histogram*, kHistCount> hist{};
    std::map<std::string, prometheus::Counter*, std::less<>> errors;
  };
  struct PoolSeries {
    prometheus::Gauge* ready = nullptr;
    prometheus::Gauge* kv = nullptr;
    prometheus::Gauge* queue = nullptr;
    prometheus::Gauge* running = nullptr;
  };
  struct PodSeries {
    prometheus::Gauge* queue = nullptr;
    prometheus::Gauge* kv = nullptr;
    prometheus::Counter* scrape_errors = nullptr;
  };

  // All take models_mu_.
  PairSeries& ResolvePairLocked(std::string_view model, std::string_view target, bool* folded);
  prometheus::Histogram& HistLocked(PairSeries& s, Hist h);
  prometheus::Counter& RequestTotalLocked(PairSeries& s);
  prometheus::Counter& ErrorLocked(PairSeries& s, std::string_view code);
  prometheus::Gauge& RunningLocked(std::string_view model);
  void ObserveLocked(std::string_view model, std::string_view target, Hist h, double v);
  void CountRequestLocked(PairSeries& s, bool folded, uint64_t request_bytes);

  // Take pools_mu_.
  PodSeries& PodLocked(std::string_view pool, std::string_view pod);
  void SetOrRemove(prometheus::Family<prometheus::Gauge>& family, prometheus::Gauge*& gauge,
                   const std::map<std::string, std::string>& labels, std::optional<double> v);

  const MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;

  // Families (owned by registry_).
  prometheus::Family<prometheus::Counter>* request_total_;
  prometheus::Family<prometheus::Counter>* request_error_total_;
  std::array<prometheus::Family<prometheus::Histogram>*, kHistCount> hist_families_{};
  std::array<std::vector<double>, kHistCount> hist_buckets_;
  prometheus::Family<prometheus::Gauge>* running_requests_;
  prometheus::Family<prometheus::Gauge>* pool_kv_;
  prometheus::Family<prometheus::Gauge>* pool_queue_;
  prometheus::Family<prometheus::Gauge>* pool_running_;
  prometheus::Family<prometheus::Gauge>* pool_ready_;
  prometheus::Family<prometheus::Gauge>* pod_queue_;
  prometheus::Family<prometheus::Gauge>* pod_kv_;
  prometheus::Family<prometheus::Counter>* scrape_errors_;
  prometheus::Family<prometheus::Counter>* parse_errors_;

  prometheus::Counter* capture_events_;
  prometheus::Counter* capture_bytes_;
  prometheus::Counter* capture_lost_;
  prometheus::Gauge* connections_tracked_;
  prometheus::Counter* exchanges_ignored_;
  prometheus::Counter* requests_incomplete_;
  prometheus::Counter* labels_folded_;

  mutable std::mutex models_mu_;
  // Key: model + '\0' + target (after sanitizing). unordered_map nodes are stable, so PairSeries
  // references stay valid while the lock is held across inserts.
  std::unordered_map<std::string, PairSeries> pairs_;
  std::unique_ptr<PairSeries> other_pair_;
  std::unordered_map<std::string, prometheus::Gauge*> running_;
  std::map<InFlightKey, int64_t> in_flight_;  // entries > 0 only

  std::mutex pools_mu_;
  std::map<std::string, PoolSeries, std::less<>> pools_;
  std::map<std::pair<std::string, std::string>, PodSeries> pods_;

  std::mutex self_mu_;
  uint64_t last_lost_total_ = 0;
  std::map<std::string, prometheus::Counter*, std::less<>> parse_error_reasons_;
};

}  // namespace infertap
