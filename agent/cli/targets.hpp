// The target flags shared by run, capture and replay: which endpoints are model servers, and
// which side of their connections is traced.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/common/status.hpp"

namespace infertap::cli {

enum class CaptureSide { kServer, kClient, kBoth };

struct TargetArgs {
  std::vector<std::string> targets;  // HOST:PORT; empty → ":8000" (vLLM's default port)
  std::string side = "server";
};

const char* CaptureSideName(const std::string& side);
void AddTargetOptions(CLI::App& cmd, TargetArgs& args);
Status ResolveTargets(const TargetArgs& args, std::vector<TracedEndpoint>* out);

}  // namespace infertap::cli
