#include "agent/cli/targets.hpp"

#include <unistd.h>

#include <charconv>
#include <cstdlib>

#include "agent/metrics/metrics.hpp"

namespace infertap::cli {

const char* CaptureSideName(const std::string& side) { return side.c_str(); }

void AddRingBufferOption(CLI::App& cmd, uint32_t& bytes) {
  cmd.add_option(
         "--ring-buffer-size", bytes,
         "BPF ring buffer bytes (power of two, >= " + std::to_string(IT_RING_MIN_BYTES) + ")")
      ->check(CLI::Validator(
          [](std::string& value) -> std::string {
            uint64_t n = 0;
            auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || end != value.data() + value.size())
              return "ring buffer size must be a number of bytes, got " + value;
            return CheckRingBufferSize(n);
          },
          "POWER_OF_TWO"))
      ->capture_default_str();
}

void AddTargetOptions(CLI::App& cmd, TargetArgs& args) {
  cmd.add_option("-t,--target", args.targets,
                 "Model-server endpoint HOST:PORT, [V6]:PORT or :PORT for any address "
                 "(repeatable; default :8000)");
  cmd.add_option("--capture-side", args.side,
                 "Trace the model server's own sockets (server), the upstream sockets of "
                 "clients/gateways connecting to it (client), or both")
      ->check(CLI::IsMember({"server", "client", "both"}))
      ->capture_default_str();
}

Status ResolveTargets(const TargetArgs& args, std::vector<TracedEndpoint>* out) {
  uint32_t roles = IT_ROLE_SERVER;
  if (args.side == "client") roles = IT_ROLE_CLIENT;
  if (args.side == "both") roles = IT_ROLE_SERVER | IT_ROLE_CLIENT;
  std::vector<std::string> targets = args.targets;
  if (targets.empty()) targets.push_back(":8000");
  out->clear();
  for (const std::string& t : targets) {
    std::string err;
    auto ep = ParseEndpoint(t, &err);
    if (!ep) return Status::Error(err);
    out->push_back(TracedEndpoint{*ep, roles, 0});
  }
  return Status::Ok();
}

void AddAttributionOptions(CLI::App& cmd, AttributionArgs& args) {
  cmd.add_option("--pool", args.pool, "Pool name for the targets (label `name` of pool metrics)")
      ->capture_default_str();
  cmd.add_option("--model-alias", args.model_alias,
                 "TARGET=MODEL: report requests for target model TARGET under model_name MODEL "
                 "(repeatable)");
  cmd.add_option(
      "--node", args.node,
      "Node name: records' `node`; in Kubernetes mode also the node whose pods are watched "
      "(default: $NODE_NAME; standalone falls back to the host name)");
  cmd.add_option("--metric-prefix", args.metric_prefix,
                 "Per-model metric family: inference_model or inference_objective")
      ->check(CLI::IsMember({"inference_model", "inference_objective"}))
      ->capture_default_str();
  cmd.add_option("--max-models", args.max_models,
                 "Distinct model label pairs before folding into __other__")
      ->check(CLI::Range(size_t(1), size_t(1000000)))
      ->capture_default_str();
}

Status ResolveAttribution(const AttributionArgs& args, const std::vector<TracedEndpoint>& eps,
                          PipelineOptions* options, std::vector<EndpointAttribution>* table) {
  if (args.pool.empty()) return Status::Error("--pool must not be empty");
  for (const std::string& a : args.model_alias) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      return Status::Error("invalid --model-alias '" + a + "': expected TARGET=MODEL");
    options->model_alias[a.substr(0, eq)] = a.substr(eq + 1);
  }
  options->node = args.node;
  if (options->node.empty()) {
    if (const char* n = std::getenv("NODE_NAME"); n && *n) {
      options->node = n;
    } else {
      char host[256] = {};
      if (gethostname(host, sizeof(host) - 1) == 0) options->node = host;
    }
  }
  table->clear();
  for (const TracedEndpoint& e : eps) table->push_back({e.endpoint, args.pool, "", ""});
  return Status::Ok();
}

}  // namespace infertap::cli
