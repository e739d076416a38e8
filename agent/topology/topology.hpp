// The topology seam (docs/attribution.md, "Topology"): what this node traces and how it labels
// it, as one immutable value, and the interface of everything that produces one (flags and
// --config today; a Kubernetes watch later).
//
// A Topology is: pools (identified by namespace/name) → their endpoints on this node (pod, its
// namespace, the traced (IP, port), the engine, where its /metrics is), the model-name mapping
// (target_model_name → model_name, per pool and for every pool), and for each part where it came
// from ("flags", "config FILE", "kubernetes ..."). Consumers never patch one: a source publishes
// a new snapshot, the agent diffs it against what it applied (agent/core/agent.hpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/common/status.hpp"
#include "agent/poller/engines.hpp"

namespace infertap::topology {

// One model server endpoint of a pool on this node.
struct TopologyEndpoint {
  Endpoint address;  // traced (IP, port); the wildcard (any local address) only in standalone
  std::string pod;   // record `pod`, label `model_server_pod` (standalone: the scrape address)
  std::string ns;    // the pod's namespace ("" standalone)
  poller::Engine engine = poller::Engine::kAuto;  // kAuto: detected from the scrape
  std::string metrics_address;                    // host:port of the model server's metrics
  std::string metrics_path = "/metrics";
  std::string origin;  // where this endpoint came from
  // Kubernetes: the pod's metadata.uid (where its cgroup is, agent/capture/pod_cgroup.hpp); ""
  // standalone.
  std::string pod_uid;
  bool operator==(const TopologyEndpoint&) const = default;
};

// target_model_name → model_name. An ambiguous target (two different client names) maps to
// itself (docs/attribution.md, "Model names").
struct ModelName {
  std::string model;
  std::string origin;
  bool ambiguous = false;
  bool operator==(const ModelName&) const = default;
};
using ModelNames = std::map<std::string, ModelName>;  // by target

struct TopologyPool {
  std::string ns, name;  // identity
  std::string label;     // value of the `name`/`pool` label; normally `name`
  std::string origin;
  std::vector<TopologyEndpoint> endpoints;
  ModelNames models;  // this pool's mapping; wins over Topology::models
  std::string Key() const { return ns.empty() ? name : ns + "/" + name; }
  bool operator==(const TopologyPool&) const = default;
};

struct Topology {
  uint64_t version = 0;  // set by the source, increasing; not part of the content
  std::string source;    // the source's name ("static", "kubernetes", ...)
  std::vector<TopologyPool> pools;
  ModelNames models;               // mapping for every pool (e.g. --model-alias)
  std::vector<std::string> notes;  // conflicts the source resolved, for logs and /v1/state

  bool SameContent(const Topology& o) const {
    return pools == o.pools && models == o.models && notes == o.notes;
  }
  // model_name for `target` in pool `pool_index`: the pool's mapping, then the global one,
  // else the target itself.
  std::string ModelNameFor(size_t pool_index, const std::string& target) const;
};

// Adds target → model from `origin` to `names`; a second, different model for the same target
// makes the entry ambiguous (it then maps to the target itself).
void AddModelName(ModelNames& names, const std::string& target, const std::string& model,
                  const std::string& origin);

// Producers of topologies. Start() delivers the current topology (when it has one) and every
// later change to `on_change`, serialized, in version order, on the source's own thread or on
// the caller's for a synchronous source; consumers must return promptly (they hand the snapshot
// over, they do not apply it in the callback).
class TopologySource {
 public:
  using OnChange = std::function<void(std::shared_ptr<const Topology>)>;
  virtual ~TopologySource() = default;
  virtual std::string Name() const = 0;
  virtual Status Start(OnChange on_change) = 0;
  virtual void Stop() = 0;
  // The latest topology, or null before the first.
  virtual std::shared_ptr<const Topology> Current() const = 0;
};

// A source fed from outside: Publish() hands it a new topology (any thread). Used by sources
// that compute topologies elsewhere (an adapter for a watch) and by tests.
class PushTopologySource : public TopologySource {
 public:
  explicit PushTopologySource(std::string name) : name_(std::move(name)) {}
  std::string Name() const override { return name_; }
  Status Start(OnChange on_change) override;
  void Stop() override;
  std::shared_ptr<const Topology> Current() const override;
  // Assigns the next version and the source name, stores it, and notifies when started.
  void Publish(Topology topology);

 private:
  const std::string name_;
  mutable std::mutex mu_;
  OnChange on_change_;
  std::shared_ptr<const Topology> current_;
  uint64_t next_version_ = 1;
};

}  // namespace infertap::topology
