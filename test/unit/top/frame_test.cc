#include "agent/cli/top/frame.hpp"

#include <gtest/gtest.h>

namespace infertap::cli {
namespace {

TopRecord Rec(std::string pool, std::string model, double duration, std::optional<double> ttft,
              int64_t in, int64_t out, std::string error = "") {
  TopRecord r;
  r.pool = std::move(pool);
  r.model_name = std::move(model);
  r.duration_s = duration;
  r.ttft_s = ttft;
  r.input_tokens = in;
  r.output_tokens = out;
  r.error_code = std::move(error);
  return r;
}

AgentState ExampleState() {
  AgentState s;
  s.node = "n1";
  s.version = "0.1.0";
  s.uptime_s = 12.5;
  PoolState pool{"default", 1, 0.5, 0.12, {}};
  pool.pods.push_back({"127.0.0.1:8000", true, 0.5, 3, 0.12});
  s.pools.push_back(pool);
  s.models.push_back({"default", "llama", 2});
  s.connections = 4;
  s.capture_lost_events = 0;
  s.parse_errors = 0;
  s.records = 40;
  return s;
}

// 30 records over a 10 s window: 3 req/s; durations 0.1..3.0 s; 3 errors.
TopModel ExampleModel() {
  TopModel m(TopModel::Options{.window_s = 10});
  m.StartWindow(0);
  m.SetState(ExampleState());
  for (int i = 1; i <= 30; ++i) {
    m.AddRecord(Rec("default", "llama", 0.1 * i, 0.08, 40, 200, i % 10 == 0 ? "Incomplete" : ""),
                1 + i * 0.1);
  }
  m.SetNow(10);
  m.set_info({"http://127.0.0.1:9091", "18:04:05", "", true});
  return m;
}

TEST(RenderFrame, Golden80x24) {
  TopModel m = ExampleModel();
  std::string expected =
      "infertap top  node n1  agent http://127.0.0.1:9091                      18:04:05\n"
      "req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0  parse-err 0\n"
      "\n"
      "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%\n"
      "default             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600   0.5  12%\n"
      "  llama             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600\n";
  for (int i = 0; i < 17; ++i) expected += "\n";
  expected += "q quit  rates over 10s  agent 0.1.0 up 12s\n";
  EXPECT_EQ(RenderFrame(m, 80, 24), expected);
}
}  // namespace
}  // namespace infertap::cli
