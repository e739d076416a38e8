// The two documents of the agent's inspection API (docs/serving.md) as `top` and `trace` see them:
// one request record (docs/records.md, a line of GET /v1/records) and the state snapshot (GET
// /v1/state).
//
// The agent is a separate process, possibly a different version, so parsing is lenient: only a
// document that is not a JSON object is an error. A field that is missing, null or of the wrong
// type is "unknown" (std::nullopt, or empty for strings) and is shown as "-", never guessed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infertap::cli {

// The subset of a docs/records.md record that the views use. `trace --json` prints the original
// line, so fields not listed here are never lost.
struct TopRecord {
  std::string ts;  // RFC 3339 request start, as sent
  std::string pool;
  std::string model_name;
  std::string error_code;  // "" = success
  int64_t status = 0;
  bool stream = false;
  double duration_s = 0;
  std::optional<double> ttft_s;
  std::optional<int64_t> input_tokens;
  std::optional<int64_t> output_tokens;
};

// False (with *error) when `json` is not a JSON object.
bool ParseTopRecord(std::string_view json, TopRecord* out, std::string* error);

struct PodState {
  std::string name;
  bool fresh = false;
  std::optional<double> queue;
  std::optional<double> running;
  std::optional<double> kv_cache_utilization;  // 0..1
};

struct PoolState {
  std::string name;
  std::optional<int64_t> ready_pods;
  // Averages over the pool's fresh pods; absent when no pod is fresh.
  std::optional<double> average_queue_size;
  std::optional<double> average_kv_cache_utilization;  // 0..1
  std::vector<PodState> pods;
};

struct ModelState {
  std::string pool;
  std::string model_name;
  std::optional<int64_t> in_flight;
};

struct AgentState {
  std::string node;
  std::string version;
  std::optional<double> uptime_s;
  std::vector<PoolState> pools;
  std::vector<ModelState> models;
  std::optional<int64_t> connections;
  std::optional<int64_t> capture_lost_events;
  std::optional<int64_t> parse_errors;
  std::optional<int64_t> records;
};

// False (with *error) when `json` is not a JSON object.
bool ParseAgentState(std::string_view json, AgentState* out, std::string* error);

}  // namespace infertap::cli
