// The target flags shared by run, capture and replay: which endpoints are model servers, and
// which side of their connections is traced.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/common/status.hpp"
#include "agent/pipeline/pipeline.hpp"

namespace infertap::cli {

enum class CaptureSide { kServer, kClient, kBoth };

struct TargetArgs {
  std::vector<std::string> targets;  // HOST:PORT; empty → ":8000" (vLLM's default port)
  std::string side = "server";
};

// Attribution and metric naming shared by run and replay (docs/attribution.md, docs/metrics.md,
// docs/cli.md).
struct AttributionArgs {
  std::string pool = "default";
  std::vector<std::string> model_alias;  // TARGET=MODEL
  std::string node;                      // default: $NODE_NAME, else the host name
  std::string metric_prefix = "inference_model";
  size_t max_models = 1000;
};

const char* CaptureSideName(const std::string& side);
void AddTargetOptions(CLI::App& cmd, TargetArgs& args);
// --ring-buffer-size for run and capture: a bad size is a usage error (exit 2) with one line
// saying why (docs/capture.md#loss-accounting), before anything is loaded.
void AddRingBufferOption(CLI::App& cmd, uint32_t& bytes);
Status ResolveTargets(const TargetArgs& args, std::vector<TracedEndpoint>* out);

void AddAttributionOptions(CLI::App& cmd, AttributionArgs& args);
// Builds pipeline options (aliases, node) and the endpoint → pool table from the flags.
Status ResolveAttribution(const AttributionArgs& args, const std::vector<TracedEndpoint>& eps,
                          PipelineOptions* options, std::vector<EndpointAttribution>* table);

}  // namespace infertap::cli
