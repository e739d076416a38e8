// Pool poller: engine series on real and synthetic pages, the per-pool rules with a fake clock,
// and the real fetcher against loopback servers that answer, answer garbage, or hang.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "agent/metrics/metrics.hpp"
#include "agent/poller/engines.hpp"
#include "agent/poller/poller.hpp"
#include "test/unit/metrics/exposition_util.hpp"
#include "test/unit/metrics/test_http_server.hpp"

namespace infertap::poller {
namespace {

using std::chrono::milliseconds;
using testutil::ParseOrDie;
using testutil::SeriesCount;
using testutil::Value;
using TimePoint = std::chrono::steady_clock::time_point;

std::string WireFixture(const std::string& name) {
  return testutil::ReadFile(std::string(INFERTAP_FIXTURES_DIR) + "/wire/" + name);
}

// The Triton README sample is markdown with a ``` fence inside; a real server sends no fence.
std::string TritonPage() {
  std::istringstream in(WireFixture("triton_trtllm_metrics_readme_sample.txt"));
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) != 0) out += line + "\n";
  }
  return out;
}

ExtractResult Extract(const std::string& page, Engine engine = Engine::kAuto) {
  promtext::Result r = promtext::Parse(page, promtext::Format::kText004);
  EXPECT_TRUE(r.ok()) << r.error.message;
  return ExtractPodStats(r.families, engine);
}

TEST(PoolEngines, VllmV1Fixture) {
  ExtractResult r = Extract(WireFixture("vllm_metrics_v1_reconstructed.txt"));
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->engine, Engine::kVllm);
  EXPECT_EQ(r.stats->queue, 2.0);
  EXPECT_EQ(r.stats->running, 3.0);
  EXPECT_EQ(r.stats->kv_cache_utilization, 0.4375);
}

TEST(PoolEngines, TritonTrtllmFixture) {
  ExtractResult r = Extract(TritonPage());
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->engine, Engine::kTritonTrtllm);
  EXPECT_EQ(r.stats->queue, 1.0);    // request_type="waiting"
  EXPECT_EQ(r.stats->running, 1.0);  // request_type="scheduled", not "max"=512 or "active"=0
  EXPECT_EQ(r.stats->kv_cache_utilization, 0.4875);
}

TEST(PoolEngines, VllmV0FallsBackToGpuCacheUsage) {
  ExtractResult r = Extract(
      "# TYPE vllm:num_requests_waiting gauge\n"
      "vllm:num_requests_waiting{model_name=\"m\"} 4.0\n"
      "vllm:num_requests_running{model_name=\"m\"} 1.0\n"
      "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n");
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->kv_cache_utilization, 0.25);
}

TEST(PoolEngines, VllmDataParallelSumsQueueAndAveragesKv) {
  ExtractResult r = Extract(
      "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 2\n"
      "vllm:num_requests_waiting{engine=\"1\",model_name=\"m\"} 3\n"
      "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 4\n"
      "vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 6\n"
      "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.2\n"
      "vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.5\n"
      "vllm:gpu_cache_usage_perc{engine=\"1\",model_name=\"m\"} 0.9\n");
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->queue, 5.0);
  EXPECT_EQ(r.stats->running, 10.0);
  EXPECT_DOUBLE_EQ(*r.stats->kv_cache_utilization, 0.35);
}

struct EngineCase {
  const char* page;
  Engine engine;
  double queue, running;
  std::optional<double> kv;
};

class PoolEngineCases : public ::testing::TestWithParam<EngineCase> {};

TEST_P(PoolEngineCases, DetectsAndExtracts) {
  const EngineCase& c = GetParam();
  promtext::Result parsed = promtext::Parse(c.page, promtext::Format::kText004);
  ASSERT_TRUE(parsed.ok()) << parsed.error.message;
  EXPECT_EQ(DetectEngine(parsed.families), c.engine);
  ExtractResult r = ExtractPodStats(parsed.families, Engine::kAuto);
  ASSERT_TRUE(r.stats) << r.error;
  EXPECT_EQ(r.stats->engine, c.engine);
  EXPECT_EQ(r.stats->queue, c.queue);
  EXPECT_EQ(r.stats->running, c.running);
  EXPECT_EQ(r.stats->kv_cache_utilization, c.kv);
}

INSTANTIATE_TEST_SUITE_P(
    Engines, PoolEngineCases,
    ::testing::Values(
        EngineCase{"# HELP sglang:num_queue_reqs The number of requests in the waiting queue\n"
                   "# TYPE sglang:num_queue_reqs gauge\n"
                   "sglang:num_queue_reqs{model_name=\"q\"} 7.0\n"
                   "sglang:num_running_reqs{model_name=\"q\"} 9.0\n"
                   "sglang:token_usage{model_name=\"q\"} 0.61\n",
                   Engine::kSglang, 7, 9, 0.61},
        EngineCase{"# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n"
                   "# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 12\n",
                   Engine::kTgi, 3, 12, std::nullopt},
        EngineCase{"# HELP llamacpp:requests_processing Number of requests processing.\n"
                   "# TYPE llamacpp:requests_processing gauge\n"
                   "llamacpp:requests_processing 1\n"
                   "# TYPE llamacpp:requests_deferred gauge\n"
                   "llamacpp:requests_deferred 2\n"
                   "llamacpp:kv_cache_usage_ratio 0.125\n",
                   Engine::kLlamaCpp, 2, 1, 0.125},
        EngineCase{"llamacpp:requests_processing 0\nllamacpp:requests_deferred 0\n",
                   Engine::kLlamaCpp, 0, 0, std::nullopt},
        EngineCase{"trtllm_num_requests_waiting{model_name=\"x\",engine_type=\"trtllm\"} 5\n"
                   "trtllm_num_requests_running{model_name=\"x\",engine_type=\"trtllm\"} 8\n"
                   "trtllm_kv_cache_utilization{model_name=\"x\",engine_type=\"trtllm\"} 0.75\n",
                   Engine::kTrtllmServe, 5, 8, 0.75}));

TEST(PoolEngines, FailuresAreErrorsNotZeros) {
  EXPECT_FALSE(Extract("process_cpu_seconds_total 1\n").stats);
  EXPECT_EQ(DetectEngine(ParseOrDie("process_cpu_seconds_total 1\n")), Engine::kAuto);
  // Override to the wrong engine.
  ExtractResult wrong = Extract(WireFixture("vllm_metrics_v1_reconstructed.txt"), Engine::kSglang);
  EXPECT_FALSE(wrong.stats);
  EXPECT_NE(wrong.error.find("sglang:num_queue_reqs"), std::string::npos) << wrong.error;
  // Only one of the two series.
  EXPECT_FALSE(Extract("vllm:num_requests_waiting 1\n").stats);
  // NaN-only series are unusable; a NaN next to a real value is skipped.
  EXPECT_FALSE(Extract("tgi_queue_size NaN\ntgi_batch_current_size 1\n").stats);
  ExtractResult nan_kv = Extract(
      "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\n"
      "vllm:kv_cache_usage_perc{engine=\"0\"} NaN\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.5\n");
  ASSERT_TRUE(nan_kv.stats);
  EXPECT_EQ(nan_kv.stats->kv_cache_utilization, 0.5);
}

TEST(PoolEngines, Names) {
  EXPECT_EQ(ParseEngine("llama.cpp"), Engine::kLlamaCpp);
  EXPECT_EQ(ParseEngine("triton-trtllm"), Engine::kTritonTrtllm);
  EXPECT_EQ(ParseEngine("auto"), Engine::kAuto);
  EXPECT_EQ(ParseEngine("bogus"), std::nullopt);
  EXPECT_EQ(EngineName(Engine::kTrtllmServe), "trtllm-serve");
}

// ---------------------------------------------------------------------------------------------
// Poller rules with a fake clock and injected scrape results.

class FakeClock {
 public:
  TimePoint now() const { return now_; }
  void Advance(milliseconds d) { now_ += d; }
  Clock AsClock() {
    return [this] { return now_; };
  }

 private:
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
};

FetchResult Page(double queue, double running, std::optional<double> kv = std::nullopt) {
  FetchResult r;
  r.ok = true;
  r.http_status = 200;
  r.content_type = "text/plain; version=0.0.4";
  std::ostringstream s;
  s << "vllm:num_requests_waiting{engine=\"0\"} " << queue << "\n"
    << "vllm:num_requests_running{engine=\"0\"} " << running << "\n";
  if (kv) s << "vllm:kv_cache_usage_perc{engine=\"0\"} " << *kv << "\n";
  r.body = s.str();
  return r;
}

PoolTarget Target(const std::string& pool, const std::string& pod) {
  return {.pool = pool, .pod = pod, .address = "10.0.0.1:8000"};
}

class PollerRules : public ::testing::Test {
 protected:
  std::vector<promtext::Family> Scrape() { return ParseOrDie(metrics.Serialize()); }

  Metrics metrics;
  FakeClock clock;
  PoolPoller poller{metrics, clock.AsClock()};  // default staleness 2 s
};

TEST_F(PollerRules, AveragesUseRealDivision) {
  poller.SetTargets({Target("p", "a"), Target("p", "b")});
  poller.OnScrapeResult("p", "a", clock.now(), Page(1, 4, 0.5));
  poller.OnScrapeResult("p", "b", clock.now(), Page(2, 5, 0.25));
  poller.Tick(clock.now());
  auto f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 2.0);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 1.5);
  EXPECT_EQ(Value(f, "inference_pool_average_running_requests", {{"name", "p"}}), 4.5);
  EXPECT_EQ(Value(f, "inference_pool_average_kv_cache_utilization", {{"name", "p"}}), 0.375);
  EXPECT_EQ(
      Value(f, "inference_pool_per_pod_queue_size", {{"model_server_pod", "b"}, {"name", "p"}}),
      2.0);
  EXPECT_EQ(Value(f, "inference_pool_per_pod_kv_cache_utilization",
                  {{"model_server_pod", "a"}, {"name", "p"}}),
            0.5);
}

TEST_F(PollerRules, KvAverageOnlyOverPodsThatReportIt) {
  poller.SetTargets({Target("p", "a"), Target("p", "b")});
  poller.OnScrapeResult("p", "a", clock.now(), Page(1, 1, 0.8));
  poller.OnScrapeResult("p", "b", clock.now(), Page(3, 1));
  poller.Tick(clock.now());
  auto f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_average_kv_cache_utilization", {{"name", "p"}}), 0.8);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 2.0);
  EXPECT_EQ(SeriesCount(f, "inference_pool_per_pod_kv_cache_utilization"), 1u);
}

TEST_F(PollerRules, StalePodsDropOutAndAveragesAreRemoved) {
  poller.SetTargets({Target("p", "a"), Target("p", "b")});
  poller.OnScrapeResult("p", "a", clock.now(), Page(1, 1, 0.1));
  poller.OnScrapeResult("p", "b", clock.now(), Page(3, 3, 0.3));
  poller.Tick(clock.now());

  clock.Advance(milliseconds(1500));
  poller.OnScrapeResult("p", "b", clock.now(), Page(5, 5, 0.5));  // a is not refreshed
  poller.Tick(clock.now());
  EXPECT_EQ(Value(Scrape(), "inference_pool_ready_pods", {{"name", "p"}}), 2.0);  // a: 1.5 s old

  clock.Advance(milliseconds(600));  // a: 2.1 s old, b: 0.6 s
  poller.Tick(clock.now());
  auto f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 1.0);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 5.0);
  EXPECT_FALSE(
      Value(f, "inference_pool_per_pod_queue_size", {{"model_server_pod", "a"}, {"name", "p"}}));
  EXPECT_EQ(
      Value(f, "inference_pool_per_pod_queue_size", {{"model_server_pod", "b"}, {"name", "p"}}),
      5.0);

  // Failed scrapes do not refresh: b ages out too.
  poller.OnScrapeResult("p", "b", clock.now(), FetchResult{.error = "timeout"});
  clock.Advance(milliseconds(1500));
  poller.Tick(clock.now());
  f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 0.0);
  for (const char* name :
       {"inference_pool_average_queue_size", "inference_pool_average_kv_cache_utilization",
        "inference_pool_average_running_requests", "inference_pool_per_pod_queue_size",
        "inference_pool_per_pod_kv_cache_utilization"}) {
    EXPECT_EQ(SeriesCount(f, name), 0u) << name;
  }

  // A good scrape brings it back.
  poller.OnScrapeResult("p", "a", clock.now(), Page(7, 1));
  poller.Tick(clock.now());
  EXPECT_EQ(Value(Scrape(), "inference_pool_average_queue_size", {{"name", "p"}}), 7.0);
}

TEST_F(PollerRules, ScrapeErrorsAreCountedPerPod) {
  poller.SetTargets({Target("p", "a"), Target("p", "b")});
  poller.OnScrapeResult("p", "a", clock.now(),
                        FetchResult{.http_status = 500, .error = "HTTP 500"});
  FetchResult garbage{.ok = true, .http_status = 200, .body = "\x01\x02 not metrics {{{\n"};
  poller.OnScrapeResult("p", "b", clock.now(), garbage);
  poller.OnScrapeResult("p", "b", clock.now(), Page(1, 1));
  FetchResult other_server{.ok = true, .http_status = 200, .body = "go_goroutines 12\n"};
  poller.OnScrapeResult("p", "b", clock.now(), other_server);
  poller.Tick(clock.now());
  auto f = Scrape();
  EXPECT_EQ(
      Value(f, "infertap_pool_scrape_errors_total", {{"model_server_pod", "a"}, {"name", "p"}}),
      1.0);
  EXPECT_EQ(
      Value(f, "infertap_pool_scrape_errors_total", {{"model_server_pod", "b"}, {"name", "p"}}),
      2.0);
  // b's good scrape is still fresh despite the later failure.
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 1.0);
  auto pods = poller.Snapshot().pods;
  ASSERT_EQ(pods.size(), 2u);
  EXPECT_EQ(pods[0].last_error, "HTTP 500");
  EXPECT_NE(pods[1].last_error.find("no known engine"), std::string::npos) << pods[1].last_error;
  EXPECT_TRUE(pods[1].fresh);
  EXPECT_EQ(pods[1].scrape_errors, 2u);
}

TEST_F(PollerRules, RemovedPodsAndPoolsTakeTheirSeriesWithThem) {
  poller.SetTargets({Target("p", "a"), Target("p", "b"), Target("q", "c")});
  poller.OnScrapeResult("p", "a", clock.now(), Page(1, 1, 0.1));
  poller.OnScrapeResult("p", "b", clock.now(), Page(3, 1, 0.3));
  poller.OnScrapeResult("q", "c", clock.now(), Page(9, 1, 0.9));
  poller.OnScrapeResult("p", "b", clock.now(), FetchResult{.error = "x"});
  poller.Tick(clock.now());
  EXPECT_EQ(SeriesCount(Scrape(), "inference_pool_per_pod_queue_size"), 3u);

  poller.SetTargets({Target("p", "a")});
  auto f = Scrape();
  EXPECT_EQ(SeriesCount(f, "inference_pool_per_pod_queue_size"), 1u);
  EXPECT_EQ(SeriesCount(f, "infertap_pool_scrape_errors_total"), 0u);
  EXPECT_EQ(SeriesCount(f, "inference_pool_ready_pods"), 1u);  // q gone at once
  poller.Tick(clock.now());
  f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 1.0);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 1.0);
  // A result for a pod that left is ignored.
  poller.OnScrapeResult("q", "c", clock.now(), Page(9, 1));
  poller.Tick(clock.now());
  EXPECT_FALSE(Value(Scrape(), "inference_pool_ready_pods", {{"name", "q"}}));

  poller.SetTargets({});
  poller.Tick(clock.now());
  EXPECT_EQ(SeriesCount(Scrape(), "inference_pool_ready_pods"), 0u);
}

TEST_F(PollerRules, EngineOverrideAndOpenMetricsPages) {
  PoolTarget t = Target("p", "a");
  t.engine = Engine::kTgi;
  poller.SetTargets({t});
  poller.OnScrapeResult("p", "a", clock.now(), Page(1, 1));  // a vLLM page, but told TGI
  poller.Tick(clock.now());
  EXPECT_EQ(Value(Scrape(), "inference_pool_ready_pods", {{"name", "p"}}), 0.0);

  FetchResult om{.ok = true,
                 .http_status = 200,
                 .body =
                     "# TYPE tgi_queue_size gauge\ntgi_queue_size 4\n"
                     "# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 2\n# EOF\n",
                 .content_type = "application/openmetrics-text; version=1.0.0"};
  poller.OnScrapeResult("p", "a", clock.now(), om);
  poller.Tick(clock.now());
  auto f = Scrape();
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 4.0);
  EXPECT_EQ(SeriesCount(f, "inference_pool_average_kv_cache_utilization"), 0u);
}

// ---------------------------------------------------------------------------------------------
// The real fetcher and worker on loopback.

std::string Gzip(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(compressBound(in.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = uInt(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(PollerLoopback, BadPodsNeverDisturbTheGoodOne) {
  using testutil::TestHttpServer;
  // Good pod: the real vLLM fixture, gzip-encoded as a proxy might send it.
  TestHttpServer good(
      TestHttpServer::Mode::kRespond,
      TestHttpServer::Response(Gzip(WireFixture("vllm_metrics_v1_reconstructed.txt")),
                               "Content-Type: text/plain; version=0.0.4\r\n"
                               "Content-Encoding: gzip\r\n"));
  TestHttpServer garbage(TestHttpServer::Mode::kRespond,
                         TestHttpServer::Response("<html>definitely { not metrics\n"));
  TestHttpServer hang(TestHttpServer::Mode::kHang, "");
  TestHttpServer error(TestHttpServer::Mode::kRespond, TestHttpServer::Response("oops", "", 503));
  ASSERT_TRUE(good.ok() && garbage.ok() && hang.ok() && error.ok());

  Metrics metrics;
  PollerOptions opts;
  opts.poll_interval = milliseconds(100);
  opts.timeout = milliseconds(600);
  opts.staleness = milliseconds(400);
  PoolPoller poller(
      metrics, [] { return std::chrono::steady_clock::now(); }, opts);
  poller.SetTargets({{.pool = "p", .pod = "good", .address = good.address()},
                     {.pool = "p", .pod = "garbage", .address = garbage.address()},
                     {.pool = "p", .pod = "hang", .address = hang.address()},
                     {.pool = "p", .pod = "error", .address = error.address()},
                     // Nothing listens on port 1: connection refused.
                     {.pool = "p", .pod = "down", .address = "127.0.0.1:1"}});
  auto start = std::chrono::steady_clock::now();
  poller.Start();
  std::this_thread::sleep_for(milliseconds(1200));

  auto f = ParseOrDie(metrics.Serialize());
  EXPECT_EQ(Value(f, "inference_pool_ready_pods", {{"name", "p"}}), 1.0);
  EXPECT_EQ(Value(f, "inference_pool_average_queue_size", {{"name", "p"}}), 2.0);
  EXPECT_EQ(Value(f, "inference_pool_average_running_requests", {{"name", "p"}}), 3.0);
  EXPECT_EQ(Value(f, "inference_pool_average_kv_cache_utilization", {{"name", "p"}}), 0.4375);
  EXPECT_EQ(SeriesCount(f, "inference_pool_per_pod_queue_size"), 1u);
  for (const char* pod : {"garbage", "hang", "error", "down"}) {
    auto errors =
        Value(f, "infertap_pool_scrape_errors_total", {{"model_server_pod", pod}, {"name", "p"}});
    ASSERT_TRUE(errors) << pod;
    EXPECT_GE(*errors, std::string(pod) == "hang" ? 1.0 : 2.0) << pod;
  }
  EXPECT_FALSE(
      Value(f, "infertap_pool_scrape_errors_total", {{"model_server_pod", "good"}, {"name", "p"}}));
  // The hanging pod (600 ms timeouts) did not slow the good pod's 100 ms cadence: ~12 scrapes,
  // where waiting for the hang would allow at most 2.
  EXPECT_GE(good.requests(), 6) << "good pod scraped only " << good.requests() << " times";
  for (const auto& pod : poller.Snapshot().pods) {
    if (pod.target.pod == "hang") {
      EXPECT_NE(pod.last_error.find("timeout"), std::string::npos) << pod.last_error;
    } else if (pod.target.pod == "error") {
      EXPECT_EQ(pod.last_error, "HTTP 503");
    } else if (pod.target.pod == "good") {
      EXPECT_TRUE(pod.fresh);
    }
  }

  auto before_stop = std::chrono::steady_clock::now();
  poller.Stop();
  // Stop() cancels the hanging transfer instead of waiting out its 600 ms timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - before_stop, milliseconds(400));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(3000));
}

TEST(PollerLoopback, OversizedBodyIsAnError) {
  using testutil::TestHttpServer;
  std::string big = "vllm:num_requests_waiting 1\nvllm:num_requests_running 1\n" +
                    std::string(100000, '#') + "\n";
  TestHttpServer server(TestHttpServer::Mode::kRespond, TestHttpServer::Response(big));
  ASSERT_TRUE(server.ok());
  Metrics metrics;
  PollerOptions opts;
  opts.poll_interval = milliseconds(50);
  opts.max_body_bytes = 4096;
  PoolPoller poller(
      metrics, [] { return std::chrono::steady_clock::now(); }, opts);
  poller.SetTargets({{.pool = "p", .pod = "big", .address = server.address()}});
  poller.Start();
  std::vector<PodStatus> pods;
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(milliseconds(25));
    pods = poller.Snapshot().pods;
    if (!pods.empty() && pods[0].scrape_errors > 0) break;
  }
  poller.Stop();
  ASSERT_EQ(pods.size(), 1u);
  EXPECT_GT(pods[0].scrape_errors, 0u);
  EXPECT_NE(pods[0].last_error.find("larger than 4096"), std::string::npos) << pods[0].last_error;
  EXPECT_FALSE(pods[0].fresh);
}

}  // namespace
}  // namespace infertap::poller
