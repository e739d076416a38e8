#include "agent/cli/inspect/agent_json.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

namespace infertap::cli {
namespace {

using nlohmann::json;

std::string Str(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<double> Num(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// Counts and sizes: a negative or non-integral value is a broken sender, not a count.
std::optional<int64_t> Count(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > uint64_t(INT64_MAX)) return std::nullopt;
    return int64_t(v);
  }
  if (it->is_number_integer()) {
    int64_t v = it->get<int64_t>();
    return v < 0 ? std::nullopt : std::optional<int64_t>(v);
  }
  if (it->is_number_float()) {
    double v = it->get<double>();
    // 9.2e18 bounds the cast; anything larger cannot be a real count.
    if (v < 0 || v > 9.2e18 || v != std::floor(v)) return std::nullopt;
    return int64_t(v);
  }
  return std::nullopt;
}

bool Bool(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

bool ParseObject(std::string_view text, json* out, std::string* error) {
  try {
    *out = json::parse(text);
  } catch (const json::parse_error& e) {
    *error = std::string("not valid JSON: ") + e.what();
    return false;
  }
  if (!out->is_object()) {
    *error = "not a JSON object";
    return false;
  }
  return true;
}

}  // namespace

bool ParseTopRecord(std::string_view text, TopRecord* out, std::string* error) {
  json j;
  if (!ParseObject(text, &j, error)) return false;
  TopRecord r;
  r.ts = Str(j, "ts");
  r.pool = Str(j, "pool");
  r.model_name = Str(j, "model_name");
  r.error_code = Str(j, "error_code");
  r.status = Count(j, "status").value_or(0);
  r.stream = Bool(j, "stream");
  // A negative duration cannot come from an honest agent; clamp so percentiles stay meaningful.
  r.duration_s = std::max(0.0, Num(j, "duration_s").value_or(0.0));
  r.ttft_s = Num(j, "ttft_s");
  if (r.ttft_s && *r.ttft_s < 0) r.ttft_s.reset();
  r.input_tokens = Count(j, "input_tokens");
  r.output_tokens = Count(j, "output_tokens");
  *out = std::move(r);
  return true;
}

bool ParseAgentState(std::string_view text, AgentState* out, std::string* error) {
  json j;
  if (!ParseObject(text, &j, error)) return false;
  AgentState s;
  s.node = Str(j, "node");
  s.version = Str(j, "version");
  s.uptime_s = Num(j, "uptime_s");
  s.connections = Count(j, "connections");
  if (auto it = j.find("pools"); it != j.end() && it->is_array()) {
    for (const json& p : *it) {
      if (!p.is_object()) continue;
      PoolState pool;
      pool.name = Str(p, "name");
      pool.ready_pods = Count(p, "ready_pods");
      pool.average_queue_size = Num(p, "average_queue_size");
      pool.average_kv_cache_utilization = Num(p, "average_kv_cache_utilization");
      if (auto pods = p.find("pods"); pods != p.end() && pods->is_array()) {
        for (const json& d : *pods) {
          if (!d.is_object()) continue;
          PodState pod;
          pod.name = Str(d, "name");
          pod.fresh = Bool(d, "fresh");
          pod.queue = Num(d, "queue");
          pod.running = Num(d, "running");
          pod.kv_cache_utilization = Num(d, "kv_cache_utilization");
          pool.pods.push_back(std::move(pod));
        }
      }
      s.pools.push_back(std::move(pool));
    }
  }
  if (auto it = j.find("models"); it != j.end() && it->is_array()) {
    for (const json& m : *it) {
      if (!m.is_object()) continue;
      s.models.push_back({Str(m, "pool"), Str(m, "model_name"), Count(m, "in_flight")});
    }
  }
  if (auto it = j.find("counters"); it != j.end() && it->is_object()) {
    s.capture_lost_events = Count(*it, "capture_lost_events");
    s.parse_errors = Count(*it, "parse_errors");
    s.records = Count(*it, "records");
  }
  *out = std::move(s);
  return true;
}

}  // namespace infertap::cli
