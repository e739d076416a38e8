// Runs the real infertap-sim (vLLM format) and checks the bytes on the wire against the fixtures
// in test/fixtures/wire.
#include "test/common/require.hpp"
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

#include "sim_harness.hpp"

namespace infertap::sim::testing {
namespace {

constexpr std::string_view kModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr std::string_view kFixtureId = "chatcmpl-8f3a1c2b4d5e6f70";
constexpr std::string_view kFixtureCreated = "1779192000";

std::string ChatBody(bool stream, std::string_view extra = "") {
  std::string b = "{\"model\":\"" + std::string(kModel) +
                  "\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]";
  if (stream) b += ",\"stream\":true";
  return b + std::string(extra) + "}";
}

// A fixture event rewritten with our id, created and (if it has one) token text.
std::string Expect(std::string ev, const std::string& id, const std::string& created,
                   const std::string& content_from = "", const std::string& content_to = "") {
  ev = ReplaceAll(ev, kFixtureId, id);
  ev = ReplaceAll(ev, kFixtureCreated, created);
  if (!content_from.empty()) {
    ev = ReplaceAll(ev, "\"content\":\"" + content_from + "\"",
                    "\"content\":\"" + content_to + "\"");
  }
  return ev;
}

class VllmSimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sim_ = new SimProcess({"--max-model-len", "8192"}); }
  static void TearDownTestSuite() {
    delete sim_;
    sim_ = nullptr;
  }
  static SimProcess* sim_;
};
SimProcess* VllmSimTest::sim_ = nullptr;

TEST_F(VllmSimTest, PrintsListeningLine) {
  EXPECT_EQ(sim_->listening_line().rfind("infertap-sim listening on 127.0.0.1:", 0), 0u)
      << sim_->listening_line();
  EXPECT_GT(sim_->port(), 0);
}

TEST_F(VllmSimTest, StreamIncludeUsageMatchesFixtureByteForByte) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions",
              ChatBody(true, ",\"stream_options\":{\"include_usage\":true}"),
              {"x-sim-tokens: 9", "x-sim-prompt-tokens: 12"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete) << r.raw;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.head.substr(0, 17), "HTTP/1.1 200 OK\r\n");
  EXPECT_EQ(r.HeaderNames(),
            (std::vector<std::string>{"date", "server", "content-type", "transfer-encoding"}));
  EXPECT_EQ(r.Header("server"), "uvicorn");
  EXPECT_EQ(r.Header("content-type"), "text/event-stream; charset=utf-8");
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r.Header("date").size(), 29u);  // IMF-fixdate
  EXPECT_TRUE(r.raw.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"));

  // The fixture: role, 9 content chunks, finish, usage, [DONE]. vLLM counts the stop token too
  // (completion_tokens 10); the simulator sends one content chunk per counted token (9).
  auto fx = FixtureEvents("vllm_chat_stream_include_usage.sse");
  ASSERT_EQ(fx.size(), 13u);
  ASSERT_EQ(r.chunks.size(), 13u);
  fx[11] = ReplaceAll(fx[11], "\"total_tokens\":22,\"completion_tokens\":10",
                      "\"total_tokens\":21,\"completion_tokens\":9");
  std::string json0 = DataOf(r.chunks[0]);
  std::string id = JsonField(json0, "id");
  std::string created = JsonField(json0, "created");
  EXPECT_EQ(id.size(), kFixtureId.size());
  EXPECT_EQ(r.chunk_size_lines[0], "11d");  // same length as the fixture's first chunk
  EXPECT_EQ(r.chunks[0], Expect(fx[0], id, created));
  for (int i = 1; i <= 9; ++i) {
    std::string from = JsonField(DataOf(fx[i]), "content");
    EXPECT_EQ(r.chunks[i], Expect(fx[i], id, created, from, "tok" + std::to_string(i - 1) + " "))
        << i;
  }
  EXPECT_EQ(r.chunks[10], Expect(fx[10], id, created));  // finish chunk
  EXPECT_EQ(r.chunks[11], Expect(fx[11], id, created));  // usage chunk
  EXPECT_EQ(r.chunks[12], "data: [DONE]\n\n");
  for (size_t i = 0; i < r.chunks.size(); ++i) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%zx", r.chunks[i].size());
    EXPECT_EQ(r.chunk_size_lines[i], hex);  // lowercase hex, exact size
    // Exactly one event per chunk.
    EXPECT_EQ(r.chunks[i].find("\n\n"), r.chunks[i].size() - 2) << r.chunks[i];
  }
}

TEST_F(VllmSimTest, StreamWithoutUsagePutsFingerprintOnFinishChunk) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", ChatBody(true), {"x-sim-tokens: 9"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  auto fx = FixtureEvents("vllm_chat_stream_no_usage.sse");
  ASSERT_EQ(fx.size(), 12u);
  ASSERT_EQ(r.chunks.size(), fx.size());
  std::string json0 = DataOf(r.chunks[0]);
  std::string id = JsonField(json0, "id"), created = JsonField(json0, "created");
  EXPECT_EQ(r.chunks[0], Expect(fx[0], id, created));
  EXPECT_EQ(r.chunks[10], Expect(fx[10], id, created));
  EXPECT_EQ(r.chunks.back(), "data: [DONE]\n\n");
}

TEST_F(VllmSimTest, ContinuousUsageMatchesFixture) {
  Client c(sim_->port());
  c.Send(
      Post("/v1/chat/completions",
           ChatBody(true,
                    ",\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":true}"),
           {"x-sim-tokens: 9", "x-sim-prompt-tokens: 12"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  auto fx = FixtureEvents("vllm_chat_stream_continuous_usage.sse");
  ASSERT_EQ(fx.size(), 13u);
  ASSERT_EQ(r.chunks.size(), fx.size());
  // Content chunk k carries completion_tokens k in both; the stop token vLLM counts on top is
  // not simulated (see the include_usage test).
  for (size_t i : {10u, 11u}) {
    fx[i] = ReplaceAll(fx[i], "\"total_tokens\":22,\"completion_tokens\":10",
                       "\"total_tokens\":21,\"completion_tokens\":9");
  }
  std::string json0 = DataOf(r.chunks[0]);
  std::string id = JsonField(json0, "id"), created = JsonField(json0, "created");
  for (size_t i = 0; i < fx.size(); ++i) {
    std::string from = (i >= 1 && i <= 9) ? JsonField(DataOf(fx[i]), "content") : "";
    std::string to = from.empty() ? "" : "tok" + std::to_string(i - 1) + " ";
    EXPECT_EQ(r.chunks[i], Expect(fx[i], id, created, from, to)) << i;
  }
}

TEST_F(VllmSimTest, NonStreamChatMatchesFixture) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", ChatBody(false),
              {"x-sim-tokens: 10", "x-sim-prompt-tokens: 12"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.HeaderNames(),
            (std::vector<std::string>{"date", "server", "content-length", "content-type"}));
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("content-length"), std::to_string(r.body.size()));
  std::string fx = ReadFixture("vllm_chat_nonstream_response.json");
  std::string id = JsonField(r.body, "id"), created = JsonField(r.body, "created");
  fx = ReplaceAll(ReplaceAll(fx, kFixtureId, id), kFixtureCreated, created);
  fx = ReplaceAll(fx, "Hello! How can I help you today?",
                  "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 ");
  EXPECT_EQ(r.body, fx);
}

TEST_F(VllmSimTest, TokenAccountingFromRequest) {
  Client c(sim_->port());
  // 2 words + 3 words of content; max_tokens 4 -> finish_reason "length".
  c.Send(
      Post("/v1/chat/completions",
           "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
           "\"content\":[{\"type\":\"text\",\"text\":\"one  two\\nthree\"}]}],\"max_tokens\":4}"));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_NE(r.body.find("\"content\":\"tok0 tok1 tok2 tok3 \""), std::string::npos) << r.body;
  EXPECT_NE(
      r.body.find("\"usage\":{\"prompt_tokens\":5,\"total_tokens\":9,\"completion_tokens\":4"),
      std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"finish_reason\":\"length\""), std::string::npos);
  EXPECT_EQ(r.body.find("one"), std::string::npos);  // never echoes the prompt
  // Default --tokens is 16 when the request has no limit.
  c.Send(Post("/v1/chat/completions", ChatBody(false)));
  r = c.Read();
  EXPECT_NE(r.body.find("\"completion_tokens\":16"), std::string::npos);
  EXPECT_NE(r.body.find("\"finish_reason\":\"stop\""), std::string::npos);
}

TEST_F(VllmSimTest, CompletionsStreamAndBody) {
  Client c(sim_->port());
  c.Send(Post("/v1/completions",
              "{\"model\":\"" + std::string(kModel) +
                  "\",\"prompt\":\"The capital of France is\",\"stream\":true,"
                  "\"stream_options\":{\"include_usage\":true}}",
              {"x-sim-tokens: 3"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  ASSERT_EQ(r.chunks.size(), 5u);  // 3 tokens (last with finish_reason), usage, [DONE]
  auto fx = FixtureEvents("vllm_completions_stream_include_usage.sse");
  std::string id = JsonField(DataOf(r.chunks[0]), "id");
  std::string created = JsonField(DataOf(r.chunks[0]), "created");
  auto fix = [&](std::string ev) {
    return ReplaceAll(ReplaceAll(ev, "cmpl-3e9d0a7b5c1f2e48", id), kFixtureCreated, created);
  };
  EXPECT_EQ(r.chunks[0], ReplaceAll(fix(fx[0]), "\" Paris\"", "\"tok0 \""));
  EXPECT_EQ(r.chunks[2], ReplaceAll(fix(fx[1]), "\".\"", "\"tok2 \""));
  // The fixture has 6 prompt tokens (a real tokenizer); ours counts 5 words.
  EXPECT_EQ(r.chunks[3], ReplaceAll(fix(fx[2]), "\"prompt_tokens\":6,\"total_tokens\":9",
                                    "\"prompt_tokens\":5,\"total_tokens\":8"));
  c.Send(Post("/v1/completions", "{\"prompt\":\"The capital of France is\",\"max_tokens\":3}",
              {"x-sim-prompt-tokens: 6"}));
  r = c.Read();
  std::string fxb = ReadFixture("vllm_completions_nonstream_response.json");
  fxb = ReplaceAll(fxb, "cmpl-3e9d0a7b5c1f2e48", JsonField(r.body, "id"));
  fxb = ReplaceAll(fxb, kFixtureCreated, JsonField(r.body, "created"));
  fxb = ReplaceAll(fxb, "\" Paris.\"", "\"tok0 tok1 tok2 \"");
  fxb = ReplaceAll(fxb, "\"finish_reason\":\"stop\"", "\"finish_reason\":\"length\"");
  EXPECT_EQ(r.body, fxb);
}

TEST_F(VllmSimTest, EmbeddingsUsage) {
  Client c(sim_->port());
  c.Send(Post("/v1/embeddings", ReadFixture("vllm_embeddings_request.json")));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"model\":\"meta-llama/Llama-3.1-8B-Instruct\""), std::string::npos);
  EXPECT_NE(r.body.find("{\"index\":1,\"object\":\"embedding\""), std::string::npos);
  EXPECT_EQ(r.body.find("{\"index\":2,"), std::string::npos);
  EXPECT_TRUE(
      r.body.ends_with("\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3,\"completion_tokens\":0,"
                       "\"prompt_tokens_details\":null}}"))
      << r.body;
}

TEST_F(VllmSimTest, ResponsesStreamEventsAndUsage) {
  Client c(sim_->port());
  c.Send(Post("/v1/responses", "{\"input\":\"hi there\",\"stream\":true}", {"x-sim-tokens: 3"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  std::vector<std::string> types;
  for (const auto& ch : r.chunks) {
    ASSERT_EQ(ch.rfind("event: ", 0), 0u) << ch;
    types.push_back(ch.substr(7, ch.find('\n') - 7));
    EXPECT_EQ(ch.find("\n\n"), ch.size() - 2);
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "response.created", "response.in_progress", "response.output_item.added",
                       "response.content_part.added", "response.output_text.delta",
                       "response.output_text.delta", "response.output_text.delta",
                       "response.output_text.done", "response.content_part.done",
                       "response.output_item.done", "response.completed"}));
  EXPECT_EQ(r.body.find("[DONE]"), std::string::npos);
  EXPECT_NE(r.chunks.back().find("\"usage\":{\"input_tokens\":2,"), std::string::npos);
  EXPECT_NE(r.chunks.back().find("\"output_tokens\":3,"), std::string::npos);
  EXPECT_NE(r.chunks.back().find("\"total_tokens\":5}"), std::string::npos);
  EXPECT_NE(r.chunks[4].find("\"delta\":\"tok0 \""), std::string::npos);
  EXPECT_NE(r.chunks[4].find("\"sequence_number\":4,"), std::string::npos);
}

TEST_F(VllmSimTest, ErrorBodiesMatchFixtures) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", "{\"model\":\"gpt-4o\",\"messages\":[]}",
              {"x-sim-status: 404"}));
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.head.substr(0, 24), "HTTP/1.1 404 Not Found\r\n");
  EXPECT_EQ(r.body, ReadFixture("vllm_error_404_model_not_found.json"));
  c.Send(Post("/v1/chat/completions", "{\"model\":\"gpt-4o\",\"messages\":[]}",
              {"x-sim-status: 404", "x-sim-error-format: legacy"}));
  r = c.Read();
  EXPECT_EQ(r.body, ReadFixture("vllm_legacy_pre0.10.1_error_404.json"));
  c.Send(Post("/v1/chat/completions", "{\"messages\":[],\"max_tokens\":32}",
              {"x-sim-status: 400", "x-sim-prompt-tokens: 9000"}));
  r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, ReadFixture("vllm_error_400_context_length.json"));
  EXPECT_EQ(r.HeaderNames(),
            (std::vector<std::string>{"date", "server", "content-length", "content-type"}));
  c.Send(Post("/v1/chat/completions", "{\"messages\":[]}", {"x-sim-status: 401"}));
  r = c.Read();
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body, ReadFixture("vllm_error_401_unauthorized.json"));
  for (int status : {429, 500, 503}) {
    c.Send(
        Post("/v1/completions", "{\"prompt\":\"x\"}", {"x-sim-status: " + std::to_string(status)}));
    r = c.Read();
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.body.rfind("{\"error\":{\"message\":", 0), 0u) << r.body;
    EXPECT_TRUE(r.body.ends_with(",\"param\":null,\"code\":" + std::to_string(status) + "}}"))
        << r.body;
  }
  // A body that is not JSON: pydantic-style 400.
  c.Send(Post("/v1/chat/completions", "not json"));
  r = c.Read();
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"type\":\"Bad Request\""), std::string::npos);
  c.Send(Get("/nope"));
  r = c.Read();
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "{\"detail\":\"Not Found\"}");
}

TEST_F(VllmSimTest, MidstreamErrorEventThenDone) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", ChatBody(true), {"x-sim-midstream-error-after: 3"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  auto fx = FixtureEvents("vllm_chat_stream_midstream_error.sse");
  ASSERT_EQ(r.chunks.size(), fx.size());  // role, 3 tokens, error, [DONE]
  EXPECT_EQ(r.chunks[4], fx[4]);
  EXPECT_EQ(r.chunks[5], "data: [DONE]\n\n");
  EXPECT_TRUE(r.raw.ends_with("\r\n0\r\n\r\n"));
  c.Send(Post("/v1/chat/completions", ChatBody(true),
              {"x-sim-midstream-error-after: 1", "x-sim-error-format: legacy"}));
  r = c.Read();
  ASSERT_EQ(r.chunks.size(), 4u);
  EXPECT_EQ(r.chunks[2].rfind("data: {\"error\": {\"object\": \"error\", \"message\": ", 0), 0u);
  EXPECT_EQ(r.chunks[0].find("prompt_token_ids"), std::string::npos);  // legacy chunk shape
}

TEST_F(VllmSimTest, AbortAfterResetsWithoutTerminalChunk) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", ChatBody(true), {"x-sim-abort-after: 2"}));
  EXPECT_EQ(c.WaitClosed(), ECONNRESET);
  const std::string& got = c.buffered();
  EXPECT_NE(got.find("\"content\":\"tok1 \""), std::string::npos) << got;
  EXPECT_EQ(got.find("tok2"), std::string::npos);
  EXPECT_EQ(got.find("[DONE]"), std::string::npos);
  EXPECT_EQ(got.find("\r\n0\r\n\r\n"), std::string::npos);
}

TEST_F(VllmSimTest, ExpectContinueBeforeBody) {
  Client c(sim_->port());
  std::string body = ChatBody(false);
  c.Send(
      "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
      "expect: 100-continue\r\nx-sim-tokens: 2\r\ncontent-length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  RawResponse interim = c.Read(2000);
  ASSERT_TRUE(interim.complete);
  EXPECT_EQ(interim.raw, "HTTP/1.1 100 Continue\r\n\r\n");
  c.Send(body);
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"completion_tokens\":2"), std::string::npos);
}

TEST_F(VllmSimTest, ChunkedRequestBody) {
  Client c(sim_->port());
  std::string body =
      "{\"messages\":[{\"role\":\"user\",\"content\":\"a b c d\"}],\"max_tokens\":1}";
  std::string a = body.substr(0, 10), b = body.substr(10);
  char ha[16], hb[16];
  std::snprintf(ha, sizeof ha, "%zx", a.size());
  std::snprintf(hb, sizeof hb, "%zX", b.size());  // upper-case hex is legal too
  c.Send("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" +
         std::string(ha) + "\r\n" + a + "\r\n" + hb + ";ext=1\r\n" + b + "\r\n0\r\n\r\n");
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"prompt_tokens\":4,"), std::string::npos) << r.body;
}

TEST_F(VllmSimTest, PipelinedRequestsAnsweredInOrder) {
  Client c(sim_->port());
  c.Send(Post("/v1/chat/completions", ChatBody(true), {"x-sim-tokens: 3", "x-sim-itl-ms: 5"}) +
         Post("/v1/chat/completions", ChatBody(false), {"x-sim-tokens: 2"}) + Get("/health"));
  RawResponse a = c.Read(), b = c.Read(), h = c.Read();
  ASSERT_TRUE(a.complete && b.complete && h.complete);
  EXPECT_TRUE(a.chunked);
  EXPECT_EQ(a.chunks.size(), 6u);
  EXPECT_FALSE(b.chunked);
  EXPECT_NE(b.body.find("\"completion_tokens\":2"), std::string::npos);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.body, "");
  EXPECT_EQ(h.Header("content-length"), "0");
}

TEST_F(VllmSimTest, KeepAliveManyRequests) {
  Client c(sim_->port());
  for (int i = 0; i < 300; ++i) {
    c.Send(Post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}"));
    RawResponse r = c.Read();
    ASSERT_EQ(r.status, 200) << i;
  }
}

TEST_F(VllmSimTest, ConnectionCloseHonoured) {
  Client c(sim_->port());
  c.Send(Post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":1}", {"connection: close"}));
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("connection"), "close");
  EXPECT_EQ(c.WaitClosed(), 0);  // orderly FIN, not a reset
}

TEST_F(VllmSimTest, ModelsList) {
  Client c(sim_->port());
  c.Send(Get("/v1/models"));
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(
      r.body.rfind("{\"object\":\"list\",\"data\":[{\"id\":\"meta-llama/Llama-3.1-8B-Instruct\""
                   ",\"object\":\"model\"",
                   0),
      0u)
      << r.body;
  EXPECT_NE(r.body.find("\"max_model_len\":8192"), std::string::npos);
}

TEST_F(VllmSimTest, Ipv6Listen) {
  SimProcess sim6({"--listen", "[::1]:0"});
  Client c(sim6.port(), /*ipv6=*/true);
  c.Send(Get("/health"));
  EXPECT_EQ(c.Read().status, 200);
}

// /metrics reflects running, waiting and KV usage while streams are in flight.
TEST(VllmSimMetrics, GaugesFollowInFlightStreams) {
  SimProcess sim({"--max-running", "2", "--kv-capacity-tokens", "100"});
  std::vector<std::unique_ptr<Client>> streams;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<Client>(sim.port()));
    streams.back()->Send(Post("/v1/chat/completions", ChatBody(true),
                              {"x-sim-tokens: 30", "x-sim-itl-ms: 20", "x-sim-prompt-tokens: 10"}));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  Client m(sim.port());
  m.Send(Get("/metrics"));
  RawResponse r = m.Read();
  EXPECT_EQ(r.Header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string labels = "{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} ";
  EXPECT_NE(r.body.find("vllm:num_requests_running" + labels + "2.0\n"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("vllm:num_requests_waiting" + labels + "1.0\n"), std::string::npos);
  // Two running requests: 2 x (10 prompt + ~7 generated) of 100 tokens.
  size_t at = r.body.find("vllm:kv_cache_usage_perc" + labels);
  ASSERT_NE(at, std::string::npos);
  double kv =
      std::stod(r.body.substr(at + std::string("vllm:kv_cache_usage_perc").size() + labels.size()));
  EXPECT_GE(kv, 0.2);  // prompts alone: 2 x 10 of 100
  EXPECT_LT(kv, 0.8);
  // Each stream completes (the third after a slot frees up).
  for (auto& s : streams) {
    RawResponse sr = s->Read(5000);
    EXPECT_TRUE(sr.complete);
  }
  m.Send(Get("/metrics"));
  r = m.Read();
  EXPECT_NE(r.body.find("vllm:num_requests_running" + labels + "0.0\n"), std::string::npos);
  EXPECT_NE(r.body.find("vllm:num_requests_waiting" + labels + "0.0\n"), std::string::npos);
  EXPECT_NE(r.body.find("vllm:kv_cache_usage_perc" + labels + "0.0\n"), std::string::npos);
  EXPECT_NE(r.body.find("vllm:generation_tokens_total" + labels + "90.0\n"), std::string::npos);
}

TEST(VllmSimMetrics, ClientDisconnectFreesSlot) {
  SimProcess sim({"--max-running", "1"});
  {
    Client s(sim.port());
    s.Send(
        Post("/v1/chat/completions", ChatBody(true), {"x-sim-tokens: 1000", "x-sim-itl-ms: 10"}));
    ASSERT_GT(s.BytesWithin(100), 0u);
  }  // closed mid-stream
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Client m(sim.port());
  m.Send(Get("/metrics"));
  RawResponse r = m.Read();
  EXPECT_NE(r.body.find("vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/"
                        "Llama-3.1-8B-Instruct\"} 0.0"),
            std::string::npos)
      << r.body;
  EXPECT_NE(
      r.body.find("finished_reason=\"abort\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 1.0"),
      std::string::npos);
}

TEST(VllmSimMetrics, MetricsModes) {
  SimProcess sim({"--metrics-mode", "garbage", "--metrics-delay-ms", "300"});
  Client c(sim.port());
  c.Send(Get("/metrics"));
  RawResponse r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.find("# TYPE"), std::string::npos);
  c.Send(Post("/sim/metrics-mode", "slow"));
  EXPECT_EQ(c.Read().status, 200);
  auto t0 = std::chrono::steady_clock::now();
  c.Send(Get("/metrics"));
  r = c.Read();
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_GE(ms, 280);
  EXPECT_NE(r.body.find("vllm:num_requests_running"), std::string::npos);
  c.Send(Post("/sim/metrics-mode", "down"));
  EXPECT_EQ(c.Read().status, 200);
  c.Send(Get("/metrics"));
  EXPECT_EQ(c.WaitClosed(), ECONNRESET);
}

TEST(VllmSimTiming, TtftAndItlApplied) {
  SimProcess sim({"--ttft-ms", "100", "--itl-ms", "20"});
  Client c(sim.port());
  auto t0 = std::chrono::steady_clock::now();
  c.Send(Post("/v1/chat/completions", ChatBody(true), {"x-sim-tokens: 6"}));
  // The head goes out before the time to first token.
  ASSERT_GT(c.BytesWithin(50), 0u);
  EXPECT_EQ(c.buffered().find("data:"), std::string::npos);
  RawResponse r = c.Read();
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_TRUE(r.complete);
  EXPECT_GE(ms, 100 + 5 * 20);
  EXPECT_LT(ms, 1000);
}

TEST(VllmSimCurl, CurlStreamsAllEvents) {
  SimProcess sim;
  std::string cmd =
      "curl -sN --max-time 5 -H 'content-type: application/json' -H 'x-sim-tokens: 5' "
      "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
      "\"stream_options\":{\"include_usage\":true}}' http://127.0.0.1:" +
      std::to_string(sim.port()) + "/v1/chat/completions";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  if (WEXITSTATUS(rc) == 127) INFERTAP_CANNOT_RUN("curl is not installed (scripts/install-deps.sh)");
  EXPECT_EQ(rc, 0);
  int events = 0;
  for (size_t at = 0; (at = out.find("data: ", at)) != std::string::npos; ++at) ++events;
  EXPECT_EQ(events, 9);  // role + 5 + finish + usage + [DONE]
  EXPECT_NE(out.find("\"usage\":{\"prompt_tokens\":1,\"total_tokens\":6,\"completion_tokens\":5}"),
            std::string::npos);
  EXPECT_TRUE(out.ends_with("data: [DONE]\n\n"));
}

}  // namespace
}  // namespace infertap::sim::testing
