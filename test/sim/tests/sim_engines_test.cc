// The --engine variants: each server's distinctive wire habits (docs/wire-formats.md).
#include <gtest/gtest.h>

#include "sim_harness.hpp"

namespace infertap::sim::testing {
namespace {

std::string StreamChat(std::string_view model, bool usage) {
  return "{\"model\":\"" + std::string(model) +
         "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}],\"stream\":true" +
         (usage ? ",\"stream_options\":{\"include_usage\":true}" : "") + "}";
}

TEST(SglangSim, ModelEchoFinishChunkExtraEmptyChoicesAndFlatErrors) {
  SimProcess sim({"--engine", "sglang"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("my-alias", true), {"x-sim-tokens: 2"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  // role, 2 tokens, finish (own chunk), choices:[] with usage null, usage chunk, [DONE]
  ASSERT_EQ(r.chunks.size(), 7u) << r.body;
  for (size_t i = 0; i + 1 < r.chunks.size(); ++i) {
    EXPECT_NE(r.chunks[i].find("\"model\":\"my-alias\""), std::string::npos) << i;
  }
  EXPECT_NE(r.chunks[1].find("\"content\":\"tok0 \""), std::string::npos);
  EXPECT_NE(r.chunks[1].find("\"finish_reason\":null"), std::string::npos);
  EXPECT_TRUE(r.chunks[1].ends_with(",\"usage\":null}\n\n"));
  EXPECT_NE(r.chunks[3].find("\"content\":null"), std::string::npos);
  EXPECT_NE(r.chunks[3].find("\"finish_reason\":\"stop\""), std::string::npos);
  EXPECT_NE(r.chunks[4].find("\"choices\":[],\"usage\":null}"), std::string::npos);
  EXPECT_NE(r.chunks[5].find("\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"total_tokens\":4,"
                             "\"completion_tokens\":2,"),
            std::string::npos);
  EXPECT_EQ(r.chunks[6], "data: [DONE]\n\n");

  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-status: 400"}));
  r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body.rfind("{\"object\":\"error\",\"message\":", 0), 0u) << r.body;
  EXPECT_TRUE(r.body.ends_with("\"type\":\"BadRequestError\",\"param\":null,\"code\":400}"));

  c.Send(Get("/metrics"));
  r = c.Read();
  EXPECT_NE(
      r.body.find("sglang:num_queue_reqs{model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.0"),
      std::string::npos);
  EXPECT_NE(r.body.find("sglang:num_running_reqs{"), std::string::npos);
  EXPECT_NE(r.body.find("sglang:token_usage{"), std::string::npos);
}

TEST(SglangSim, HeadArrivesWithFirstChunk) {
  SimProcess sim({"--engine", "sglang", "--ttft-ms", "300"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("m", false), {"x-sim-tokens: 1"}));
  EXPECT_EQ(c.BytesWithin(150), 0u);  // vLLM would have sent its head by now
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.chunks.size(), 5u);
}

TEST(TgiSim, ObjectFirstEmptyIdUsageNullKeepAliveAndErrors) {
  SimProcess sim({"--engine", "tgi"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("ignored", true), {"x-sim-tokens: 3"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.HeaderNames().back(), "date");
  EXPECT_EQ(r.Header("content-type"), "text/event-stream");
  ASSERT_EQ(r.chunks.size(), 6u);  // ":" keep-alive, 3 tokens, usage, [DONE]
  EXPECT_EQ(r.chunks[0], ":\n\n");
  for (int i = 1; i <= 3; ++i) {
    EXPECT_EQ(r.chunks[i].rfind("data: {\"object\":\"chat.completion.chunk\",\"id\":\"\",", 0), 0u);
    EXPECT_TRUE(r.chunks[i].ends_with(",\"usage\":null}\n\n"));
    EXPECT_NE(r.chunks[i].find("\"model\":\"meta-llama/Llama-3.1-8B-Instruct\""),
              std::string::npos);  // TGI always names its own model
  }
  EXPECT_NE(r.chunks[3].find("\"finish_reason\":\"stop\""), std::string::npos);
  EXPECT_NE(
      r.chunks[4].find("\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,"
                       "\"total_tokens\":5}"),
      std::string::npos);
  // Completions: usage always on the final chunk, no include_usage needed.
  c.Send(Post("/v1/completions", "{\"prompt\":\"a b c\",\"stream\":true}", {"x-sim-tokens: 2"}));
  r = c.Read();
  ASSERT_EQ(r.chunks.size(), 4u);
  EXPECT_NE(r.chunks[2].find("\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"),
            std::string::npos);

  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-status: 422"}));
  r = c.Read();
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.body.rfind("{\"error\":\"Input validation error:", 0), 0u);
  EXPECT_TRUE(r.body.ends_with("\"error_type\":\"validation\"}"));
  c.Send(Post("/v1/chat/completions", StreamChat("x", false),
              {"x-sim-tokens: 3", "x-sim-midstream-error-after: 1"}));
  r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.chunks.back().rfind("data: {\"error\":{\"message\":", 0), 0u);
  EXPECT_NE(r.chunks.back().find("\"http_status_code\":422}}"), std::string::npos);

  c.Send(Get("/metrics"));
  r = c.Read();
  EXPECT_NE(r.body.find("# TYPE tgi_queue_size gauge\ntgi_queue_size 0\n"), std::string::npos);
  EXPECT_NE(r.body.find("tgi_batch_current_size 0\n"), std::string::npos);
}

TEST(TgiSim, DataWithoutSpace) {
  SimProcess sim({"--engine", "tgi", "--tgi-data-no-space"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-tokens: 1"}));
  RawResponse r = c.Read();
  ASSERT_EQ(r.chunks.size(), 3u);
  EXPECT_EQ(r.chunks[1].rfind("data:{\"object\"", 0), 0u);
  EXPECT_EQ(r.chunks[2], "data:[DONE]\n\n");
}

TEST(LlamaCppSim, SeveralEventsPerWriteUsageOnFinishTimingsErrorLine) {
  SimProcess sim({"--engine", "llamacpp", "--itl-ms", "1"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-tokens: 3"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.Header("Server"), "llama.cpp");
  ASSERT_EQ(r.chunks.size(), 4u);  // [role + tok0], [tok1], [tok2], [finish + DONE]
  EXPECT_NE(r.chunks[0].find("\"role\":\"assistant\""), std::string::npos);
  EXPECT_NE(r.chunks[0].find("\n\ndata: {"), std::string::npos);  // two events, one chunk
}

TEST(LlamaCppSim, FinishChunkCarriesUsageAndTimings) {
  SimProcess sim({"--engine", "llamacpp"});
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-tokens: 1"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  ASSERT_EQ(r.chunks.size(), 2u);
  const std::string& last = r.chunks[1];
  EXPECT_NE(last.find("\"finish_reason\":\"stop\""), std::string::npos);
  EXPECT_NE(last.find("\"usage\":{\"completion_tokens\":1,\"prompt_tokens\":2,\"total_tokens\":3}"),
            std::string::npos);
  EXPECT_NE(last.find("\"timings\":{\"prompt_n\":2,"), std::string::npos);
  EXPECT_TRUE(last.ends_with("}\n\ndata: [DONE]\n\n"));

  c.Send(Post("/v1/chat/completions", StreamChat("x", false),
              {"x-sim-tokens: 3", "x-sim-midstream-error-after: 1"}));
  r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.chunks.back().rfind("error: {\"code\":500,", 0), 0u);
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);

  c.Send(Post("/v1/chat/completions", StreamChat("x", false), {"x-sim-status: 503"}));
  r = c.Read();
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(
      r.body,
      "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}");

  c.Send(Get("/metrics"));
  r = c.Read();
  EXPECT_NE(r.body.find("llamacpp:requests_processing 0\n"), std::string::npos);
  EXPECT_NE(r.body.find("llamacpp:requests_deferred 0\n"), std::string::npos);
  EXPECT_NE(r.body.find("llamacpp:tokens_predicted_total 2\n"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace infertap::sim::testing
