#include "agent/cli/inspect/frame.hpp"

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

TEST(RenderFrame, Narrow60DropsTheLeastImportantColumns) {
  TopModel m = ExampleModel();
  EXPECT_EQ(RenderFrame(m, 60, 8),
            "infertap top  node n1  agent http://127.0.0.1:9091  18:04:05\n"
            "req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0\n"
            "\n"
            "POOL / MODEL       REQ/S INFL  ERR%    P50   TTFT QUEUE  KV%\n"
            "default              3.0    2 10.0% 1.500s 0.080s   0.5  12%\n"
            "  llama              3.0    2 10.0% 1.500s 0.080s\n"
            "\n"
            "q quit  rates over 10s  agent 0.1.0 up 12s\n");
}

TEST(RenderFrame, Wide120GivesTheNameColumnUpTo40) {
  TopModel m = ExampleModel();
  EXPECT_EQ(RenderFrame(m, 120, 7),
            "infertap top  node n1  agent http://127.0.0.1:9091" + std::string(62, ' ') +
                "18:04:05\n"
                "req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0  parse-err 0\n"
                "\n"
                "POOL / MODEL                              REQ/S INFL  ERR%    P50    P99   TTFT"
                "   IN/S  OUT/S QUEUE  KV%\n"
                "default                                     3.0    2 10.0% 1.500s 3.000s 0.080s"
                "    120    600   0.5  12%\n"
                "  llama                                     3.0    2 10.0% 1.500s 3.000s 0.080s"
                "    120    600\n"
                "q quit  rates over 10s  agent 0.1.0 up 12s\n");
}

TEST(RenderFrame, TooManyRowsEndWithACountOfTheHiddenOnes) {
  TopModel m = ExampleModel();
  AgentState s = ExampleState();
  for (int i = 0; i < 5; ++i) s.models.push_back({"default", "model-" + std::to_string(i), 0});
  m.SetState(s);
  EXPECT_EQ(RenderFrame(m, 80, 9),
            "infertap top  node n1  agent http://127.0.0.1:9091                      18:04:05\n"
            "req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0  parse-err 0\n"
            "\n"
            "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%\n"
            "default             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600   0.5  12%\n"
            "  llama             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600\n"
            "  model-0           0.0    0     -      -      -      -    0.0    0.0\n"
            "  ... 4 more rows\n"
            "q quit  rates over 10s  agent 0.1.0 up 12s\n");
}

TEST(RenderFrame, NaturalHeightForOnceWithoutStateOrRecords) {
  TopModel m(TopModel::Options{.window_s = 10});
  m.set_info({"http://127.0.0.1:1", "", "agent unreachable: Connection refused", false});
  EXPECT_EQ(RenderFrame(m, 80, 0),
            "infertap top  node -  agent http://127.0.0.1:1\n"
            "req/s -  in-flight -  err -\n"
            "\n"
            "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%\n"
            "  (no pools, models or requests yet)\n"
            "agent unreachable: Connection refused\n");
}

TEST(RenderFrame, UnknownGaugesAndLongNamesAndHostileBytes) {
  TopModel m(TopModel::Options{.window_s = 10});
  m.StartWindow(0);
  AgentState s;
  s.node = "n\x1b[2Jx";  // an escape sequence must not reach the terminal
  s.pools.push_back({"pool-with-a-very-long-name", 0, std::nullopt, std::nullopt, {}});
  s.models.push_back({"pool-with-a-very-long-name", "meta-llama/Llama-3.1-8B-Instruct", {}});
  m.SetState(s);
  m.SetNow(0.5);
  m.set_info({"http://127.0.0.1:9091", "00:00:01",
              "agent unreachable: a long reason that cannot possibly fit on this line", true});
  EXPECT_EQ(RenderFrame(m, 80, 0),
            "infertap top  node n?[2Jx  agent http://127.0.0.1:9091                  00:00:01\n"
            "req/s 0.0  in-flight -  err -  pods 0/0  conns -  lost -  parse-err -\n"
            "\n"
            "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%\n"
            "pool-with-a-ver~    0.0    -     -      -      -      -    0.0    0.0     -    -\n"
            "  meta-llama/Ll~    0.0    -     -      -      -      -    0.0    0.0\n"
            "q quit  agent unreachable: a long reason that cannot possibly fit on this line\n");
}

TEST(RenderFrame, EveryFrameFitsItsTerminal) {
  TopModel m = ExampleModel();
  AgentState s = ExampleState();
  for (int i = 0; i < 30; ++i) s.models.push_back({"default", "m" + std::to_string(i), i});
  m.SetState(s);
  for (int w = 1; w <= 200; w += 7) {
    for (int h = 1; h <= 40; h += 3) {
      std::vector<std::string> lines = RenderFrameLines(m, w, h);
      ASSERT_EQ(lines.size(), size_t(h)) << w << "x" << h;
      for (const std::string& l : lines) {
        ASSERT_LE(l.size(), size_t(w)) << w << "x" << h << ": " << l;
        ASSERT_EQ(l.find('\x1b'), std::string::npos);
        ASSERT_TRUE(l.empty() || l.back() != ' ') << l;
      }
      // The footer is always the last line (once the terminal is wide enough to say anything).
      if (w >= 6) {
        ASSERT_EQ(lines.back().rfind("q quit", 0), 0u) << w << "x" << h;
      }
    }
  }
}

TEST(RenderFrame, TinyTerminalKeepsHeaderAndFooter) {
  TopModel m = ExampleModel();
  EXPECT_EQ(RenderFrame(m, 80, 3),
            "infertap top  node n1  agent http://127.0.0.1:9091                      18:04:05\n"
            "req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0  parse-err 0\n"
            "q quit  rates over 10s  agent 0.1.0 up 12s\n");
  EXPECT_EQ(RenderFrame(m, 80, 1), "q quit  rates over 10s  agent 0.1.0 up 12s\n");
}

TEST(FrameFormat, Cells) {
  EXPECT_EQ(FormatRate(std::nullopt), "-");
  EXPECT_EQ(FormatRate(0), "0.0");
  EXPECT_EQ(FormatRate(99.94), "99.9");
  EXPECT_EQ(FormatRate(99.96), "100");
  EXPECT_EQ(FormatRate(12345.4), "12345");
  EXPECT_EQ(FormatRate(123456), "123k");
  EXPECT_EQ(FormatSeconds(0.08), "0.080s");
  EXPECT_EQ(FormatSeconds(9.9996), "10.00s");
  EXPECT_EQ(FormatSeconds(12.346), "12.35s");
  EXPECT_EQ(FormatSeconds(123.45), "123.5s");
  EXPECT_EQ(FormatSeconds(4321), "4321s");
  EXPECT_EQ(FormatSeconds(360000), "100h");
  EXPECT_EQ(FormatPercent(0), "0.0%");
  EXPECT_EQ(FormatPercent(0.125), "12.5%");
  EXPECT_EQ(FormatPercent(1), "100%");
  EXPECT_EQ(FormatCount(12345, 4), "12k");
  EXPECT_EQ(FormatCount(1234567, 4), "123~");
  EXPECT_EQ(FormatCount(std::nullopt, 4), "-");
  EXPECT_EQ(FormatDuration(12.5), "12s");
  EXPECT_EQ(FormatDuration(303), "5m03s");
  EXPECT_EQ(FormatDuration(7500), "2h05m");
  EXPECT_EQ(FormatDuration(3 * 86400 + 4 * 3600 + 5), "3d04h");
  EXPECT_EQ(Printable("a\tb\x7f\xc3\xa9"), "a?b???");
  EXPECT_EQ(Truncate("abcdef", 4), "abc~");
  EXPECT_EQ(Truncate("abcd", 4), "abcd");
}
}  // namespace
}  // namespace infertap::cli
