#include "parsers/record.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace infertap {
namespace {

TEST(Record, ErrorCodeForStatus) {
  EXPECT_EQ(ErrorCodeForStatus(200), ErrorCode::kNone);
  EXPECT_EQ(ErrorCodeForStatus(100), ErrorCode::kNone);
  EXPECT_EQ(ErrorCodeForStatus(304), ErrorCode::kNone);
  EXPECT_EQ(ErrorCodeForStatus(400), ErrorCode::kBadRequest);
  EXPECT_EQ(ErrorCodeForStatus(422), ErrorCode::kBadRequest);
  EXPECT_EQ(ErrorCodeForStatus(413), ErrorCode::kBadRequest);
  EXPECT_EQ(ErrorCodeForStatus(401), ErrorCode::kUnauthorized);
  EXPECT_EQ(ErrorCodeForStatus(403), ErrorCode::kForbidden);
  EXPECT_EQ(ErrorCodeForStatus(404), ErrorCode::kNotFound);
  EXPECT_EQ(ErrorCodeForStatus(429), ErrorCode::kResourceExhausted);
  EXPECT_EQ(ErrorCodeForStatus(503), ErrorCode::kServiceUnavailable);
  EXPECT_EQ(ErrorCodeForStatus(500), ErrorCode::kModelServerError);
  EXPECT_EQ(ErrorCodeForStatus(504), ErrorCode::kModelServerError);
  EXPECT_EQ(ErrorCodeName(ErrorCode::kIncomplete), "Incomplete");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNone), "");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kResourceExhausted), "ResourceExhausted");
}

TEST(Record, JsonHasSpecFieldsAndOmitsUnknowns) {
  RequestRecord r;
  r.start_ns = 1'000'000'000;
  r.end_ns = 3'500'000'000;
  r.first_token_ns = 1'250'000'000;
  r.node = "n1";
  r.pool = "p";
  r.ns = "default";
  r.pod = "vllm-0";
  r.role = "server";
  r.model_name = "food\"review\\\n";
  r.target_model_name = "t";
  r.method = "POST";
  r.path = "/v1/chat/\xff\x01";
  r.status = 200;
  r.stream = true;
  r.error = ErrorCode::kModelServerError;
  r.request_bytes = 120;
  r.response_bytes = 4096;
  r.input_tokens = 12;
  r.output_tokens = 11;
  r.chunks = 11;
  // 2026-05-19T12:00:00Z = 1779192000 s; offset makes start land exactly there + 1 ns.
  int64_t offset = 1779192000LL * 1'000'000'000 - 1'000'000'000 + 1;
  std::string s = RecordToJson(r, offset);
  auto j = nlohmann::json::parse(s);
  EXPECT_EQ(j["ts"], "2026-05-19T12:00:00.000000001Z");
  EXPECT_EQ(j["namespace"], "default");
  EXPECT_EQ(j["model_name"], "food\"review\\\n");
  EXPECT_EQ(j["path"], "/v1/chat/\xef\xbf\xbd\x01");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["error_code"], "ModelServerError");
  EXPECT_EQ(j["request_bytes"], 120);
  EXPECT_EQ(j["response_bytes"], 4096);
  EXPECT_EQ(j["input_tokens"], 12);
  EXPECT_EQ(j["output_tokens"], 11);
  EXPECT_FALSE(j.contains("cached_tokens"));
  EXPECT_DOUBLE_EQ(j["duration_s"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j["ttft_s"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["tpot_s"].get<double>(), 0.225);
  EXPECT_EQ(j["chunks"], 11);
  for (const char* k : {"node", "pool", "pod", "role", "target_model_name", "method"})
    EXPECT_TRUE(j.contains(k)) << k;

  RequestRecord bare;
  auto b = nlohmann::json::parse(RecordToJson(bare, 0));
  EXPECT_EQ(b["ts"], "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(b["error_code"], "");
  EXPECT_EQ(b["status"], 0);
  for (const char* k : {"input_tokens", "output_tokens", "cached_tokens", "ttft_s", "tpot_s"})
    EXPECT_FALSE(b.contains(k)) << k;
}

}  // namespace
}  // namespace infertap
