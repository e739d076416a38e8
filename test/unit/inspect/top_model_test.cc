#include "agent/cli/inspect/top_model.hpp"

#include <gtest/gtest.h>

namespace infertap::cli {
namespace {

TopRecord Rec(std::string pool, std::string model, double duration, std::optional<double> ttft = {},
              std::optional<int64_t> in = {}, std::optional<int64_t> out = {},
              std::string error = "") {
  TopRecord r;
  r.pool = std::move(pool);
  r.model_name = std::move(model);
  r.duration_s = duration;
  r.ttft_s = ttft;
  r.stream = ttft.has_value();
  r.input_tokens = in;
  r.output_tokens = out;
  r.error_code = std::move(error);
  r.status = r.error_code.empty() ? 200 : 503;
  return r;
}

TopModel Model(double window) { return TopModel(TopModel::Options{.window_s = window}); }

TEST(Percentile, NearestRank) {
  std::vector<double> v = {4, 1, 3, 2};
  EXPECT_EQ(Percentile(v, 0.5), 2);  // rank ceil(0.5·4) = 2
  EXPECT_EQ(Percentile(v, 0.99), 4);
  EXPECT_EQ(Percentile(v, 0.25), 1);
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  EXPECT_EQ(Percentile(hundred, 0.99), 99);
  EXPECT_EQ(Percentile(hundred, 0.5), 50);
  std::vector<double> one = {7};
  EXPECT_EQ(Percentile(one, 0.99), 7);
  std::vector<double> none;
  EXPECT_FALSE(Percentile(none, 0.5));
}

TEST(TopModel, NothingIsKnownBeforeTheStreamStarts) {
  TopModel m = Model(10);
  m.SetNow(5);
  EXPECT_FALSE(m.effective_window_s());
  TopRow t = m.Totals();
  EXPECT_FALSE(t.req_per_s);
  EXPECT_FALSE(t.error_ratio);
  EXPECT_FALSE(t.in_tok_per_s);
  EXPECT_TRUE(m.Rows().empty());
}

TEST(TopModel, RatesUseTheTimeSinceConnectUntilTheWindowIsFull) {
  TopModel m = Model(10);
  m.StartWindow(100);
  for (int i = 0; i < 4; ++i) m.AddRecord(Rec("p", "m", 1.0, {}, 10, 20), 100.5 + i * 0.25);
  m.SetNow(102);  // 2 s of stream: 4 records / 2 s, not / 10 s
  ASSERT_EQ(m.effective_window_s(), 2.0);
  std::vector<TopRow> rows = m.Rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_TRUE(rows[0].is_pool);
  EXPECT_EQ(rows[0].req_per_s, 2.0);
  EXPECT_EQ(rows[1].req_per_s, 2.0);
  EXPECT_EQ(rows[1].in_tok_per_s, 20.0);   // 40 tokens / 2 s
  EXPECT_EQ(rows[1].out_tok_per_s, 40.0);  // 80 tokens / 2 s

  m.SetNow(110);  // window full: all four are still inside (arrived after 100)
  EXPECT_EQ(m.effective_window_s(), 10.0);
  EXPECT_DOUBLE_EQ(*m.Totals().req_per_s, 0.4);
}

TEST(TopModel, SamplesLeaveTheSlidingWindow) {
  TopModel m = Model(10);
  m.StartWindow(0);
  m.AddRecord(Rec("p", "m", 1), 1);
  m.AddRecord(Rec("p", "m", 2), 5);
  m.AddRecord(Rec("p", "m", 3), 12);
  m.SetNow(14);  // window [4, 14]: the first record is gone
  EXPECT_EQ(m.samples(), 2u);
  TopRow t = m.Totals();
  EXPECT_EQ(t.records, 2);
  EXPECT_DOUBLE_EQ(*t.req_per_s, 0.2);
  EXPECT_EQ(t.p50_s, 2);
  m.SetNow(30);
  EXPECT_EQ(m.samples(), 0u);
  t = m.Totals();
  EXPECT_EQ(t.req_per_s, 0.0);  // known to be zero
  EXPECT_FALSE(t.error_ratio);  // undefined without records
  EXPECT_FALSE(t.p50_s);
  EXPECT_EQ(t.in_tok_per_s, 0.0);
}

TEST(TopModel, ErrorRatioPercentilesAndTtft) {
  TopModel m = Model(10);
  m.StartWindow(0);
  // Durations 1..10; two errors; TTFT only on the streaming ones (the first five).
  for (int i = 1; i <= 10; ++i) {
    std::optional<double> ttft;
    if (i <= 5) ttft = 0.01 * i;
    m.AddRecord(Rec("p", "m", i, ttft, {}, {}, i > 8 ? "ModelServerError" : ""), 1);
  }
  m.SetNow(5);
  TopRow row = m.Rows().at(1);
  EXPECT_EQ(row.model, "m");
  EXPECT_DOUBLE_EQ(*row.error_ratio, 0.2);
  EXPECT_EQ(row.p50_s, 5);
  EXPECT_EQ(row.p99_s, 10);
  EXPECT_DOUBLE_EQ(*row.ttft_p50_s, 0.03);
  // No record had usage: the token rates are unknown, not zero.
  EXPECT_FALSE(row.in_tok_per_s);
  EXPECT_FALSE(row.out_tok_per_s);
}

TEST(TopModel, TokensCountOnlyRecordsThatHaveThem) {
  TopModel m = Model(10);
  m.StartWindow(0);
  m.AddRecord(Rec("p", "m", 1, {}, 100, {}), 1);
  m.AddRecord(Rec("p", "m", 1, {}, {}, 50), 1);
  m.AddRecord(Rec("p", "m", 1), 1);
  m.SetNow(10);
  TopRow t = m.Totals();
  EXPECT_EQ(t.in_tok_per_s, 10.0);
  EXPECT_EQ(t.out_tok_per_s, 5.0);
}

TEST(TopModel, RowsJoinStateAndRecordsPerPoolAndModel) {
  TopModel m = Model(10);
  m.StartWindow(0);
  AgentState s;
  s.pools.push_back({"b-pool", 2, 1.5, 0.5, {}});
  s.pools.push_back({"a-pool", 1, std::nullopt, std::nullopt, {}});
  s.models.push_back({"b-pool", "quiet", 0});
  s.models.push_back({"b-pool", "busy", 3});
  s.models.push_back({"a-pool", "x", 1});
  m.SetState(s);
  m.AddRecord(Rec("b-pool", "busy", 1), 1);
  m.AddRecord(Rec("b-pool", "busy", 1), 1);
  m.AddRecord(Rec("c-pool", "ghost", 1, {}, {}, {}, "Incomplete"), 1);  // not in state
  m.SetNow(10);
  std::vector<TopRow> rows = m.Rows();
  ASSERT_EQ(rows.size(), 7u);
  // Pools by name; models busiest first.
  EXPECT_TRUE(rows[0].is_pool);
  EXPECT_EQ(rows[0].pool, "a-pool");
  EXPECT_FALSE(rows[0].queue);
  EXPECT_EQ(rows[0].in_flight, 1);
  EXPECT_EQ(rows[1].model, "x");
  EXPECT_EQ(rows[2].pool, "b-pool");
  EXPECT_TRUE(rows[2].is_pool);
  EXPECT_EQ(rows[2].queue, 1.5);
  EXPECT_EQ(rows[2].kv_utilization, 0.5);
  EXPECT_EQ(rows[2].ready_pods, 2);
  EXPECT_EQ(rows[2].in_flight, 3);  // 0 + 3
  EXPECT_DOUBLE_EQ(*rows[2].req_per_s, 0.2);
  EXPECT_EQ(rows[3].model, "busy");
  EXPECT_EQ(rows[3].in_flight, 3);
  EXPECT_EQ(rows[4].model, "quiet");
  EXPECT_EQ(rows[4].in_flight, 0);
  EXPECT_EQ(rows[4].req_per_s, 0.0);
  EXPECT_EQ(rows[5].pool, "c-pool");
  EXPECT_FALSE(rows[5].in_flight);  // the state does not know it
  EXPECT_EQ(rows[6].model, "ghost");
  EXPECT_EQ(rows[6].error_ratio, 1.0);

  TopRow t = m.Totals();
  EXPECT_EQ(t.in_flight, 4);
  EXPECT_EQ(t.ready_pods, 3);
  EXPECT_EQ(t.records, 3);
}

TEST(TopModel, StartWindowForgetsTheOldStream) {
  TopModel m = Model(10);
  m.StartWindow(0);
  m.AddRecord(Rec("p", "m", 1), 1);
  m.StartWindow(3);  // reconnected after a gap
  m.SetNow(4);
  EXPECT_EQ(m.samples(), 0u);
  EXPECT_EQ(m.effective_window_s(), 1.0);
}

TEST(TopModel, SampleCapDropsTheOldestAndCounts) {
  TopModel m(TopModel::Options{.window_s = 10, .max_samples = 3});
  m.StartWindow(0);
  for (int i = 1; i <= 5; ++i) m.AddRecord(Rec("p", "m", i), 1);
  m.SetNow(2);
  EXPECT_EQ(m.samples(), 3u);
  EXPECT_EQ(m.dropped_samples(), 2u);
  EXPECT_EQ(m.Totals().p50_s, 4);  // 3, 4, 5 remain
}

}  // namespace
}  // namespace infertap::cli
