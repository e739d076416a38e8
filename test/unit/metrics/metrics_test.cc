// Recording rules of the record path, cardinality folding, pool series removal, self metrics.
#include "test/common/require.hpp"
#include "agent/metrics/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "test/unit/metrics/exposition_util.hpp"

namespace infertap {
namespace {

using testutil::ParseOrDie;
using testutil::SeriesCount;
using testutil::Value;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kT0 = 5'000'000'000'000;

RequestRecord Record(const char* model, const char* target) {
  RequestRecord r;
  r.model_name = model;
  r.target_model_name = target;
  r.start_ns = kT0;
  r.end_ns = kT0 + 2000 * kMs;
  r.status = 200;
  r.request_bytes = 300;
  r.response_bytes = 4000;
  r.request_complete = true;
  r.response_complete = true;
  r.counted_in_flight = true;  // the live path: OnRequestReceived, then OnRecord
  return r;
}

const promtext::Labels kMT = {{"model_name", "m"}, {"target_model_name", "t"}};

TEST(MetricsRecordPath, StreamingSuccessObservesEverything) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.stream = true;
  r.first_token_ns = kT0 + 500 * kMs;
  r.input_tokens = 20;
  r.output_tokens = 7;
  r.cached_tokens = 0;

  m.OnRequestReceived(r);
  auto mid = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(mid, "inference_model_running_requests", {{"model_name", "m"}}), 1.0);
  EXPECT_EQ(Value(mid, "inference_model_request_total", kMT), 1.0);
  EXPECT_EQ(Value(mid, "inference_model_request_sizes_sum", kMT), 300.0);
  // Nothing about the response yet.
  EXPECT_EQ(SeriesCount(mid, "inference_model_request_duration_seconds"), 0u);

  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_running_requests", {{"model_name", "m"}}), 0.0);
  EXPECT_EQ(Value(f, "inference_model_request_total", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_request_duration_seconds_sum", kMT), 2.0);
  EXPECT_EQ(Value(f, "inference_model_response_sizes_sum", kMT), 4000.0);
  EXPECT_EQ(Value(f, "inference_model_input_tokens_sum", kMT), 20.0);
  EXPECT_EQ(Value(f, "inference_model_output_tokens_sum", kMT), 7.0);
  EXPECT_DOUBLE_EQ(*Value(f, "inference_model_normalized_time_per_output_token_seconds_sum", kMT),
                   2.0 / 7);
  EXPECT_EQ(Value(f, "inference_model_request_ttft_seconds_sum", kMT), 0.5);
  EXPECT_DOUBLE_EQ(*Value(f, "inference_model_request_tpot_seconds_sum", kMT), 1.5 / 6);
  // Cached tokens reported as 0 are a real observation (bucket le=1).
  auto bucket = kMT;
  bucket.emplace_back("le", "1");
  EXPECT_EQ(Value(f, "inference_model_prompt_cached_tokens_bucket", bucket), 1.0);
  EXPECT_EQ(SeriesCount(f, "inference_model_request_error_total"), 0u);
}

TEST(MetricsRecordPath, NonStreamingWithoutUsageSkipsTokenAndStreamHistograms) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.output_tokens = 0;
  m.OnRequestReceived(r);
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_duration_seconds_count", kMT), 1.0);
  for (const char* name :
       {"inference_model_input_tokens", "inference_model_output_tokens",
        "inference_model_normalized_time_per_output_token_seconds",
        "inference_model_request_ttft_seconds", "inference_model_request_tpot_seconds",
        "inference_model_prompt_cached_tokens"}) {
    EXPECT_EQ(SeriesCount(f, name), 0u) << name;
  }
}

TEST(MetricsRecordPath, HttpErrorCountsRequestErrorAndResponse) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.status = 429;
  r.error = ErrorCode::kResourceExhausted;
  r.response_bytes = 0;
  m.OnRequestReceived(r);
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_total", kMT), 1.0);
  EXPECT_EQ(
      Value(f, "inference_model_request_error_total",
            {{"error_code", "ResourceExhausted"}, {"model_name", "m"}, {"target_model_name", "t"}}),
      1.0);
  EXPECT_EQ(Value(f, "inference_model_response_sizes_count", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_response_sizes_sum", kMT), 0.0);
}

TEST(MetricsRecordPath, CutOffResponseIsIncompleteAndStillTimed) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.response_complete = false;
  r.error = ErrorCode::kIncomplete;
  m.OnRequestReceived(r);
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_error_total",
                  {{"error_code", "Incomplete"}, {"model_name", "m"}, {"target_model_name", "t"}}),
            1.0);
  EXPECT_EQ(Value(f, "inference_model_request_duration_seconds_count", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_running_requests", {{"model_name", "m"}}), 0.0);
}

TEST(MetricsRecordPath, RequestCutBeforeServerHadItIsNotARequest) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.request_complete = false;
  r.response_complete = false;
  r.counted_in_flight = false;
  r.status = 0;
  r.error = ErrorCode::kIncomplete;
  m.OnRecord(r);  // no OnRequestReceived: the request never completed
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(SeriesCount(f, "inference_model_request_total"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_model_request_error_total"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_model_running_requests"), 0u);
  EXPECT_EQ(Value(f, "infertap_requests_incomplete_total"), 1.0);
}

TEST(MetricsRecordPath, EarlyServerAnswerCountsTheRequestLate) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.request_complete = false;  // e.g. 413 sent before the body finished
  r.counted_in_flight = false;
  r.status = 413;
  r.error = ErrorCode::kBadRequest;
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_total", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_request_sizes_count", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_request_error_total",
                  {{"error_code", "BadRequest"}, {"model_name", "m"}, {"target_model_name", "t"}}),
            1.0);
  EXPECT_EQ(SeriesCount(f, "inference_model_running_requests"), 0u);
  EXPECT_EQ(Value(f, "infertap_requests_incomplete_total"), 0.0);
}

// A request without `model` whose target only the end of the exchange revealed (non-streaming
// response, or an early response): OnRecord counts it under the final pair and running_requests
// never sees it, so no series appears for a provisional empty model.
TEST(MetricsRecordPath, PairKnownOnlyAtTheEndIsCountedByOnRecordWithoutRunning) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.counted_in_flight = false;
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_total", kMT), 1.0);
  EXPECT_EQ(Value(f, "inference_model_request_sizes_sum", kMT), 300.0);
  EXPECT_EQ(SeriesCount(f, "inference_model_request_total"), 1u);
  EXPECT_EQ(SeriesCount(f, "inference_model_running_requests"), 0u);
}

TEST(MetricsRecordPath, ReversedTimestampsAreNotObserved) {
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.end_ns = r.start_ns - 1;
  r.output_tokens = 5;
  m.OnRequestReceived(r);
  m.OnRecord(r);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(SeriesCount(f, "inference_model_request_duration_seconds"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_model_normalized_time_per_output_token_seconds"), 0u);
  EXPECT_EQ(Value(f, "inference_model_output_tokens_count", kMT), 1.0);
}

TEST(MetricsCardinality, PairsBeyondCapFoldIntoOther) {
  MetricsOptions opts;
  opts.max_models = 2;
  Metrics m(opts);
  for (auto [model, target] : {std::pair{"a", "ta"}, {"b", "tb"}, {"c", "tc"}, {"d", "td"}}) {
    RequestRecord r = Record(model, target);
    m.OnRequestReceived(r);
    if (std::string(model) != "d") m.OnRecord(r);  // d stays in flight
  }
  EXPECT_EQ(m.TrackedModelPairs(), 2u);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(
      Value(f, "inference_model_request_total", {{"model_name", "a"}, {"target_model_name", "ta"}}),
      1.0);
  EXPECT_FALSE(Value(f, "inference_model_request_total",
                     {{"model_name", "c"}, {"target_model_name", "tc"}}));
  const promtext::Labels other = {{"model_name", "__other__"}, {"target_model_name", "__other__"}};
  EXPECT_EQ(Value(f, "inference_model_request_total", other), 2.0);
  EXPECT_EQ(Value(f, "inference_model_running_requests", {{"model_name", "__other__"}}), 1.0);
  EXPECT_EQ(Value(f, "infertap_model_labels_folded_total"), 2.0);
  EXPECT_EQ(SeriesCount(f, "inference_model_request_total"), 3u);
}

TEST(MetricsLabels, InvalidUtf8AndHugeNamesStayScrapable) {
  Metrics m;
  std::string bad =
      "mod\xff\xfe"
      "el";
  std::string huge(10000, 'x');
  m.RecordRequestCounter(bad, huge);
  m.RecordRequestCounter("quote\"and\\back\nslash", "t");
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_model_request_total",
                  {{"model_name",
                    "mod\xEF\xBF\xBD\xEF\xBF\xBD"
                    "el"},
                   {"target_model_name", std::string(256, 'x')}}),
            1.0);
  EXPECT_EQ(Value(f, "inference_model_request_total",
                  {{"model_name", "quote\"and\\back\nslash"}, {"target_model_name", "t"}}),
            1.0);
}

TEST(MetricsPool, AveragesAreRemovedNotFrozen) {
  Metrics m;
  m.SetPoolGauges("p", {.ready_pods = 2,
                        .average_kv_cache_utilization = 0.5,
                        .average_queue_size = 1.5,
                        .average_running_requests = 3});
  m.SetPodGauges("p", "pod-a", 1, 0.25);
  m.SetPodGauges("p", "pod-b", 2, std::nullopt);
  m.IncPoolScrapeErrors("p", "pod-c");
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 2.0);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 1.5);
  EXPECT_EQ(Value(f, "inference_pool_average_running_requests", {{"name", "p"}}), 3.0);
  EXPECT_EQ(Value(f, "inference_pool_per_pod_kv_cache_utilization",
                  {{"model_server_pod", "pod-a"}, {"name", "p"}}),
            0.25);
  EXPECT_EQ(SeriesCount(f, "inference_pool_per_pod_kv_cache_utilization"), 1u);
  EXPECT_EQ(
      Value(f, "infertap_pool_scrape_errors_total", {{"model_server_pod", "pod-c"}, {"name", "p"}}),
      1.0);

  m.SetPoolGauges("p", {.ready_pods = 0});
  m.SetPodGauges("p", "pod-a", std::nullopt, std::nullopt);
  m.RemovePoolScrapeErrors("p", "pod-c");
  f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 0.0);
  EXPECT_EQ(SeriesCount(f, "inference_pool_average_queue_size"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_pool_average_kv_cache_utilization"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_pool_average_running_requests"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_pool_per_pod_queue_size"), 1u);  // pod-b still there
  EXPECT_EQ(SeriesCount(f, "infertap_pool_scrape_errors_total"), 0u);

  m.RemovePool("p");
  f = ParseOrDie(m.Serialize());
  EXPECT_EQ(SeriesCount(f, "inference_pool_ready_pods"), 0u);
}

TEST(MetricsSelf, CountersAndAbsoluteLostEvents) {
  MetricsOptions opts;
  opts.version = "1.2.3";
  opts.revision = "abc";
  Metrics m(opts);
  m.AddCaptureEvents(10, 4096);
  m.AddCaptureEvents(1, 1);
  m.SetCaptureLostEventsTotal(5);
  m.SetCaptureLostEventsTotal(8);
  m.SetCaptureLostEventsTotal(8);
  m.SetCaptureLostEventsTotal(3);  // kernel side restarted from zero
  m.SetConnectionsTracked(42);
  m.IncParseErrors("invalid_json");
  m.IncParseErrors("invalid_json");
  m.IncHttpExchangesIgnored();
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "infertap_build_info", {{"revision", "abc"}, {"version", "1.2.3"}}), 1.0);
  EXPECT_EQ(Value(f, "infertap_capture_events_total"), 11.0);
  EXPECT_EQ(Value(f, "infertap_capture_bytes_total"), 4097.0);
  EXPECT_EQ(Value(f, "infertap_capture_lost_events_total"), 11.0);
  EXPECT_EQ(Value(f, "infertap_connections_tracked"), 42.0);
  EXPECT_EQ(Value(f, "infertap_parse_errors_total", {{"reason", "invalid_json"}}), 2.0);
  EXPECT_EQ(Value(f, "infertap_http_exchanges_ignored_total"), 1.0);
}

TEST(MetricsOptionsTest, PrefixIsValidated) {
  EXPECT_TRUE(Metrics::IsValidMetricPrefix("inference_objective"));
  EXPECT_FALSE(Metrics::IsValidMetricPrefix("foo"));
  MetricsOptions opts;
  opts.metric_prefix = "foo";
  EXPECT_THROW(Metrics{opts}, std::invalid_argument);
}

TEST(MetricsOptionsTest, ObjectivePrefixRenamesModelFamilyOnly) {
  MetricsOptions opts;
  opts.metric_prefix = "inference_objective";
  Metrics m(opts);
  m.RecordRequestCounter("m", "t");
  m.RecordPoolAvgQueueSize("p", 1);
  auto f = ParseOrDie(m.Serialize());
  EXPECT_EQ(Value(f, "inference_objective_request_total", kMT), 1.0);
  EXPECT_FALSE(Value(f, "inference_model_request_total", kMT));
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 1.0);
}

// promtool is the reference checker of exposition hygiene; run it when the machine has it.
TEST(MetricsExposition, PromtoolAcceptsFullExposition) {
  INFERTAP_NEED_TOOL("promtool");
  Metrics m;
  RequestRecord r = Record("m", "t");
  r.first_token_ns = kT0 + kMs;
  r.input_tokens = r.output_tokens = r.cached_tokens = 3;
  r.error = ErrorCode::kModelServerError;
  m.OnRequestReceived(r);
  m.OnRecord(r);
  m.SetPoolGauges("p", {.ready_pods = 1, .average_queue_size = 1});
  m.SetPodGauges("p", "pod", 1, 0.5);
  m.IncPoolScrapeErrors("p", "pod2");
  m.IncParseErrors("x");
  const std::string path = testing::TempDir() + "/infertap_exposition.txt";
  {
    std::ofstream out(path);
    out << m.Serialize();
  }
  EXPECT_EQ(std::system(("promtool check metrics < " + path + " >/dev/null").c_str()), 0);
}

}  // namespace
}  // namespace infertap
