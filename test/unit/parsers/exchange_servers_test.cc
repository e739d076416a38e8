// Wire formats of docs/wire-formats.md, end to end through the exchange assembler.
#include <gtest/gtest.h>

#include "conn.hpp"

namespace infertap {
namespace {

using test::Conn;
using test::ReadFixture;

constexpr const char* kStreamReq = R"({"model":"m","stream":true})";

// One exchange whose streaming response body is `sse`, sent as one HTTP chunk per SSE event
// (blank-line separated) unless `raw_chunks` gives the chunk payloads explicitly.
RequestRecord RunStream(const std::string& sse, Conn& c, uint64_t piece = 1 << 20) {
  c.Req(1, test::PostJson("/v1/chat/completions", kStreamReq));
  std::string resp = test::SseHead();
  size_t pos = 0;
  while (pos < sse.size()) {
    size_t end = sse.find("\n\n", pos);
    end = end == std::string::npos ? sse.size() : end + 2;
    resp += test::Chunk(sse.substr(pos, end - pos));
    pos = end;
  }
  resp += test::LastChunk();
  c.RespPieces(2, resp, piece);
  if (c.rec.records.size() != 1) throw std::runtime_error("no single record");
  return c.rec.records[0];
}

TEST(Servers, VllmContinuousUsageLastWins) {
  Conn c;
  auto r = RunStream(ReadFixture("wire/vllm_chat_stream_continuous_usage.sse"), c);
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_EQ(r.chunks, 9u);
  EXPECT_EQ(r.error, ErrorCode::kNone);
}

TEST(Servers, VllmNoUsage) {
  Conn c;
  auto r = RunStream(ReadFixture("wire/vllm_chat_stream_no_usage.sse"), c);
  EXPECT_FALSE(r.input_tokens);
  EXPECT_FALSE(r.output_tokens);
  EXPECT_EQ(r.chunks, 9u);
}

TEST(Servers, VllmCompletionsStream) {
  Conn c;
  auto r = RunStream(ReadFixture("wire/vllm_completions_stream_include_usage.sse"), c);
  EXPECT_EQ(r.input_tokens, 6u);
  EXPECT_EQ(r.output_tokens, 3u);
  EXPECT_EQ(r.chunks, 2u);
}

TEST(Servers, VllmMidStreamErrorCurrentAndLegacy) {
  for (const char* f : {"wire/vllm_chat_stream_midstream_error.sse",
                        "wire/vllm_legacy_pre0.10.1_chat_stream_midstream_error.sse"}) {
    Conn c;
    auto r = RunStream(ReadFixture(f), c, 7);
    EXPECT_EQ(r.status, 200) << f;
    EXPECT_EQ(r.error, ErrorCode::kModelServerError) << f;
    EXPECT_TRUE(r.response_complete) << f;
    EXPECT_EQ(r.chunks, 3u) << f;
  }
}

TEST(Servers, VllmErrorBodies) {
  struct Case {
    int status;
    const char* file;
    ErrorCode want;
  } cases[] = {{400, "wire/vllm_error_400_request_validation.json", ErrorCode::kBadRequest},
               {401, "wire/vllm_error_401_unauthorized.json", ErrorCode::kUnauthorized},
               {404, "wire/vllm_error_404_model_not_found.json", ErrorCode::kNotFound},
               {400, "wire/vllm_legacy_pre0.10.1_error_400.json", ErrorCode::kBadRequest},
               {404, "wire/vllm_legacy_pre0.10.1_error_404.json", ErrorCode::kNotFound}};
  for (const auto& k : cases) {
    Conn c;
    c.Req(1, test::PostJson("/v1/chat/completions", R"({"model":"gpt-4o"})"));
    c.Resp(2, test::JsonResponse(k.status, ReadFixture(k.file)));
    EXPECT_EQ(c.Only().error, k.want) << k.file;
    EXPECT_EQ(c.Only().target_model_name, "gpt-4o");
  }
  // A 200 whose body is an error object (legacy flat shape) is a model-server error.
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", "{}"));
  c.Resp(2, test::JsonResponse(200, ReadFixture("wire/vllm_legacy_pre0.10.1_error_400.json")));
  EXPECT_EQ(c.Only().error, ErrorCode::kModelServerError);
}

TEST(Servers, VllmResponsesApi) {
  Conn c;
  c.Req(1, test::PostJson("/v1/responses", R"({"model":"m","input":"hi","stream":true})"));
  std::string sse = ReadFixture("wire/vllm_responses_stream_abbreviated.sse");
  c.Resp(2, test::SseHead());
  size_t delta = sse.find("event: response.output_text.delta");
  size_t completed = sse.find("event: response.completed");
  c.Resp(3, test::Chunk(sse.substr(0, delta)));
  c.Resp(4, test::Chunk(sse.substr(delta, completed - delta)));
  c.Resp(5, test::Chunk(sse.substr(completed)) + test::LastChunk());
  const auto& r = c.Only();
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 3u);
  EXPECT_EQ(r.cached_tokens, 0u);
  EXPECT_EQ(r.chunks, 1u);
  EXPECT_EQ(r.first_token_ns, 4u);
  EXPECT_EQ(r.end_ns, 5u);
}

TEST(Servers, VllmEmbeddings) {
  Conn c;
  c.Req(1, test::PostJson("/v1/embeddings", ReadFixture("wire/vllm_embeddings_request.json")));
  c.Resp(2, test::JsonResponse(200, ReadFixture("wire/vllm_embeddings_response.json")));
  const auto& r = c.Only();
  EXPECT_EQ(r.target_model_name, "intfloat/e5-small-v2");
  EXPECT_EQ(r.input_tokens, 7u);
  EXPECT_EQ(r.output_tokens, 0u);
  EXPECT_FALSE(r.stream);
}

TEST(Servers, SglangNullUsageAndEmptyChoiceChunks) {
  std::string sse =
      "data: {\"id\":\"1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" "
      "A\"}],\"usage\":null}\n\n"
      "data: {\"id\":\"1\",\"model\":\"m\",\"choices\":[],\"usage\":null}\n\n"
      "data: {\"id\":\"1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\" "
      "B\"}],\"usage\":null}\n\n"
      "data: "
      "{\"id\":\"1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":"
      "\"stop\"}],\"usage\":null}\n\n"
      "data: "
      "{\"id\":\"1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_"
      "tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
      "data: [DONE]\n\n";
  Conn c;
  auto r = RunStream(sse, c, 5);
  EXPECT_EQ(r.input_tokens, 5u);
  EXPECT_EQ(r.output_tokens, 2u);
  EXPECT_EQ(r.cached_tokens, 4u);
  EXPECT_EQ(r.chunks, 2u);
}

TEST(Servers, TgiOldDataWithoutSpaceAndKeepAliveComments) {
  // TGI snapshot chunks, re-serialised the way TGI < 2.1 wrote them ("data:" without a space),
  // with ":" keep-alive comments in between.
  simdjson::dom::parser p;
  std::string all = ReadFixture("wire/tgi_snapshot_chat_openai_usage.parsed.json");
  simdjson::dom::array arr = p.parse(all).get_array();
  std::string sse = ":\n\n";
  for (simdjson::dom::element e : arr) sse += "data:" + simdjson::minify(e) + "\n\n:\n\n";
  sse += "data:[DONE]\n\n";
  for (size_t piece : {1, 3, 64, 1 << 20}) {
    Conn c;
    auto r = RunStream(sse, c, piece);
    EXPECT_EQ(r.input_tokens, 39u) << piece;
    EXPECT_EQ(r.output_tokens, 3u) << piece;
    EXPECT_GE(r.chunks, 2u) << piece;
    EXPECT_TRUE(c.rec.errors.empty()) << piece;
  }
}

TEST(Servers, TgiErrors) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", kStreamReq));
  c.Resp(2, test::JsonResponse(422,
                               R"({"error":"Input validation error","error_type":"validation"})"));
  EXPECT_EQ(c.Only().error, ErrorCode::kBadRequest);
  Conn s;
  auto r = RunStream(
      "data:{\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n"
      "data:{\"error\":{\"message\":\"Request failed during "
      "generation\",\"http_status_code\":500}}\n\n",
      s);
  EXPECT_EQ(r.error, ErrorCode::kModelServerError);
}

TEST(Servers, LlamaCppSeveralEventsPerWriteErrorLineAndDoneWithoutBlankLine) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", kStreamReq));
  c.Resp(2, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
  c.Resp(3,
         "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
         "data: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}\n\n"
         "data: "
         "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":8,"
         "\"completion_tokens\":2},\"timings\":{\"predicted_ms\":3.2}}\n\n"
         "data: [DONE]\n");
  c.a.OnClose(4);
  auto r = c.Only();
  EXPECT_EQ(r.chunks, 2u);
  EXPECT_EQ(r.first_token_ns, 3u);
  EXPECT_EQ(r.output_tokens, 2u);
  EXPECT_EQ(r.error, ErrorCode::kNone);
  EXPECT_EQ(r.end_ns, 3u);

  Conn e;
  auto re = RunStream(
      "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
      "error: {\"code\":500,\"message\":\"slot unavailable\",\"type\":\"server_error\"}\n\n",
      e);
  EXPECT_EQ(re.error, ErrorCode::kModelServerError);
}

TEST(Servers, TritonDetailErrors) {
  for (auto [status, want] :
       {std::pair{422, ErrorCode::kBadRequest}, std::pair{400, ErrorCode::kBadRequest},
        std::pair{500, ErrorCode::kModelServerError}}) {
    Conn c;
    c.Req(1, test::PostJson("/v1/completions", R"({"model":"ensemble"})"));
    c.Resp(2, test::JsonResponse(status, R"({"detail":"Unknown model: ensemble"})"));
    EXPECT_EQ(c.Only().error, want);
    EXPECT_TRUE(c.rec.errors.empty());
  }
}

TEST(Servers, OpenAiUsageNullThenUsageChunk) {
  std::string sse;
  for (const char* t : {"Hel", "lo"})
    sse += std::string("data: {\"model\":\"gpt-4o-mini\",\"choices\":[{\"delta\":{\"content\":\"") +
           t + "\"}}],\"usage\":null,\"obfuscation\":\"r4N7\"}\n\n";
  sse +=
      "data: "
      "{\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_"
      "tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n";
  sse += "data: [DONE]\n\n";
  Conn c;
  auto r = RunStream(sse, c, 11);
  EXPECT_EQ(r.input_tokens, 9u);
  EXPECT_EQ(r.output_tokens, 2u);
  EXPECT_EQ(r.cached_tokens, 0u);
  EXPECT_EQ(r.chunks, 2u);
}

TEST(Servers, OpenAiSpecExampleChunks) {
  // The spec example omits "data: " prefixes and elides chunks with "....".
  std::string text = ReadFixture("wire/openai_spec_chat_stream_example.txt");
  std::string sse;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line[0] == '{') sse += "data: " + line + "\n\n";
    pos = nl + 1;
  }
  Conn c;
  auto r = RunStream(sse, c);
  EXPECT_EQ(r.chunks, 1u);
  EXPECT_FALSE(r.output_tokens);
  EXPECT_TRUE(c.rec.errors.empty());
}

TEST(Servers, CrOnlyLinesAndNoDone) {
  Conn c;
  auto r = RunStream(
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\r"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\r",
      c, 2);
  EXPECT_EQ(r.chunks, 1u);
  EXPECT_EQ(r.output_tokens, 1u);
}

TEST(Servers, ReasoningAndToolCallsCountAsGenerated) {
  Conn c;
  auto r = RunStream(
      "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"think\"}}]}\n\n"
      "data: "
      "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}"
      "}]}\n\n",
      c);
  EXPECT_EQ(r.chunks, 2u);
}

TEST(Servers, OpenAiErrorEventType) {
  Conn c;
  auto r = RunStream(
      "event: error\ndata: "
      "{\"message\":\"x\",\"type\":\"server_error\",\"code\":\"e\",\"param\":null}\n\n",
      c);
  EXPECT_EQ(r.error, ErrorCode::kModelServerError);
}

}  // namespace
}  // namespace infertap
