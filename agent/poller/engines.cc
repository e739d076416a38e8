#include "agent/poller/engines.hpp"

#include <array>
#include <cmath>

namespace infertap::poller {
namespace {

// One series selector: a sample name, optionally narrowed by one label value (Triton puts all
// request counts in one family, told apart by request_type).
struct Selector {
  std::string_view name;
  std::string_view label = {};
  std::string_view label_value = {};
};

struct EngineSeries {
  Engine engine;
  std::string_view name;
  Selector queue;
  Selector running;
  // Tried in order; the first one present wins (vLLM renamed gpu_cache_usage_perc in V1).
  std::array<Selector, 2> kv;
};

constexpr std::array<EngineSeries, 6> kEngines = {{
    {Engine::kVllm,
     "vllm",
     {"vllm:num_requests_waiting"},
     {"vllm:num_requests_running"},
     {{{"vllm:kv_cache_usage_perc"}, {"vllm:gpu_cache_usage_perc"}}}},
    {Engine::kSglang,
     "sglang",
     {"sglang:num_queue_reqs"},
     {"sglang:num_running_reqs"},
     {{{"sglang:token_usage"}, {}}}},
    {Engine::kTgi, "tgi", {"tgi_queue_size"}, {"tgi_batch_current_size"}, {{{}, {}}}},
    {Engine::kLlamaCpp,
     "llama.cpp",
     {"llamacpp:requests_deferred"},
     {"llamacpp:requests_processing"},
     {{{"llamacpp:kv_cache_usage_ratio"}, {}}}},
    {Engine::kTritonTrtllm,
     "triton-trtllm",
     {"nv_trt_llm_request_metrics", "request_type", "waiting"},
     {"nv_trt_llm_request_metrics", "request_type", "scheduled"},
     {{{"nv_trt_llm_kv_cache_block_metrics", "kv_cache_block_type", "fraction"}, {}}}},
    {Engine::kTrtllmServe,
     "trtllm-serve",
     {"trtllm_num_requests_waiting"},
     {"trtllm_num_requests_running"},
     {{{"trtllm_kv_cache_utilization"}, {}}}},
}};

struct Collected {
  double sum = 0;
  size_t count = 0;  // finite samples
  bool present = false;
};

Collected Collect(const std::vector<promtext::Family>& families, const Selector& sel) {
  Collected c;
  if (sel.name.empty()) return c;
  for (const auto& f : families) {
    // A sample's name starts with its family's name; skip the rest cheaply.
    if (sel.name.substr(0, f.name.size()) != f.name) continue;
    for (const auto& s : f.samples) {
      if (s.name != sel.name) continue;
      if (!sel.label.empty()) {
        const std::string* v = s.Label(sel.label);
        if (!v || *v != sel.label_value) continue;
      }
      c.present = true;
      if (!std::isfinite(s.value)) continue;
      c.sum += s.value;
      ++c.count;
    }
  }
  return c;
}

const EngineSeries* Find(Engine engine) {
  for (const auto& e : kEngines) {
    if (e.engine == engine) return &e;
  }
  return nullptr;
}

std::string Describe(const Selector& s) {
  std::string out(s.name);
  if (!s.label.empty())
    out += "{" + std::string(s.label) + "=\"" + std::string(s.label_value) + "\"}";
  return out;
}

}  // namespace

std::optional<Engine> ParseEngine(std::string_view name) {
  if (name.empty() || name == "auto") return Engine::kAuto;
  if (name == "llamacpp") return Engine::kLlamaCpp;
  for (const auto& e : kEngines) {
    if (e.name == name) return e.engine;
  }
  return std::nullopt;
}

std::string_view EngineName(Engine engine) {
  const EngineSeries* e = Find(engine);
  return e ? e->name : "auto";
}

Engine DetectEngine(const std::vector<promtext::Family>& families) {
  // Prefer an engine with both series, so a page that happens to carry one foreign gauge does
  // not win over the real engine.
  Engine partial = Engine::kAuto;
  for (const auto& e : kEngines) {
    bool q = Collect(families, e.queue).present;
    bool r = Collect(families, e.running).present;
    if (q && r) return e.engine;
    if ((q || r) && partial == Engine::kAuto) partial = e.engine;
  }
  return partial;
}

ExtractResult ExtractPodStats(const std::vector<promtext::Family>& families, Engine engine) {
  ExtractResult out;
  if (engine == Engine::kAuto) engine = DetectEngine(families);
  const EngineSeries* e = Find(engine);
  if (!e) {
    out.error =
        "no known engine series (vllm, sglang, tgi, llama.cpp, triton-trtllm, "
        "trtllm-serve) on the page";
    return out;
  }
  Collected q = Collect(families, e->queue);
  Collected r = Collect(families, e->running);
  if (q.count == 0 || r.count == 0) {
    out.error = std::string(e->name) + ": no usable " +
                Describe(q.count == 0 ? e->queue : e->running) + " series";
    return out;
  }
  PodStats stats;
  stats.engine = engine;
  stats.queue = q.sum;
  stats.running = r.sum;
  for (const Selector& sel : e->kv) {
    Collected kv = Collect(families, sel);
    if (kv.count > 0) {
      stats.kv_cache_utilization = kv.sum / double(kv.count);
      break;
    }
  }
  out.stats = stats;
  return out;
}

}  // namespace infertap::poller
