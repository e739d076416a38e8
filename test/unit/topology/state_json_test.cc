// `/v1/state` and `/metrics` show the same numbers (agent/core/state_json.hpp): the pool part
// comes from the poller's snapshot of its last Tick and the in-flight part from Metrics::InFlight,
// the producers of the gauges themselves. Checked at every step of a pool's life, including the
// moment between a pod going stale and the next Tick (the state must not judge freshness on its
// own clock) and while requests are in flight.
#include "agent/core/state_json.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>

#include "agent/metrics/metrics.hpp"
#include "agent/poller/poller.hpp"
#include "test/unit/metrics/exposition_util.hpp"

namespace infertap {
namespace {

using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

poller::FetchResult Page(double queue, double running, double kv) {
  poller::FetchResult r;
  r.ok = true;
  r.http_status = 200;
  r.content_type = "text/plain; version=0.0.4";
  std::ostringstream s;
  s << "vllm:num_requests_waiting{engine=\"0\"} " << queue << "\n"
    << "vllm:num_requests_running{engine=\"0\"} " << running << "\n"
    << "vllm:kv_cache_usage_perc{engine=\"0\"} " << kv << "\n";
  r.body = s.str();
  return r;
}

topology::Topology OnePool() {
  topology::Topology t;
  topology::TopologyPool p;
  p.ns = "ns";
  p.name = p.label = "p";
  t.pools.push_back(p);
  return t;
}

// Every pool number of the state against the exposition: ready pods, each average (present in
// both or in neither), and per pod `fresh` against the existence and value of its series.
void ExpectAgree(const nlohmann::ordered_json& pools, const std::string& exposition) {
  const auto f = testutil::ParseOrDie(exposition);
  ASSERT_TRUE(pools.is_array());
  for (const auto& jp : pools) {
    const std::string name = jp["name"];
    SCOPED_TRACE("pool " + name);
    const auto ready = testutil::Value(f, "inference_pool_ready_pods", {{"name", name}});
    EXPECT_EQ(ready.value_or(0), jp["ready_pods"].get<double>());
    for (const char* avg :
         {"average_queue_size", "average_running_requests", "average_kv_cache_utilization"}) {
      const auto v = testutil::Value(f, std::string("inference_pool_") + avg, {{"name", name}});
      ASSERT_EQ(v.has_value(), jp.contains(avg)) << avg;
      if (v) {
        EXPECT_DOUBLE_EQ(*v, jp[avg].get<double>()) << avg;
      }
    }
    for (const auto& pod : jp["pods"]) {
      const std::string pn = pod["name"];
      SCOPED_TRACE("pod " + pn);
      const auto q = testutil::Value(f, "inference_pool_per_pod_queue_size",
                                     {{"model_server_pod", pn}, {"name", name}});
      ASSERT_EQ(q.has_value(), pod["fresh"].get<bool>());
      if (q) {
        EXPECT_EQ(*q, pod["queue"].get<double>());
      }
    }
  }
}

TEST(StateAgreesWithMetrics, PoolGaugesAndFreshnessAtEveryStep) {
  Metrics metrics;
  TimePoint now = TimePoint{} + std::chrono::hours(1);
  poller::PollerOptions opts;
  opts.staleness = milliseconds(2000);
  poller::PoolPoller poller(
      metrics, [&now] { return now; }, opts);
  const topology::Topology topo = OnePool();
  poller.SetTargets({{.pool = "p", .pod = "a", .address = "10.0.0.1:8000"},
                     {.pool = "p", .pod = "b", .address = "10.0.0.2:8000"}});

  poller.OnScrapeResult("p", "a", now, Page(1, 4, 0.5));
  poller.OnScrapeResult("p", "b", now, Page(2, 5, 0.25));
  poller.Tick(now);
  auto pools = PoolsStateJson(topo, poller.Snapshot());
  ExpectAgree(pools, metrics.Serialize());
  EXPECT_EQ(pools[0]["ready_pods"], 2);
  EXPECT_EQ(pools[0]["average_queue_size"], 1.5);

  // a goes stale by the clock, but no Tick has run: the gauges still show it, so must the state.
  now += milliseconds(1500);
  poller.OnScrapeResult("p", "b", now, Page(6, 5, 0.25));  // b refreshed, a not
  poller.Tick(now);
  now += milliseconds(700);  // a: 2.2 s old, past the staleness
  pools = PoolsStateJson(topo, poller.Snapshot());
  ExpectAgree(pools, metrics.Serialize());
  EXPECT_EQ(pools[0]["ready_pods"], 2);
  EXPECT_EQ(pools[0]["pods"][0]["fresh"], true);

  // The Tick drops a from both at once.
  poller.Tick(now);
  pools = PoolsStateJson(topo, poller.Snapshot());
  ExpectAgree(pools, metrics.Serialize());
  EXPECT_EQ(pools[0]["ready_pods"], 1);
  EXPECT_EQ(pools[0]["pods"][0]["fresh"], false);
  EXPECT_EQ(pools[0]["average_queue_size"], 6.0);

  // No fresh pod: averages gone from both.
  now += milliseconds(2500);
  poller.Tick(now);
  pools = PoolsStateJson(topo, poller.Snapshot());
  ExpectAgree(pools, metrics.Serialize());
  EXPECT_EQ(pools[0]["ready_pods"], 0);
  EXPECT_FALSE(pools[0].contains("average_queue_size"));
}

RequestRecord Request(const std::string& pool, const std::string& model, const std::string& target,
                      uint64_t start_ns) {
  RequestRecord r;
  r.pool = pool;
  r.model_name = model;
  r.target_model_name = target;
  r.start_ns = start_ns;
  r.end_ns = start_ns + 1000;
  r.request_complete = true;
  r.counted_in_flight = true;
  return r;
}

TEST(StateAgreesWithMetrics, InFlightIsTheCountBehindRunningRequests) {
  Metrics metrics;
  auto running = [&](const std::string& model) {
    return testutil::Value(testutil::ParseOrDie(metrics.Serialize()),
                           "inference_model_running_requests", {{"model_name", model}});
  };
  auto state = [&] {
    std::map<std::string, int64_t> per_model;  // what the gauge sums
    for (const auto& m : InFlightStateJson(metrics.InFlight()))
      per_model[m["model_name"]] += m["in_flight"].get<int64_t>();
    return per_model;
  };
  const RequestRecord r1 = Request("p", "m", "t1", 1000);
  const RequestRecord r2 = Request("q", "m", "t2", 2000);
  const RequestRecord r3 = Request("p", "m", "t1", 3000);
  metrics.OnRequestReceived(r1);
  metrics.OnRequestReceived(r2);
  metrics.OnRequestReceived(r3);
  auto j = InFlightStateJson(metrics.InFlight());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["pool"], "p");
  EXPECT_EQ(j[0]["in_flight"], 2);
  EXPECT_EQ(j[1]["pool"], "q");
  EXPECT_EQ(running("m"), 3.0);
  EXPECT_EQ(state()["m"], 3);

  RequestRecord done = r1;
  done.status = 200;
  done.response_complete = true;
  metrics.OnRecord(done);
  EXPECT_EQ(running("m"), 2.0);
  EXPECT_EQ(state()["m"], 2);
  metrics.OnRecord(r2);
  metrics.OnRecord(r3);
  EXPECT_EQ(running("m"), 0.0);
  EXPECT_TRUE(metrics.InFlight().empty());
}

}  // namespace
}  // namespace infertap
