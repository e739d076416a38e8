#include "agent/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <stdexcept>

#include "parsers/utf8.hpp"

namespace infertap {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr size_t kMaxLabelBytes = 256;
// Parse-error reasons come from our own code, but a cap keeps a future bug from exploding them.
constexpr size_t kMaxParseErrorReasons = 64;

std::string SanitizeLabel(std::string_view v) {
  // Runs for each label of each record: plain ASCII within the cap is the common case.
  if (v.size() <= kMaxLabelBytes &&
      std::all_of(v.begin(), v.end(), [](char c) { return uint8_t(c) < 0x80; }))
    return std::string(v);
  std::string out;
  out.reserve(std::min(v.size(), kMaxLabelBytes));
  for (size_t i = 0; i < v.size();) {
    size_t n = Utf8SequenceLength(v, i);
    std::string_view piece = n ? v.substr(i, n) : std::string_view("\xEF\xBF\xBD");
    if (out.size() + piece.size() > kMaxLabelBytes) break;
    out.append(piece);
    i += n ? n : 1;
  }
  return out;
}

std::vector<double> DurationBuckets() {
  return {0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8,  1,    1.25, 1.5, 2,
          3,     4,     5,    6,   8,   10,  15,  20,   30,   45,   60,  120,
          180,   240,   300,  360, 480, 600, 900, 1200, 1800, 2700, 3600};
}

std::vector<double> RequestSizeBuckets() {
  std::vector<double> b;
  for (int shift = 6; shift <= 30; ++shift) b.push_back(double(uint64_t{1} << shift));
  return b;
}

// 32778 (not 32768) is the upstream EPP's literal, kept so existing dashboards line up.
std::vector<double> ResponseSizeBuckets() {
  return {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536};
}

std::vector<double> TokenBuckets() {
  return {1,    8,    16,    32,    64,    128,    256,    512,    1024,   2048,
          4096, 8192, 16384, 32778, 65536, 131072, 262144, 524288, 1048576};
}

std::vector<double> OutputTokenBuckets() {
  return {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
}

std::vector<double> NormalizedTpotBuckets() {
  return {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};
}

std::vector<double> TpotBuckets() {
  return {0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2,
          0.3,    0.4,     0.5,   0.6,  0.8,  1,    1.5,  2,    3,   4.5,   6,    12,
          18,     24,      30,    36,   48,   60,   90,   120,  180, 270,   360};
}

template <typename T>
prometheus::Family<T>& AddFamily(prometheus::Registry& registry, std::string name,
                                 std::string help) {
  return prometheus::detail::Builder<T>()
      .Name(std::move(name))
      .Help(std::move(help))
      .Register(registry);
}

}  // namespace

bool Metrics::IsValidMetricPrefix(std::string_view prefix) {
  return prefix == "inference_model" || prefix == "inference_objective";
}

Metrics::Metrics(MetricsOptions options)
    : options_(std::move(options)), registry_(std::make_shared<prometheus::Registry>()) {
  if (!IsValidMetricPrefix(options_.metric_prefix)) {
    throw std::invalid_argument(
        "metric prefix must be inference_model or inference_objective, got '" +
        options_.metric_prefix + "'");
  }
  if (options_.max_models == 0) throw std::invalid_argument("max_models must be at least 1");
  auto& reg = *registry_;
  const std::string& p = options_.metric_prefix;

  request_total_ = &AddFamily<Counter>(
      reg, p + "_request_total",
      "[ALPHA] Counter of inference model requests broken out for each model and target model.");
  request_error_total_ = &AddFamily<Counter>(
      reg, p + "_request_error_total",
      "[ALPHA] Counter of inference model requests errors broken out for each model and target "
      "model.");

  struct HistSpec {
    Hist id;
    const char* suffix;
    const char* help;
    std::vector<double> buckets;
  };
  const HistSpec specs[] = {
      {kDuration, "_request_duration_seconds",
       "[ALPHA] Inference model response latency distribution in seconds for each model and "
       "target model.",
       DurationBuckets()},
      {kRequestSizes, "_request_sizes",
       "[ALPHA] Inference model requests size distribution in bytes for each model and target "
       "model.",
       RequestSizeBuckets()},
      {kResponseSizes, "_response_sizes",
       "[ALPHA] Inference model responses size distribution in bytes for each model and target "
       "model.",
       ResponseSizeBuckets()},
      {kInputTokens, "_input_tokens",
       "[ALPHA] Inference model input token count distribution for requests in each model.",
       TokenBuckets()},
      {kOutputTokens, "_output_tokens",
       "[ALPHA] Inference model output token count distribution for requests in each model.",
       OutputTokenBuckets()},
      {kNormalizedTpot, "_normalized_time_per_output_token_seconds",
       "[ALPHA] Inference model latency divided by number of output tokens in seconds for each "
       "model and target model.",
       NormalizedTpotBuckets()},
      {kTtft, "_request_ttft_seconds",
       "[ALPHA] Inference model time to first generated token distribution in seconds for each "
       "model and target model (streaming requests only).",
       DurationBuckets()},
      {kTpot, "_request_tpot_seconds",
       "[ALPHA] Inference model time per output token after the first, distribution in seconds "
       "for each model and target model.",
       TpotBuckets()},
      {kCachedTokens, "_prompt_cached_tokens",
       "[ALPHA] Inference model prompt tokens served from the prefix cache, distribution for "
       "requests in each model.",
       TokenBuckets()},
  };
  for (const HistSpec& s : specs) {
    hist_families_[s.id] = &AddFamily<Histogram>(reg, p + s.suffix, s.help);
    hist_buckets_[s.id] = s.buckets;
  }
  running_requests_ =
      &AddFamily<Gauge>(reg, p + "_running_requests",
                        "[ALPHA] Inference model number of running requests in each model.");

  pool_kv_ =
      &AddFamily<Gauge>(reg, "inference_pool_average_kv_cache_utilization",
                        "[ALPHA] The average kv cache utilization for an inference server pool.");
  pool_queue_ = &AddFamily<Gauge>(
      reg, "inference_pool_average_queue_size",
      "[ALPHA] The average number of requests pending in the model server queue.");
  pool_running_ = &AddFamily<Gauge>(
      reg, "inference_pool_average_running_requests",
      "[ALPHA] The average number of requests running in the model servers of an inference "
      "server pool.");
  pool_ready_ = &AddFamily<Gauge>(
      reg, "inference_pool_ready_pods",
      "[ALPHA] The number of model server pods of an inference server pool on this node whose "
      "metrics are fresh.");
  pod_queue_ = &AddFamily<Gauge>(
      reg, "inference_pool_per_pod_queue_size",
      "[ALPHA] The number of requests pending in the queue of each model server pod.");
  pod_kv_ = &AddFamily<Gauge>(reg, "inference_pool_per_pod_kv_cache_utilization",
                              "[ALPHA] The kv cache utilization of each model server pod.");

  AddFamily<Gauge>(reg, "infertap_build_info",
                   "[ALPHA] infertap build information; the value is always 1.")
      .Add({{"version", options_.version}, {"revision", options_.revision}})
      .Set(1);
  capture_events_ = &AddFamily<Counter>(reg, "infertap_capture_events_total",
                                        "[ALPHA] Capture events read from the kernel ring buffer.")
                         .Add({});
  capture_bytes_ = &AddFamily<Counter>(reg, "infertap_capture_bytes_total",
                                       "[ALPHA] Payload bytes captured from traced sockets.")
                        .Add({});
  capture_lost_ =
      &AddFamily<Counter>(reg, "infertap_capture_lost_events_total",
                          "[ALPHA] Capture events lost because the kernel ring buffer was full.")
           .Add({});
  connections_tracked_ =
      &AddFamily<Gauge>(reg, "infertap_connections_tracked",
                        "[ALPHA] Connections to traced endpoints currently tracked.")
           .Add({});
  parse_errors_ = &AddFamily<Counter>(
      reg, "infertap_parse_errors_total",
      "[ALPHA] Exchanges on traced connections that could not be parsed, by reason.");
  exchanges_ignored_ =
      &AddFamily<Counter>(reg, "infertap_http_exchanges_ignored_total",
                          "[ALPHA] HTTP exchanges on traced endpoints that were not inference "
                          "requests.")
           .Add({});
  scrape_errors_ = &AddFamily<Counter>(
      reg, "infertap_pool_scrape_errors_total",
      "[ALPHA] Failed scrapes of a model server pod's metrics (down, slow, or unparsable).");
  requests_incomplete_ =
      &AddFamily<Counter>(reg, "infertap_requests_incomplete_total",
                          "[ALPHA] Inference requests cut off before the model server received "
                          "them completely and never answered (client abort or capture gap); "
                          "not counted as requests.")
           .Add({});
  labels_folded_ =
      &AddFamily<Counter>(reg, "infertap_model_labels_folded_total",
                          "[ALPHA] Requests whose model_name/target_model_name pair was folded "
                          "into __other__ because --max-models pairs were already tracked.")
           .Add({});
}

Metrics::~Metrics() = default;

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

// ---------------------------------------------------------------------------------------------
// Model series

Metrics::PairSeries& Metrics::ResolvePairLocked(std::string_view model, std::string_view target,
                                                bool* folded) {
  std::string m = SanitizeLabel(model);
  std::string t = SanitizeLabel(target);
  std::string key = m;
  key.push_back('\0');
  key.append(t);
  *folded = false;
  if (auto it = pairs_.find(key); it != pairs_.end()) return it->second;
  if (pairs_.size() < options_.max_models) {
    PairSeries& s = pairs_[key];
    s.model = std::move(m);
    s.target = std::move(t);
    return s;
  }
  *folded = true;
  if (!other_pair_) {
    other_pair_ = std::make_unique<PairSeries>();
    other_pair_->model = std::string(kOtherLabel);
    other_pair_->target = std::string(kOtherLabel);
  }
  return *other_pair_;
}

Histogram& Metrics::HistLocked(PairSeries& s, Hist h) {
  if (!s.hist[h]) {
    s.hist[h] = &hist_families_[h]->Add({{"model_name", s.model}, {"target_model_name", s.target}},
                                        hist_buckets_[h]);
  }
  return *s.hist[h];
}

Counter& Metrics::RequestTotalLocked(PairSeries& s) {
  if (!s.request_total) {
    s.request_total =
        &request_total_->Add({{"model_name", s.model}, {"target_model_name", s.target}});
  }
  return *s.request_total;
}

Counter& Metrics::ErrorLocked(PairSeries& s, std::string_view code) {
  auto it = s.errors.find(code);
  if (it != s.errors.end()) return *it->second;
  std::string c = SanitizeLabel(code);
  Counter& counter = request_error_total_->Add(
      {{"error_code", c}, {"model_name", s.model}, {"target_model_name", s.target}});
  s.errors.emplace(std::string(code), &counter);
  return counter;
}

Gauge& Metrics::RunningLocked(std::string_view model) {
  std::string m = SanitizeLabel(model);
  auto it = running_.find(m);
  if (it != running_.end()) return *it->second;
  // Models of admitted pairs always fit (there are at most max_models of them); only the direct
  // API can bring in models without a pair, and those fold once the table is full.
  if (running_.size() >= options_.max_models && m != kOtherLabel) {
    bool admitted_pair_model = false;
    for (const auto& [key, s] : pairs_) {
      if (s.model == m) {
        admitted_pair_model = true;
        break;
      }
    }
    if (!admitted_pair_model) m = std::string(kOtherLabel);
    if (auto o = running_.find(m); o != running_.end()) return *o->second;
  }
  Gauge& g = running_requests_->Add({{"model_name", m}});
  running_.emplace(m, &g);
  return g;
}

void Metrics::ObserveLocked(std::string_view model, std::string_view target, Hist h, double v) {
  bool folded;
  HistLocked(ResolvePairLocked(model, target, &folded), h).Observe(v);
}

void Metrics::CountRequestLocked(PairSeries& s, bool folded, uint64_t request_bytes) {
  RequestTotalLocked(s).Increment();
  HistLocked(s, kRequestSizes).Observe(double(request_bytes));
  if (folded) labels_folded_->Increment();
}

void Metrics::OnRequestReceived(const RequestRecord& r) {
  std::lock_guard lock(models_mu_);
  bool folded;
  PairSeries& s = ResolvePairLocked(r.model_name, r.target_model_name, &folded);
  CountRequestLocked(s, folded, r.request_bytes);
  RunningLocked(s.model).Increment();
  ++in_flight_[InFlightKey{r.pool, r.model_name, r.target_model_name}];
}

void Metrics::OnRecord(const RequestRecord& r) {
  std::lock_guard lock(models_mu_);
  bool folded;
  PairSeries& s = ResolvePairLocked(r.model_name, r.target_model_name, &folded);
  if (r.counted_in_flight) {
    RunningLocked(s.model).Decrement();
    auto it = in_flight_.find(InFlightKey{r.pool, r.model_name, r.target_model_name});
    if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
  } else if (!r.request_complete && r.status == 0) {
    requests_incomplete_->Increment();
    return;
  } else {
    CountRequestLocked(s, folded, r.request_bytes);
  }

  if (r.status != 0) {
    if (r.end_ns >= r.start_ns) {
      HistLocked(s, kDuration).Observe(double(r.end_ns - r.start_ns) / 1e9);
      if (r.output_tokens && *r.output_tokens > 0) {
        HistLocked(s, kNormalizedTpot)
            .Observe(double(r.end_ns - r.start_ns) / 1e9 / double(*r.output_tokens));
      }
    }
    HistLocked(s, kResponseSizes).Observe(double(r.response_bytes));
  }
  if (r.error != ErrorCode::kNone) ErrorLocked(s, ErrorCodeName(r.error)).Increment();
  if (r.input_tokens && *r.input_tokens > 0) {
    HistLocked(s, kInputTokens).Observe(double(*r.input_tokens));
  }
  if (r.output_tokens && *r.output_tokens > 0) {
    HistLocked(s, kOutputTokens).Observe(double(*r.output_tokens));
  }
  if (r.cached_tokens) HistLocked(s, kCachedTokens).Observe(double(*r.cached_tokens));
  if (auto ttft = r.ttft_s()) HistLocked(s, kTtft).Observe(*ttft);
  if (auto tpot = r.tpot_s()) HistLocked(s, kTpot).Observe(*tpot);
}

void Metrics::RecordRequestCounter(std::string_view model, std::string_view target) {
  std::lock_guard lock(models_mu_);
  bool folded;
  RequestTotalLocked(ResolvePairLocked(model, target, &folded)).Increment();
  if (folded) labels_folded_->Increment();
}

void Metrics::RecordRequestErrCounter(std::string_view model, std::string_view target,
                                      std::string_view error_code) {
  if (error_code.empty()) return;
  std::lock_guard lock(models_mu_);
  bool folded;
  ErrorLocked(ResolvePairLocked(model, target, &folded), error_code).Increment();
}

void Metrics::RecordRequestSizes(std::string_view model, std::string_view target, uint64_t bytes) {
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kRequestSizes, double(bytes));
}

void Metrics::RecordResponseSizes(std::string_view model, std::string_view target, uint64_t bytes) {
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kResponseSizes, double(bytes));
}

void Metrics::RecordInputTokens(std::string_view model, std::string_view target, uint64_t tokens) {
  if (tokens == 0) return;
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kInputTokens, double(tokens));
}

void Metrics::RecordOutputTokens(std::string_view model, std::string_view target, uint64_t tokens) {
  if (tokens == 0) return;
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kOutputTokens, double(tokens));
}

void Metrics::RecordCachedTokens(std::string_view model, std::string_view target, uint64_t tokens) {
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kCachedTokens, double(tokens));
}

bool Metrics::RecordRequestLatencies(std::string_view model, std::string_view target,
                                     uint64_t start_ns, uint64_t end_ns) {
  if (end_ns < start_ns) return false;
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kDuration, double(end_ns - start_ns) / 1e9);
  return true;
}

bool Metrics::RecordNormalizedTimePerOutputToken(std::string_view model, std::string_view target,
                                                 uint64_t start_ns, uint64_t end_ns,
                                                 uint64_t tokens) {
  if (end_ns < start_ns || tokens == 0) return false;
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kNormalizedTpot, double(end_ns - start_ns) / 1e9 / double(tokens));
  return true;
}

void Metrics::RecordTtft(std::string_view model, std::string_view target, double seconds) {
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kTtft, seconds);
}

void Metrics::RecordTpot(std::string_view model, std::string_view target, double seconds) {
  std::lock_guard lock(models_mu_);
  ObserveLocked(model, target, kTpot, seconds);
}

void Metrics::IncRunningRequests(std::string_view model) {
  std::lock_guard lock(models_mu_);
  RunningLocked(model).Increment();
}

void Metrics::DecRunningRequests(std::string_view model) {
  std::lock_guard lock(models_mu_);
  RunningLocked(model).Decrement();
}

size_t Metrics::TrackedModelPairs() const {
  std::lock_guard lock(models_mu_);
  return pairs_.size();
}

std::map<InFlightKey, int64_t> Metrics::InFlight() const {
  std::lock_guard lock(models_mu_);
  return in_flight_;
}

// ---------------------------------------------------------------------------------------------
// Pool series

void Metrics::SetOrRemove(prometheus::Family<Gauge>& family, Gauge*& gauge,
                          const std::map<std::string, std::string>& labels,
                          std::optional<double> v) {
  if (v) {
    if (!gauge) gauge = &family.Add(labels);
    gauge->Set(*v);
  } else if (gauge) {
    family.Remove(gauge);
    gauge = nullptr;
  }
}

void Metrics::RecordPoolAvgKVCache(std::string_view pool, double value) {
  std::lock_guard lock(pools_mu_);
  PoolSeries& s = pools_[std::string(pool)];
  SetOrRemove(*pool_kv_, s.kv, {{"name", SanitizeLabel(pool)}}, value);
}

void Metrics::RecordPoolAvgQueueSize(std::string_view pool, double value) {
  std::lock_guard lock(pools_mu_);
  PoolSeries& s = pools_[std::string(pool)];
  SetOrRemove(*pool_queue_, s.queue, {{"name", SanitizeLabel(pool)}}, value);
}

void Metrics::SetPoolGauges(std::string_view pool, const PoolGauges& g) {
  std::lock_guard lock(pools_mu_);
  PoolSeries& s = pools_[std::string(pool)];
  const std::map<std::string, std::string> labels = {{"name", SanitizeLabel(pool)}};
  SetOrRemove(*pool_ready_, s.ready, labels, double(g.ready_pods));
  SetOrRemove(*pool_kv_, s.kv, labels, g.average_kv_cache_utilization);
  SetOrRemove(*pool_queue_, s.queue, labels, g.average_queue_size);
  SetOrRemove(*pool_running_, s.running, labels, g.average_running_requests);
}

void Metrics::RemovePool(std::string_view pool) {
  std::lock_guard lock(pools_mu_);
  auto it = pools_.find(pool);
  if (it == pools_.end()) return;
  PoolSeries& s = it->second;
  SetOrRemove(*pool_ready_, s.ready, {}, std::nullopt);
  SetOrRemove(*pool_kv_, s.kv, {}, std::nullopt);
  SetOrRemove(*pool_queue_, s.queue, {}, std::nullopt);
  SetOrRemove(*pool_running_, s.running, {}, std::nullopt);
  pools_.erase(it);
}

Metrics::PodSeries& Metrics::PodLocked(std::string_view pool, std::string_view pod) {
  return pods_[{std::string(pool), std::string(pod)}];
}

void Metrics::SetPodGauges(std::string_view pool, std::string_view pod, std::optional<double> queue,
                           std::optional<double> kv_cache) {
  std::lock_guard lock(pools_mu_);
  PodSeries& s = PodLocked(pool, pod);
  const std::map<std::string, std::string> labels = {{"model_server_pod", SanitizeLabel(pod)},
                                                     {"name", SanitizeLabel(pool)}};
  SetOrRemove(*pod_queue_, s.queue, labels, queue);
  SetOrRemove(*pod_kv_, s.kv, labels, kv_cache);
  if (!s.queue && !s.kv && !s.scrape_errors) pods_.erase({std::string(pool), std::string(pod)});
}

void Metrics::IncPoolScrapeErrors(std::string_view pool, std::string_view pod) {
  std::lock_guard lock(pools_mu_);
  PodSeries& s = PodLocked(pool, pod);
  if (!s.scrape_errors) {
    s.scrape_errors = &scrape_errors_->Add(
        {{"model_server_pod", SanitizeLabel(pod)}, {"name", SanitizeLabel(pool)}});
  }
  s.scrape_errors->Increment();
}

void Metrics::RemovePoolScrapeErrors(std::string_view pool, std::string_view pod) {
  std::lock_guard lock(pools_mu_);
  auto it = pods_.find({std::string(pool), std::string(pod)});
  if (it == pods_.end() || !it->second.scrape_errors) return;
  scrape_errors_->Remove(it->second.scrape_errors);
  it->second.scrape_errors = nullptr;
  if (!it->second.queue && !it->second.kv) pods_.erase(it);
}

// ---------------------------------------------------------------------------------------------
// Self metrics

void Metrics::AddCaptureEvents(uint64_t events, uint64_t bytes) {
  capture_events_->Increment(double(events));
  capture_bytes_->Increment(double(bytes));
}

void Metrics::SetCaptureLostEventsTotal(uint64_t kernel_total) {
  std::lock_guard lock(self_mu_);
  uint64_t delta =
      kernel_total >= last_lost_total_ ? kernel_total - last_lost_total_ : kernel_total;
  last_lost_total_ = kernel_total;
  if (delta) capture_lost_->Increment(double(delta));
}

void Metrics::SetConnectionsTracked(int64_t connections) {
  connections_tracked_->Set(double(connections));
}

void Metrics::IncParseErrors(std::string_view reason) {
  std::lock_guard lock(self_mu_);
  auto it = parse_error_reasons_.find(reason);
  if (it == parse_error_reasons_.end()) {
    std::string r = parse_error_reasons_.size() < kMaxParseErrorReasons ? SanitizeLabel(reason)
                                                                        : std::string("other");
    it = parse_error_reasons_.find(r);
    if (it == parse_error_reasons_.end()) {
      it = parse_error_reasons_.emplace(r, &parse_errors_->Add({{"reason", r}})).first;
    }
  }
  it->second->Increment();
}

void Metrics::IncHttpExchangesIgnored() { exchanges_ignored_->Increment(); }

}  // namespace infertap
