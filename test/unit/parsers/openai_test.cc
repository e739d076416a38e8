#include "parsers/openai.hpp"

#include <gtest/gtest.h>

#include "test_util.hpp"

namespace infertap {
namespace {

using test::ReadFixture;

TEST(OpenAi, RequestFixtures) {
  OpenAiExtractor x(1 << 20);
  auto r = x.ParseRequest(ReadFixture("wire/vllm_chat_request_stream_continuous_usage.json"));
  EXPECT_TRUE(r.valid);
  EXPECT_EQ(r.model, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_TRUE(r.continuous_usage);
  r = x.ParseRequest(ReadFixture("wire/vllm_chat_request_stream_include_usage.json"));
  EXPECT_TRUE(r.include_usage);
  EXPECT_FALSE(r.continuous_usage);
  r = x.ParseRequest(ReadFixture("wire/vllm_chat_request_nonstream.json"));
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(x.ParseRequest(ReadFixture("wire/vllm_lora_completions_request.json")).model,
            "sql-lora");
  EXPECT_EQ(x.ParseRequest(ReadFixture("wire/vllm_embeddings_request.json")).model,
            "intfloat/e5-small-v2");
  EXPECT_FALSE(x.ParseRequest("{\"model\":").valid);
  EXPECT_FALSE(x.ParseRequest("[1,2]").valid);
}

TEST(OpenAi, NonStreamResponses) {
  OpenAiExtractor x(1 << 20);
  auto r = x.ParseResponse(ReadFixture("wire/vllm_chat_nonstream_response.json"));
  EXPECT_TRUE(r.valid);
  EXPECT_TRUE(r.has_usage);
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_FALSE(r.cached_tokens);  // prompt_tokens_details: null
  EXPECT_FALSE(r.error);
  EXPECT_FALSE(r.generated);  // `message`, not `delta`
  r = x.ParseResponse(ReadFixture("wire/vllm_embeddings_response.json"));
  EXPECT_EQ(r.input_tokens, 7u);
  EXPECT_EQ(r.output_tokens, 0u);
  EXPECT_EQ(r.model, "intfloat/e5-small-v2");
  r = x.ParseResponse(ReadFixture("wire/vllm_completions_nonstream_response.json"));
  EXPECT_TRUE(r.has_usage);
  EXPECT_EQ(x.ParseResponse(ReadFixture("wire/vllm_lora_completions_response.json")).model,
            "sql-lora");
}

TEST(OpenAi, ErrorShapes) {
  OpenAiExtractor x(1 << 20);
  for (const char* f :
       {"wire/vllm_error_400_context_length.json", "wire/vllm_error_400_request_validation.json",
        "wire/vllm_error_401_unauthorized.json", "wire/vllm_error_404_model_not_found.json",
        "wire/vllm_legacy_pre0.10.1_error_400.json", "wire/vllm_legacy_pre0.10.1_error_404.json"}) {
    auto r = x.ParseResponse(ReadFixture(f));
    EXPECT_TRUE(r.valid) << f;
    EXPECT_TRUE(r.error) << f;
  }
  EXPECT_TRUE(x.ParseResponse(R"({"error":"Input validation error","error_type":"validation"})")
                  .error);  // TGI
  EXPECT_TRUE(x.ParseResponse(R"({"error":{"message":"x","http_status_code":500}})").error);
  auto d = x.ParseResponse(R"({"detail":[{"loc":["body"],"msg":"field required"}]})");
  EXPECT_TRUE(d.detail);
  EXPECT_FALSE(d.error);
  EXPECT_FALSE(x.ParseResponse(R"({"error":null,"choices":[]})").error);
  EXPECT_TRUE(x.ParseResponse(R"({"type":"error","code":"server_error","message":"x"})").error);
  EXPECT_TRUE(x.ParseResponse(R"({"type":"response.failed","response":{"usage":null}})").error);
}

TEST(OpenAi, GeneratedContentDetection) {
  OpenAiExtractor x(1 << 20);
  auto gen = [&](std::string_view j) { return x.ParseResponse(j).generated; };
  EXPECT_FALSE(gen(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})"));
  EXPECT_TRUE(gen(R"({"choices":[{"delta":{"content":"Hi"}}]})"));
  EXPECT_TRUE(gen(R"({"choices":[{"delta":{"reasoning":"hmm"}}]})"));
  EXPECT_TRUE(gen(R"({"choices":[{"delta":{"reasoning_content":"hmm","content":null}}]})"));
  EXPECT_TRUE(gen(R"({"choices":[{"delta":{"tool_calls":[{"index":0}]}}]})"));
  EXPECT_FALSE(gen(R"({"choices":[{"delta":{"tool_calls":null,"content":null}}]})"));
  EXPECT_FALSE(gen(R"({"choices":[{"delta":{"tool_calls":[]}}]})"));
  EXPECT_TRUE(gen(R"({"choices":[{"text":" Paris"}]})"));
  EXPECT_FALSE(gen(R"({"choices":[{"text":""}]})"));
  EXPECT_FALSE(gen(R"({"choices":[],"usage":{"prompt_tokens":1}})"));
  EXPECT_TRUE(gen(R"({"type":"response.output_text.delta","delta":"Hello"})"));
  EXPECT_TRUE(gen(R"({"type":"response.function_call_arguments.delta","delta":"{"})"));
  EXPECT_FALSE(gen(R"({"type":"response.output_text.delta","delta":""})"));
  EXPECT_FALSE(gen(R"({"type":"response.output_text.done","text":"Hello"})"));
}

TEST(OpenAi, UsageRules) {
  OpenAiExtractor x(1 << 20);
  auto r = x.ParseResponse(R"({"choices":[{"delta":{"content":"a"}}],"usage":null})");
  EXPECT_FALSE(r.has_usage);
  r = x.ParseResponse(R"({"choices":[],"model":"m"})");
  EXPECT_FALSE(r.has_usage);
  r = x.ParseResponse(
      R"({"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":64}}})");
  EXPECT_EQ(r.cached_tokens, 64u);
  EXPECT_EQ(r.input_tokens, 100u);
  // Responses API, usage inside response.completed.
  auto lines = test::SseDataLines(ReadFixture("wire/vllm_responses_stream_abbreviated.sse"));
  ASSERT_FALSE(lines.empty());
  r = x.ParseResponse(lines.back());
  EXPECT_TRUE(r.has_usage);
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 3u);
  EXPECT_EQ(r.cached_tokens, 0u);
  EXPECT_EQ(r.model, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_FALSE(x.ParseResponse(lines.front()).has_usage);  // response.created: usage null
}

TEST(OpenAi, TgiSnapshotChunks) {
  OpenAiExtractor x(1 << 20);
  simdjson::dom::parser p;
  std::string all = ReadFixture("wire/tgi_snapshot_chat_openai_usage.parsed.json");
  simdjson::dom::array arr = p.parse(all).get_array();
  std::string_view last_json;
  int usage_chunks = 0, gen = 0;
  for (simdjson::dom::element e : arr) {
    std::string j = simdjson::minify(e);
    auto r = x.ParseResponse(j);
    ASSERT_TRUE(r.valid);
    usage_chunks += r.has_usage;
    gen += r.generated;
    if (r.has_usage) {
      EXPECT_EQ(r.input_tokens, 39u);
      EXPECT_EQ(r.output_tokens, 3u);
    }
  }
  EXPECT_EQ(usage_chunks, 1);
  EXPECT_GE(gen, 2);
}

TEST(OpenAi, ScanTopLevelModelOnTruncatedBody) {
  EXPECT_EQ(ScanTopLevelModel(R"({"messages":[{"model":"no"}], "model" : "yes", "x":)"), "yes");
  EXPECT_EQ(ScanTopLevelModel(R"({"a":"\"model\"","model":"m\/1"})"), "m/1");
  EXPECT_EQ(ScanTopLevelModel(R"({"messages":[{"content":"aaaa)"), std::nullopt);
  EXPECT_EQ(ScanTopLevelModel(R"({"model":42})"), std::nullopt);
}

TEST(OpenAi, CapacityBound) {
  OpenAiExtractor x(16);
  EXPECT_FALSE(x.ParseResponse(R"({"model":"0123456789abcdef"})").valid);
}

}  // namespace
}  // namespace infertap
