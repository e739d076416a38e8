#include "sim_state.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace infertap::sim {

bool Admission::TryAdmit(const Ticket& t) {
  if (max_running_ <= 0) {
    running_gauge_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::lock_guard lock(mu_);
  if (running_ < max_running_ && queue_.empty()) {
    ++running_;
    running_gauge_.store(running_, std::memory_order_relaxed);
    return true;
  }
  queue_.push_back(t);
  waiting_gauge_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  return false;
}

void Admission::Release() {
  if (max_running_ <= 0) {
    running_gauge_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  Ticket next;
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) {
      --running_;
      running_gauge_.store(running_, std::memory_order_relaxed);
      return;
    }
    next = queue_.front();
    queue_.pop_front();
    waiting_gauge_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  }
  // Called outside the lock: delivery takes the worker's inbox lock.
  deliver_(next);
}

bool Admission::CancelWaiting(const Ticket& t) {
  std::lock_guard lock(mu_);
  auto it = std::find(queue_.begin(), queue_.end(), t);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  waiting_gauge_.store(static_cast<int>(queue_.size()), std::memory_order_relaxed);
  return true;
}

namespace {

// Python's float repr as prometheus_client prints it: "3.0", "0.4375", "1.7791919995e+09".
std::string PyFloat(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e16) {
    return std::to_string(static_cast<int64_t>(v)) + ".0";
  }
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, p) : "NaN";
}

void Family(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::string_view labels, std::string_view value) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(value).append("\n");
}

std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string RenderMetrics(const SimConfig& cfg, const Admission& adm, const Stats& stats) {
  double running = adm.running();
  double waiting = adm.waiting();
  double kv = cfg.kv_capacity_tokens > 0
                  ? std::min(1.0, static_cast<double>(stats.kv_tokens.load()) /
                                      static_cast<double>(cfg.kv_capacity_tokens))
                  : 0.0;
  double prompt = static_cast<double>(stats.prompt_tokens_total.load());
  double gen = static_cast<double>(stats.generation_tokens_total.load());
  std::string model = LabelValue(cfg.models[0]);
  std::string out;
  switch (cfg.engine) {
    case Engine::kVllm: {
      std::string l = "engine=\"0\",model_name=\"" + model + "\"";
      Family(out, "vllm:num_requests_running", "gauge",
             "Number of requests in model execution batches.", l, PyFloat(running));
      Family(out, "vllm:num_requests_waiting", "gauge",
             "Number of requests waiting to be processed.", l, PyFloat(waiting));
      Family(out, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
             l, PyFloat(kv));
      Family(out, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", l,
             PyFloat(prompt));
      Family(out, "vllm:generation_tokens_total", "counter",
             "Number of generation tokens processed.", l, PyFloat(gen));
      out += "# HELP vllm:request_success_total Count of successfully processed requests.\n";
      out += "# TYPE vllm:request_success_total counter\n";
      auto line = [&](std::string_view reason, const std::atomic<int64_t>& v) {
        out += "vllm:request_success_total{engine=\"0\",finished_reason=\"" + std::string(reason) +
               "\",model_name=\"" + model + "\"} " + PyFloat(static_cast<double>(v.load())) + "\n";
      };
      line("stop", stats.finished_stop);
      line("length", stats.finished_length);
      line("abort", stats.finished_abort);
      line("error", stats.finished_error);
      break;
    }
    case Engine::kSglang: {
      std::string l = "model_name=\"" + model + "\"";
      Family(out, "sglang:num_running_reqs", "gauge", "The number of running requests.", l,
             PyFloat(running));
      Family(out, "sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.",
             l, PyFloat(waiting));
      Family(out, "sglang:token_usage", "gauge", "The token usage.", l, PyFloat(kv));
      Family(out, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", l,
             PyFloat(prompt));
      Family(out, "sglang:generation_tokens_total", "counter",
             "Number of generation tokens processed.", l, PyFloat(gen));
      break;
    }
    case Engine::kTgi: {
      // metrics-exporter-prometheus: TYPE lines only, integer values, blank line between families.
      auto fam = [&](std::string_view name, std::string_view type, int64_t v) {
        out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
        out.append(name).append(" ").append(std::to_string(v)).append("\n\n");
      };
      fam("tgi_queue_size", "gauge", static_cast<int64_t>(waiting));
      fam("tgi_batch_current_size", "gauge", static_cast<int64_t>(running));
      fam("tgi_request_generated_tokens_total", "counter", static_cast<int64_t>(gen));
      fam("tgi_request_input_length_total", "counter", static_cast<int64_t>(prompt));
      break;
    }
    case Engine::kLlamaCpp: {
      Family(out, "llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.",
             "", std::to_string(static_cast<int64_t>(prompt)));
      Family(out, "llamacpp:tokens_predicted_total", "counter",
             "Number of generation tokens processed.", "",
             std::to_string(static_cast<int64_t>(gen)));
      Family(out, "llamacpp:kv_cache_usage_ratio", "gauge",
             "KV-cache usage. 1 means 100 percent usage.", "", PyFloat(kv));
      Family(out, "llamacpp:requests_processing", "gauge", "Number of requests processing.", "",
             std::to_string(static_cast<int64_t>(running)));
      Family(out, "llamacpp:requests_deferred", "gauge", "Number of requests deferred.", "",
             std::to_string(static_cast<int64_t>(waiting)));
      break;
    }
  }
  return out;
}

}  // namespace infertap::sim
