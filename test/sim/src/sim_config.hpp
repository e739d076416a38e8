// Runtime configuration of infertap-sim (filled from the command line by sim_main.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wire_format.hpp"

namespace infertap::sim {

// What GET /metrics does; switchable at run time through POST /sim/metrics-mode.
enum class MetricsMode { kOk, kGarbage, kSlow, kDown };

struct SimConfig {
  std::vector<std::string> listen = {"127.0.0.1:8000"};
  Engine engine = Engine::kVllm;
  // models[0] is the base model; any further names are served like LoRA adapters.
  std::vector<std::string> models = {"meta-llama/Llama-3.1-8B-Instruct"};
  bool strict_model = false;  // unknown `model` -> 404 (vLLM's behaviour) instead of base model
  int default_tokens = 16;
  double ttft_ms = 0;
  double itl_ms = 0;
  int64_t cpu_per_token_ns = 0;
  int threads = 1;
  int max_running = 256;  // vLLM's default max_num_seqs; 0 = unlimited
  int64_t kv_capacity_tokens = 65536;
  int max_model_len = 131072;
  MetricsMode metrics_mode = MetricsMode::kOk;
  double metrics_delay_ms = 3000;  // for MetricsMode::kSlow
  bool tgi_data_no_space = false;
  double error_rate = 0;  // fraction of generation requests answered with 500
  uint64_t seed = 1;
};

}  // namespace infertap::sim
