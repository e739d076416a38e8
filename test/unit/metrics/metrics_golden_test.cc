// The upstream EPP's own expected outputs (test/fixtures/gie-golden/) for the
// docs/metrics.md#seed-metrics inputs, produced here through the real registry and serializer, read
// back with our parser and compared sample by sample. Expected values come only from the golden
// files.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "agent/metrics/metrics.hpp"
#include "test/unit/metrics/exposition_util.hpp"

namespace infertap {
namespace {

using testutil::ParseOrDie;
using testutil::ReadFile;
using testutil::SameFamily;

constexpr uint64_t kMs = 1'000'000;  // ns per ms
constexpr uint64_t kT0 = 1'000'000'000'000;

struct Golden {
  const char* file;
  std::function<void(Metrics&)> feed;
};

void FeedRequestTotal(Metrics& m) {
  m.RecordRequestCounter("m10", "t10");
  m.RecordRequestCounter("m10", "t10");
  m.RecordRequestCounter("m10", "t11");
  m.RecordRequestCounter("m20", "t20");
}

void FeedRequestSizes(Metrics& m) {
  m.RecordRequestSizes("m10", "t10", 1200);
  m.RecordRequestSizes("m10", "t10", 500);
  m.RecordRequestSizes("m10", "t11", 2480);
  m.RecordRequestSizes("m20", "t20", 80);
}

void FeedErrors(Metrics& m) {
  m.RecordRequestErrCounter("m10", "t10", "Internal");
  m.RecordRequestErrCounter("m10", "t10", "Internal");
  m.RecordRequestErrCounter("m10", "t11", "ModelServerError");
  m.RecordRequestErrCounter("m20", "t20", "InferencePoolResourceExhausted");
}

void FeedDurations(Metrics& m) {
  EXPECT_TRUE(m.RecordRequestLatencies("m10", "t10", kT0, kT0 + 10 * kMs));
  EXPECT_TRUE(m.RecordRequestLatencies("m10", "t10", kT0, kT0 + 1600 * kMs));
  EXPECT_TRUE(m.RecordRequestLatencies("m10", "t11", kT0, kT0 + 60 * kMs));
  EXPECT_TRUE(m.RecordRequestLatencies("m20", "t20", kT0, kT0 + 120 * kMs));
  EXPECT_FALSE(m.RecordRequestLatencies("m10", "t10", kT0 + 1000 * kMs, kT0));
}

void FeedResponseSizes(Metrics& m) {
  m.RecordResponseSizes("m10", "t10", 1200);
  m.RecordResponseSizes("m10", "t10", 500);
  m.RecordResponseSizes("m10", "t11", 2480);
  m.RecordResponseSizes("m20", "t20", 80);
}

void FeedInputTokens(Metrics& m) {
  m.RecordInputTokens("m10", "t10", 10);
  m.RecordInputTokens("m10", "t10", 20);
  m.RecordInputTokens("m10", "t11", 30);
  m.RecordInputTokens("m20", "t20", 40);
}

void FeedOutputTokens(Metrics& m) {
  m.RecordOutputTokens("m10", "t10", 100);
  m.RecordOutputTokens("m10", "t10", 200);
  m.RecordOutputTokens("m10", "t11", 300);
  m.RecordOutputTokens("m20", "t20", 400);
}

void FeedNormalizedTpot(Metrics& m) {
  EXPECT_TRUE(m.RecordNormalizedTimePerOutputToken("m10", "t10", kT0, kT0 + 1000 * kMs, 100));
  EXPECT_TRUE(m.RecordNormalizedTimePerOutputToken("m10", "t10", kT0, kT0 + 1600 * kMs, 80));
  EXPECT_TRUE(m.RecordNormalizedTimePerOutputToken("m10", "t11", kT0, kT0 + 6000 * kMs, 300));
  EXPECT_TRUE(m.RecordNormalizedTimePerOutputToken("m20", "t20", kT0, kT0 + 2400 * kMs, 400));
  EXPECT_FALSE(m.RecordNormalizedTimePerOutputToken("m10", "t10", kT0, kT0 + 1000 * kMs, 0));
}

void FeedRunning(Metrics& m) {
  m.IncRunningRequests("m1");
  m.IncRunningRequests("m1");
  m.DecRunningRequests("m1");
  m.IncRunningRequests("m2");
}

void FeedKv(Metrics& m) { m.RecordPoolAvgKVCache("p1", 0.3); }
void FeedQueue(Metrics& m) { m.RecordPoolAvgQueueSize("p1", 0.4); }

const Golden kGoldens[] = {
    {"request_total_metric", FeedRequestTotal},
    {"request_sizes_metric", FeedRequestSizes},
    {"request_error_total_metric", FeedErrors},
    {"request_duration_seconds_metric", FeedDurations},
    {"response_sizes_metric", FeedResponseSizes},
    {"input_tokens_metric", FeedInputTokens},
    {"output_tokens_metric", FeedOutputTokens},
    {"normalized_time_per_output_token_seconds_metric", FeedNormalizedTpot},
    {"running_requests_metrics", FeedRunning},
    {"kv_cache_avg_metrics", FeedKv},
    {"queue_avg_size_metrics", FeedQueue},
};

// The golden family, renamed for --metric-prefix=inference_objective (pool names stay).
promtext::Family ExpectedFamily(const std::string& file, const std::string& prefix) {
  auto families = ParseOrDie(ReadFile(std::string(INFERTAP_FIXTURES_DIR) + "/gie-golden/" + file));
  EXPECT_EQ(families.size(), 1u) << file;
  promtext::Family f = families.at(0);
  const std::string from = "inference_model";
  auto rename = [&](std::string& n) {
    if (n.rfind(from, 0) == 0) n = prefix + n.substr(from.size());
  };
  rename(f.name);
  for (auto& s : f.samples) rename(s.name);
  return f;
}

class GoldenTest : public ::testing::TestWithParam<std::tuple<size_t, const char*>> {};

TEST_P(GoldenTest, MatchesUpstreamOutput) {
  const Golden& g = kGoldens[std::get<0>(GetParam())];
  const std::string prefix = std::get<1>(GetParam());
  MetricsOptions opts;
  opts.metric_prefix = prefix;
  Metrics metrics(opts);
  g.feed(metrics);

  promtext::Family want = ExpectedFamily(g.file, prefix);
  ASSERT_FALSE(want.samples.empty());
  auto got = ParseOrDie(metrics.Serialize());
  const promtext::Family* fam = promtext::FindFamily(got, want.name);
  ASSERT_NE(fam, nullptr) << want.name << " not in output:\n" << metrics.Serialize();
  EXPECT_TRUE(SameFamily(want, *fam)) << g.file;
}

INSTANTIATE_TEST_SUITE_P(Seed, GoldenTest,
                         ::testing::Combine(::testing::Range<size_t>(0, std::size(kGoldens)),
                                            ::testing::Values("inference_model",
                                                              "inference_objective")),
                         [](const auto& info) {
                           return std::string(kGoldens[std::get<0>(info.param)].file) + "_" +
                                  std::get<1>(info.param);
                         });

// Guards the comparison itself: a golden test that cannot fail would prove nothing.
TEST(GoldenCompare, DetectsValueLabelSampleAndHelpDifferences) {
  const promtext::Family want =
      ExpectedFamily("request_duration_seconds_metric", "inference_model");
  EXPECT_TRUE(SameFamily(want, want));
  promtext::Family v = want;
  v.samples[3].value += 1;
  EXPECT_FALSE(SameFamily(want, v));
  promtext::Family l = want;
  l.samples[3].labels[0].second = "0.0051";  // le is the first label after sorting
  EXPECT_FALSE(SameFamily(want, l));
  promtext::Family d = want;
  d.samples.pop_back();
  EXPECT_FALSE(SameFamily(want, d));
  promtext::Family h = want;
  h.help += ".";
  EXPECT_FALSE(SameFamily(want, h));
  // The same run with one observation moved to another bucket must fail against the golden.
  Metrics metrics;
  metrics.RecordRequestLatencies("m10", "t10", kT0, kT0 + 10 * kMs);
  metrics.RecordRequestLatencies("m10", "t10", kT0, kT0 + 1700 * kMs);  // 1600 in the golden
  metrics.RecordRequestLatencies("m10", "t11", kT0, kT0 + 60 * kMs);
  metrics.RecordRequestLatencies("m20", "t20", kT0, kT0 + 120 * kMs);
  auto got = ParseOrDie(metrics.Serialize());
  EXPECT_FALSE(SameFamily(want, *promtext::FindFamily(got, want.name)));
}

// The same seed inputs through the record path the pipeline uses: one record per (request size,
// response size, tokens) tuple of docs/metrics.md#seed-metrics must yield the golden
// request/size/token families.
TEST(GoldenRecordPath, RecordsYieldGoldenFamilies) {
  struct In {
    const char* model;
    const char* target;
    uint64_t bytes, in, out;
  };
  const In inputs[] = {{"m10", "t10", 1200, 10, 100},
                       {"m10", "t10", 500, 20, 200},
                       {"m10", "t11", 2480, 30, 300},
                       {"m20", "t20", 80, 40, 400}};
  Metrics metrics;
  for (const In& in : inputs) {
    RequestRecord r;
    r.model_name = in.model;
    r.target_model_name = in.target;
    r.start_ns = kT0;
    r.end_ns = kT0 + 500 * kMs;
    r.status = 200;
    r.request_bytes = in.bytes;
    r.response_bytes = in.bytes;
    r.input_tokens = in.in;
    r.output_tokens = in.out;
    r.request_complete = true;
    r.response_complete = true;
    r.counted_in_flight = true;
    metrics.OnRequestReceived(r);
    metrics.OnRecord(r);
  }
  auto got = ParseOrDie(metrics.Serialize());
  for (const char* file : {"request_total_metric", "request_sizes_metric", "response_sizes_metric",
                           "input_tokens_metric", "output_tokens_metric"}) {
    promtext::Family want = ExpectedFamily(file, "inference_model");
    const promtext::Family* fam = promtext::FindFamily(got, want.name);
    ASSERT_NE(fam, nullptr) << want.name;
    EXPECT_TRUE(SameFamily(want, *fam)) << file;
  }
}

}  // namespace
}  // namespace infertap
