// The standalone topology (docs/attribution.md, "Standalone mode"): from `--target`/`--pool`/
// `--engine`/`--model-server-metrics-path`/`--model-alias`, or from `--config FILE`. It never
// changes while the agent runs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/topology/topology.hpp"

namespace infertap::topology {

struct StaticTopologyOptions {
  std::vector<std::string> targets;  // HOST:PORT; empty (and no config) → ":8000"
  std::string pool = "default";
  std::string engine = "auto";
  std::string metrics_path = "/metrics";  // for --target endpoints; --config has its own
  std::vector<std::string> model_alias;   // TARGET=MODEL, every pool
  std::string config;                     // --config FILE; exclusive with targets
};

// Validates the options and builds the topology. Every error is a usage error (bad flag or
// config file) with a one-line message.
Status BuildStaticTopology(const StaticTopologyOptions& options, Topology* out);

// The address to scrape for a traced endpoint: a wildcard means "this host".
std::string ScrapeAddress(const Endpoint& e);

class StaticTopologySource : public TopologySource {
 public:
  // Null with *status set when the options are invalid.
  static std::unique_ptr<StaticTopologySource> Create(const StaticTopologyOptions& options,
                                                      Status* status);
  std::string Name() const override { return "static"; }
  Status Start(OnChange on_change) override;
  void Stop() override {}
  std::shared_ptr<const Topology> Current() const override { return topology_; }

 private:
  explicit StaticTopologySource(std::shared_ptr<const Topology> t) : topology_(std::move(t)) {}
  const std::shared_ptr<const Topology> topology_;
};

}  // namespace infertap::topology
