// Turns one parsed HTTP request into what the simulator will do with it: the response to render
// (a Job), its timing, and the faults the test asked for through x-sim-* headers.
//
// Token accounting lives here and is documented in test/sim/README.md; tests compare agent
// output against these numbers, so every rule must stay deterministic.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>

#include "http_request.hpp"
#include "sim_config.hpp"
#include "wire_format.hpp"

namespace infertap::sim {

struct Plan {
  Job job;
  int64_t ttft_ns = 0;
  int64_t itl_ns = 0;
  int midstream_error_after = -1;  // tokens before the mid-stream error event; -1 = none
  int abort_after = -1;            // tokens before an abortive close (RST); -1 = none
  // When error.status != 0 the request is answered at once with this body, no generation.
  ErrorResponse error{0, {}};
};

// Whitespace-separated words in `s` (the simulator's stand-in for a tokenizer).
int CountWords(std::string_view s);

// `seq` makes the response id unique; `rng` drives --error-rate.
Plan MakePlan(const HttpRequest& req, Endpoint endpoint, const SimConfig& cfg, uint64_t seq,
              std::mt19937_64& rng, int64_t unix_now);

}  // namespace infertap::sim
