#include "agent/cli/inspect/agent_json.hpp"

#include <gtest/gtest.h>

namespace infertap::cli {
namespace {

TEST(ParseTopRecord, ReadsEveryFieldTheViewsUse) {
  TopRecord r;
  std::string error;
  ASSERT_TRUE(ParseTopRecord(
      R"({"ts":"2025-01-02T18:04:05.123456789Z","node":"n1","pool":"default","namespace":"ns",
          "pod":"p","role":"server","model_name":"llama","target_model_name":"meta/Llama",
          "method":"POST","path":"/v1/chat/completions","status":200,"stream":true,
          "error_code":"","request_bytes":10,"response_bytes":20,"input_tokens":12,
          "output_tokens":64,"cached_tokens":0,"duration_s":1.234,"ttft_s":0.08,
          "tpot_s":0.01,"chunks":64})",
      &r, &error))
      << error;
  EXPECT_EQ(r.ts, "2025-01-02T18:04:05.123456789Z");
  EXPECT_EQ(r.pool, "default");
  EXPECT_EQ(r.model_name, "llama");
  EXPECT_EQ(r.error_code, "");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.stream);
  EXPECT_DOUBLE_EQ(r.duration_s, 1.234);
  ASSERT_TRUE(r.ttft_s);
  EXPECT_DOUBLE_EQ(*r.ttft_s, 0.08);
  EXPECT_EQ(r.input_tokens, 12);
  EXPECT_EQ(r.output_tokens, 64);
}

TEST(ParseTopRecord, AbsentOptionalFieldsStayUnknown) {
  TopRecord r;
  std::string error;
  ASSERT_TRUE(ParseTopRecord(
      R"({"pool":"p","model_name":"m","status":503,"stream":false,
          "error_code":"ServiceUnavailable","duration_s":0.5})",
      &r, &error));
  EXPECT_EQ(r.error_code, "ServiceUnavailable");
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.ttft_s);
  EXPECT_FALSE(r.input_tokens);
  EXPECT_FALSE(r.output_tokens);
}

TEST(ParseTopRecord, WrongTypesAndNegativesAreUnknownNotGuessed) {
  TopRecord r;
  std::string error;
  ASSERT_TRUE(ParseTopRecord(
      R"({"pool":7,"model_name":null,"status":"200","stream":"yes","duration_s":-3,
          "ttft_s":-0.1,"input_tokens":-5,"output_tokens":2.5})",
      &r, &error));
  EXPECT_EQ(r.pool, "");
  EXPECT_EQ(r.model_name, "");
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.duration_s, 0);
  EXPECT_FALSE(r.ttft_s);
  EXPECT_FALSE(r.input_tokens);
  EXPECT_FALSE(r.output_tokens);
}

TEST(ParseTopRecord, RejectsWhatIsNotAnObject) {
  TopRecord r;
  std::string error;
  EXPECT_FALSE(ParseTopRecord("{\"pool\":", &r, &error));
  EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
  EXPECT_FALSE(ParseTopRecord("[1,2]", &r, &error));
  EXPECT_EQ(error, "not a JSON object");
  EXPECT_FALSE(ParseTopRecord("", &r, &error));
}

TEST(ParseAgentState, ReadsTheDocumentOfTheInspectApi) {
  AgentState s;
  std::string error;
  ASSERT_TRUE(ParseAgentState(
      R"({"node":"n1","version":"0.1.0","uptime_s":12.5,
 "pools":[{"name":"default","ready_pods":1,"average_queue_size":0.5,"average_kv_cache_utilization":0.12,"average_running_requests":3,
           "pods":[{"name":"127.0.0.1:8000","address":"127.0.0.1:8000","fresh":true,"queue":0.5,"running":3,"kv_cache_utilization":0.12,"scrape_errors":0}]}],
 "models":[{"pool":"default","model_name":"llama","target_model_name":"meta-llama/Llama-3.1-8B-Instruct","in_flight":2}],
 "endpoints":["127.0.0.1:8000"],
 "connections":4,
 "counters":{"capture_events":123,"capture_lost_events":0,"parse_errors":0,"requests":42,"records":40}})",
      &s, &error))
      << error;
  EXPECT_EQ(s.node, "n1");
  EXPECT_EQ(s.version, "0.1.0");
  EXPECT_EQ(s.uptime_s, 12.5);
  ASSERT_EQ(s.pools.size(), 1u);
  EXPECT_EQ(s.pools[0].name, "default");
  EXPECT_EQ(s.pools[0].ready_pods, 1);
  EXPECT_EQ(s.pools[0].average_queue_size, 0.5);
  EXPECT_EQ(s.pools[0].average_kv_cache_utilization, 0.12);
  ASSERT_EQ(s.pools[0].pods.size(), 1u);
  EXPECT_TRUE(s.pools[0].pods[0].fresh);
  EXPECT_EQ(s.pools[0].pods[0].running, 3);
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_EQ(s.models[0].pool, "default");
  EXPECT_EQ(s.models[0].model_name, "llama");
  EXPECT_EQ(s.models[0].in_flight, 2);
  EXPECT_EQ(s.connections, 4);
  EXPECT_EQ(s.capture_lost_events, 0);
  EXPECT_EQ(s.parse_errors, 0);
  EXPECT_EQ(s.records, 40);
}

TEST(ParseAgentState, NullAveragesWhenNoPodIsFresh) {
  AgentState s;
  std::string error;
  ASSERT_TRUE(ParseAgentState(
      R"({"pools":[{"name":"p","ready_pods":0,"average_queue_size":null,"pods":[7,{"name":"x"}]}],
          "models":[{"pool":"p","model_name":"m"}, 3]})",
      &s, &error));
  ASSERT_EQ(s.pools.size(), 1u);
  EXPECT_FALSE(s.pools[0].average_queue_size);
  EXPECT_FALSE(s.pools[0].average_kv_cache_utilization);
  ASSERT_EQ(s.pools[0].pods.size(), 1u);  // the non-object entry is skipped
  EXPECT_FALSE(s.pools[0].pods[0].fresh);
  ASSERT_EQ(s.models.size(), 1u);
  EXPECT_FALSE(s.models[0].in_flight);
  EXPECT_FALSE(s.connections);
  EXPECT_FALSE(s.capture_lost_events);
}

TEST(ParseAgentState, RejectsNonObjects) {
  AgentState s;
  std::string error;
  EXPECT_FALSE(ParseAgentState("null", &s, &error));
  EXPECT_FALSE(ParseAgentState("<html>", &s, &error));
}

}  // namespace
}  // namespace infertap::cli
