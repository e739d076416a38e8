// infertap-load against infertap-sim: the summary must add up exactly.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "sim_harness.hpp"

namespace infertap::sim::testing {
namespace {

nlohmann::json RunLoad(const std::string& args, int* exit_code) {
  std::string cmd = std::string(INFERTAP_BINARY_DIR) + "/infertap-load --timeout 10 " + args;
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  *exit_code = WEXITSTATUS(rc);
  return nlohmann::json::parse(out, nullptr, false);
}

std::string Url(const SimProcess& sim, std::string_view path) {
  return "--url http://127.0.0.1:" + std::to_string(sim.port()) + std::string(path);
}

TEST(LoadTest, StreamingTotalsEqualTokensTimesRequests) {
  SimProcess sim({"--itl-ms", "1"});
  int rc = 0;
  auto s = RunLoad(
      Url(sim, "/v1/chat/completions") + " -c 4 -n 60 --tokens 7 --include-usage --prompt-words 3",
      &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(s["requests"], 60);
  EXPECT_EQ(s["ok"], 60);
  EXPECT_EQ(s["errors"], 0);
  EXPECT_EQ(s["content_events"], 60 * 7);
  EXPECT_EQ(s["tokens_received"], 60 * 7);
  EXPECT_EQ(s["usage_completion_tokens"], 60 * 7);
  EXPECT_EQ(s["usage_prompt_tokens"], 60 * 3);
  EXPECT_EQ(s["one_event_per_chunk_violations"], 0);
  EXPECT_GT(s["latency_s"]["p50"].get<double>(), 0.005);  // 6 inter-token gaps of 1 ms
  EXPECT_GT(s["ttft_s"]["p50"].get<double>(), 0.0);
  EXPECT_LE(s["ttft_s"]["p50"].get<double>(), s["latency_s"]["p50"].get<double>());
  EXPECT_GT(s["bytes_received"].get<int64_t>(), 0);
  EXPECT_GT(s["wire_bytes_received"].get<int64_t>(), s["bytes_received"].get<int64_t>());
}

TEST(LoadTest, NonStreamingCompletionsAndBodyBytes) {
  SimProcess sim;
  int rc = 0;
  auto s = RunLoad(Url(sim, "/v1/completions") + " -c 2 -n 20 --tokens 5 --no-stream", &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(s["ok"], 20);
  EXPECT_EQ(s["tokens_received"], 100);
  EXPECT_EQ(s["content_events"], 0);
  EXPECT_EQ(s["bytes_sent"].get<int64_t>() % 20, 0);  // identical bodies
}

TEST(LoadTest, CountsInjectedFaults) {
  SimProcess sim;
  int rc = 0;
  auto s = RunLoad(
      Url(sim, "/v1/chat/completions") + " -c 2 -n 10 --tokens 5 -H 'x-sim-abort-after: 2'", &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 3);
  EXPECT_EQ(s["ok"], 0);
  EXPECT_EQ(s["io_errors"], 10);
  s = RunLoad(Url(sim, "/v1/chat/completions") +
                  " -c 2 -n 10 --tokens 5 -H 'x-sim-midstream-error-after: 2'",
              &rc);
  EXPECT_EQ(s["stream_errors"], 10);
  EXPECT_EQ(s["content_events"], 20);
  s = RunLoad(Url(sim, "/v1/chat/completions") + " -n 4 -H 'x-sim-status: 503'", &rc);
  EXPECT_EQ(s["http_errors"], 4);
  EXPECT_EQ(s["status"]["503"], 4);
}

TEST(LoadTest, EnginesParseAndCount) {
  for (const char* engine : {"sglang", "tgi", "llamacpp"}) {
    SimProcess sim({"--engine", engine});
    int rc = 0;
    auto s =
        RunLoad(Url(sim, "/v1/chat/completions") + " -c 2 -n 10 --tokens 4 --include-usage", &rc);
    ASSERT_FALSE(s.is_discarded()) << engine;
    EXPECT_EQ(rc, 0) << engine << s.dump();
    EXPECT_EQ(s["content_events"], 40) << engine;
    EXPECT_EQ(s["usage_completion_tokens"], 40) << engine;
  }
}

TEST(LoadTest, OpenLoopRateAndResponsesApi) {
  SimProcess sim;
  int rc = 0;
  auto s = RunLoad(Url(sim, "/v1/responses") + " -c 4 -n 20 --rate 200 --tokens 3", &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0) << s.dump();
  EXPECT_EQ(s["ok"], 20);
  EXPECT_EQ(s["content_events"], 60);
  EXPECT_EQ(s["usage_completion_tokens"], 60);
  EXPECT_GE(s["duration_s"].get<double>(), 19 / 200.0);  // paced, not a burst
}

}  // namespace
}  // namespace infertap::sim::testing

namespace infertap::sim::testing {
namespace {

// Several worker threads share the admission queue: slots handed across threads must all come
// back, and every request must complete.
TEST(LoadTest, ThreadsAndQueueDrainCompletely) {
  SimProcess sim({"--threads", "4", "--max-running", "3", "--itl-ms", "1"});
  int rc = 0;
  auto s = RunLoad(Url(sim, "/v1/chat/completions") + " -c 16 -n 200 --tokens 5", &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0) << s.dump();
  EXPECT_EQ(s["ok"], 200);
  EXPECT_EQ(s["content_events"], 1000);
  // The client has its last byte a moment before the simulator's worker retires the request
  // (it writes, then updates its counters): ask until the gauges settle, for at most 3 s.
  const std::string l = "{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} ";
  RawResponse r;
  for (int i = 0; i < 60; ++i) {
    Client m(sim.port());
    m.Send(Get("/metrics"));
    r = m.Read();
    if (r.body.find("vllm:num_requests_running" + l + "0.0\n") != std::string::npos &&
        r.body.find("vllm:generation_tokens_total" + l + "1000.0\n") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(r.body.find("vllm:num_requests_running" + l + "0.0\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("vllm:num_requests_waiting" + l + "0.0\n"), std::string::npos);
  EXPECT_NE(r.body.find("vllm:generation_tokens_total" + l + "1000.0\n"), std::string::npos);
}

TEST(LoadTest, ErrorRateIsSeededAndApplied) {
  SimProcess all({"--error-rate", "1"});
  int rc = 0;
  auto s = RunLoad(Url(all, "/v1/chat/completions") + " -n 5 --tokens 2", &rc);
  EXPECT_EQ(s["status"]["500"], 5);
  SimProcess half({"--error-rate", "0.5", "--seed", "7"});
  s = RunLoad(Url(half, "/v1/chat/completions") + " -n 200 --tokens 1", &rc);
  int64_t errors = s["http_errors"].get<int64_t>();
  EXPECT_GT(errors, 60);
  EXPECT_LT(errors, 140);
}

TEST(LoadTest, TtftHeaderAndCpuPerToken) {
  SimProcess sim({"--cpu-per-token", "2ms"});
  int rc = 0;
  auto s =
      RunLoad(Url(sim, "/v1/chat/completions") + " -n 3 --tokens 10 -H 'x-sim-ttft-ms: 40'", &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0);
  EXPECT_GE(s["ttft_s"]["p50"].get<double>(), 0.040);
  EXPECT_GE(s["latency_s"]["p50"].get<double>(), 0.040 + 10 * 0.002);
}

// --unique-models and --truth: one line per request, each its own model and token count, summing
// to the summary; cut-off requests are "io" with what arrived before the cut.
TEST(LoadTest, TruthFileHasOneLinePerRequest) {
  SimProcess sim({"--itl-ms", "0"});
  const std::string truth = ::testing::TempDir() + "/load_truth.jsonl";
  int rc = 0;
  auto s = RunLoad(Url(sim, "/v1/chat/completions") +
                       " -c 3 -n 30 --tokens 4 --include-usage --unique-models --model u --truth " +
                       truth,
                   &rc);
  ASSERT_FALSE(s.is_discarded());
  EXPECT_EQ(rc, 0);
  FILE* f = std::fopen(truth.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::map<std::string, nlohmann::json> by_model;
  int64_t bytes = 0, tokens = 0;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    const int seq = j["seq"].get<int>();
    EXPECT_EQ(j["model"], "u-" + std::to_string(seq));
    EXPECT_EQ(j["outcome"], "ok");
    EXPECT_EQ(j["status"], 200);
    EXPECT_EQ(j["content_events"], 4 + seq % 7);
    EXPECT_EQ(j["usage_completion_tokens"], 4 + seq % 7);
    EXPECT_GT(j["local_port"].get<int>(), 0);
    bytes += j["response_bytes"].get<int64_t>();
    tokens += j["usage_completion_tokens"].get<int64_t>();
    by_model[j["model"].get<std::string>()] = j;
  }
  std::fclose(f);
  EXPECT_EQ(by_model.size(), 30u);
  EXPECT_EQ(bytes, s["bytes_received"].get<int64_t>());
  EXPECT_EQ(tokens, s["usage_completion_tokens"].get<int64_t>());

  RunLoad(Url(sim, "/v1/chat/completions") + " -n 3 --tokens 5 -H 'x-sim-abort-after: 2' --truth " +
              truth,
          &rc);
  EXPECT_EQ(rc, 3);
  f = std::fopen(truth.c_str(), "r");
  ASSERT_NE(f, nullptr);
  int n = 0;
  while (std::fgets(line, sizeof line, f)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_EQ(j["outcome"], "io");
    EXPECT_EQ(j["content_events"], 2);
    EXPECT_EQ(j["usage_completion_tokens"], -1);
    ++n;
  }
  std::fclose(f);
  EXPECT_EQ(n, 3);
}

}  // namespace
}  // namespace infertap::sim::testing
