#include "request_plan.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace infertap::sim {
namespace {

using nlohmann::json;

std::optional<int64_t> HeaderInt(const HttpRequest& req, std::string_view name) {
  std::string_view v = req.Header(name);
  if (v.empty()) return std::nullopt;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return n;
}

std::optional<double> HeaderDouble(const HttpRequest& req, std::string_view name) {
  std::string_view v = req.Header(name);
  if (v.empty()) return std::nullopt;
  // std::from_chars for double is available in GCC 11+.
  double d = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (ec != std::errc() || p != v.data() + v.size() || d < 0) return std::nullopt;
  return d;
}

// Words in a chat/responses `content`: a string, or an array of parts with a "text" string.
int ContentWords(const json& content) {
  if (content.is_string()) return CountWords(content.get_ref<const std::string&>());
  int n = 0;
  if (content.is_array()) {
    for (const auto& part : content) {
      if (part.is_object()) {
        auto it = part.find("text");
        if (it != part.end() && it->is_string()) n += CountWords(it->get_ref<const std::string&>());
      } else if (part.is_string()) {
        n += CountWords(part.get_ref<const std::string&>());
      }
    }
  }
  return n;
}

// Words in a completions `prompt` / embeddings `input`: string, list of strings, or token ids
// (a list of ints counts one token per id; a list of such lists sums them).
int PromptWords(const json& p, int* inputs) {
  *inputs = 1;
  if (p.is_string()) return CountWords(p.get_ref<const std::string&>());
  if (!p.is_array()) return 0;
  if (!p.empty() && p.front().is_number_integer()) return static_cast<int>(p.size());
  *inputs = static_cast<int>(p.size());
  int n = 0;
  for (const auto& e : p) {
    if (e.is_string()) n += CountWords(e.get_ref<const std::string&>());
    if (e.is_array()) n += static_cast<int>(e.size());
  }
  return n;
}

int CountPromptTokens(const json& body, Endpoint ep, int* inputs) {
  *inputs = 1;
  int n = 0;
  switch (ep) {
    case Endpoint::kChat:
      if (auto it = body.find("messages"); it != body.end() && it->is_array()) {
        for (const auto& m : *it) {
          if (m.is_object() && m.contains("content")) n += ContentWords(m["content"]);
        }
      }
      break;
    case Endpoint::kCompletions:
      if (auto it = body.find("prompt"); it != body.end()) n = PromptWords(*it, inputs);
      break;
    case Endpoint::kEmbeddings:
      if (auto it = body.find("input"); it != body.end()) n = PromptWords(*it, inputs);
      break;
    case Endpoint::kResponses:
      if (auto it = body.find("input"); it != body.end()) {
        if (it->is_string()) {
          n = ContentWords(*it);
        } else if (it->is_array()) {
          for (const auto& item : *it) {
            if (item.is_object() && item.contains("content")) n += ContentWords(item["content"]);
          }
        }
      }
      break;
  }
  return std::max(n, 1);
}

std::optional<int64_t> BodyInt(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

bool BodyBool(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

std::string IdFor(Endpoint ep, uint64_t seq) {
  // splitmix64 spreads sequential numbers over the id space so ids look like real random ones
  // but stay reproducible across runs.
  uint64_t z = seq + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(z));
  switch (ep) {
    case Endpoint::kChat:
      return std::string("chatcmpl-") + hex;
    case Endpoint::kCompletions:
      return std::string("cmpl-") + hex;
    case Endpoint::kEmbeddings:
      return std::string("embd-") + hex;
    case Endpoint::kResponses:
      return std::string("resp_") + hex;
  }
  return hex;
}

ErrorResponse ValidationError(Engine engine, std::string message) {
  if (engine == Engine::kVllm) {
    // FastAPI/pydantic validation failures use type "Bad Request" (fixture
    // vllm_error_400_request_validation.json).
    return {400, "{\"error\":{\"message\":" + JsonQuote(message) +
                     ",\"type\":\"Bad Request\",\"param\":null,\"code\":400}}"};
  }
  ErrorResponse e = ErrorBody(engine, 400, false, "", 0, 0, 0);
  return e;
}

}  // namespace

int CountWords(std::string_view s) {
  int n = 0;
  bool in_word = false;
  for (char c : s) {
    bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

Plan MakePlan(const HttpRequest& req, Endpoint endpoint, const SimConfig& cfg, uint64_t seq,
              std::mt19937_64& rng, int64_t unix_now) {
  Plan plan;
  Job& job = plan.job;
  job.engine = cfg.engine;
  job.endpoint = endpoint;
  job.created = unix_now;
  job.max_model_len = cfg.max_model_len;
  job.tgi_data_no_space = cfg.tgi_data_no_space;
  job.legacy = req.Header("x-sim-error-format") == "legacy";
  job.id = IdFor(endpoint, seq);
  // TGI sends an empty id on every chunk and body.
  if (cfg.engine == Engine::kTgi && endpoint != Endpoint::kResponses) job.id.clear();

  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    plan.error =
        ValidationError(cfg.engine, "JSON decode error: request body is not a JSON object");
    return plan;
  }
  if (endpoint == Endpoint::kChat && !body.contains("messages")) {
    // Same wording as vLLM's pydantic error, minus the echo of the input.
    plan.error = ValidationError(
        cfg.engine, "[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]");
    return plan;
  }

  // Model: which name the response carries depends on the engine (docs/wire-formats.md).
  std::string requested;
  if (auto it = body.find("model"); it != body.end() && it->is_string()) requested = *it;
  bool served = std::find(cfg.models.begin(), cfg.models.end(), requested) != cfg.models.end();
  switch (cfg.engine) {
    case Engine::kVllm:
      job.model = served ? requested : cfg.models[0];
      break;
    case Engine::kSglang:
    case Engine::kLlamaCpp:
      job.model = requested.empty() ? cfg.models[0] : requested;
      break;
    case Engine::kTgi:
      job.model = cfg.models[0];
      break;
  }

  // Prompt tokens: x-sim-prompt-tokens, else whitespace-separated words of the prompt, min 1.
  job.prompt_tokens = CountPromptTokens(body, endpoint, &job.embedding_inputs);
  if (auto v = HeaderInt(req, "x-sim-prompt-tokens"); v && *v >= 0) {
    job.prompt_tokens = static_cast<int>(*v);
  }

  // Completion tokens: x-sim-tokens, else the request's limit, else --tokens.
  std::optional<int64_t> limit;
  if (endpoint == Endpoint::kResponses) {
    limit = BodyInt(body, "max_output_tokens");
  } else {
    limit = BodyInt(body, "max_tokens");
    if (!limit && endpoint == Endpoint::kChat) limit = BodyInt(body, "max_completion_tokens");
  }
  job.completion_tokens = cfg.default_tokens;
  if (limit && *limit >= 0)
    job.completion_tokens = static_cast<int>(std::min<int64_t>(*limit, 1 << 24));
  if (auto v = HeaderInt(req, "x-sim-tokens"); v && *v >= 0) {
    job.completion_tokens = static_cast<int>(std::min<int64_t>(*v, 1 << 24));
  }
  // A stream that ran into the request's limit ends with "length", otherwise "stop".
  job.finish_reason = (limit && job.completion_tokens >= *limit) ? "length" : "stop";
  if (endpoint == Endpoint::kResponses && limit) job.max_output_tokens = static_cast<int>(*limit);
  if (endpoint == Endpoint::kEmbeddings) job.completion_tokens = 0;

  job.stream = endpoint != Endpoint::kEmbeddings && BodyBool(body, "stream");
  if (auto it = body.find("stream_options"); it != body.end() && it->is_object()) {
    job.include_usage = BodyBool(*it, "include_usage");
    job.continuous_usage = BodyBool(*it, "continuous_usage_stats");
  }

  double ttft = HeaderDouble(req, "x-sim-ttft-ms").value_or(cfg.ttft_ms);
  double itl = HeaderDouble(req, "x-sim-itl-ms").value_or(cfg.itl_ms);
  job.ttft_ms = ttft;
  job.itl_ms = itl;
  plan.ttft_ns = static_cast<int64_t>(ttft * 1e6);
  plan.itl_ns = static_cast<int64_t>(itl * 1e6);
  if (auto v = HeaderInt(req, "x-sim-midstream-error-after"); v && *v >= 0) {
    plan.midstream_error_after = static_cast<int>(*v);
  }
  if (auto v = HeaderInt(req, "x-sim-abort-after"); v && *v >= 0) {
    plan.abort_after = static_cast<int>(*v);
  }

  int status = static_cast<int>(HeaderInt(req, "x-sim-status").value_or(0));
  if (status < 400 && cfg.error_rate > 0 &&
      std::uniform_real_distribution<double>(0, 1)(rng) < cfg.error_rate) {
    status = 500;
  }
  if (cfg.strict_model && !requested.empty() && !served && status < 400) status = 404;
  if (status >= 400 && status <= 599) {
    plan.error =
        ErrorBody(cfg.engine, status, job.legacy, requested.empty() ? job.model : requested,
                  job.prompt_tokens, job.completion_tokens, cfg.max_model_len);
  }
  return plan;
}

}  // namespace infertap::sim
