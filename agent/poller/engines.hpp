// Model-server engines and the /metrics series the pool gauges come from (docs/pool-gauges.md).
//
// Pure logic over parsed exposition: which engine a page comes from, and that pod's queue,
// running and kv-cache values. Several series of one family (vLLM data parallel: one per
// `engine` label; one per model) are summed for queue/running and averaged for kv utilization.
// Non-finite sample values (NaN from a server with nothing to report) are ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/promtext/promtext.hpp"

namespace infertap::poller {

enum class Engine : uint8_t {
  kAuto,  // detect from the series present
  kVllm,
  kSglang,
  kTgi,
  kLlamaCpp,
  kTritonTrtllm,
  kTrtllmServe,
};

// Names as used by --engine and the pod label inference.networking.k8s.io/engine-type:
// vllm, sglang, tgi, llama.cpp, triton-trtllm, trtllm-serve; "" and "auto" mean kAuto.
std::optional<Engine> ParseEngine(std::string_view name);
std::string_view EngineName(Engine engine);

struct PodStats {
  Engine engine = Engine::kAuto;               // the engine the values were read as (never kAuto)
  double queue = 0;                            // requests waiting
  double running = 0;                          // requests being processed
  std::optional<double> kv_cache_utilization;  // 0..1; absent for engines without it (TGI)
};

struct ExtractResult {
  std::optional<PodStats> stats;
  std::string error;  // why stats is empty
};

// kAuto when none of the known engines' queue/running series are on the page.
Engine DetectEngine(const std::vector<promtext::Family>& families);

// Reads the page as `engine` (kAuto: detect first). Fails when the queue or running series is
// missing, so a page from the wrong server is an error rather than a silent zero.
ExtractResult ExtractPodStats(const std::vector<promtext::Family>& families, Engine engine);

}  // namespace infertap::poller
