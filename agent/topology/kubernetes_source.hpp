// The Kubernetes topology source (docs/kubernetes.md): a thin adapter from k8s::ClusterWatch
// snapshots (this node's pods, the InferencePools, InferenceModels and InferenceModelRewrites)
// to the agent's Topology. Everything Kubernetes-specific — membership, conflicts, pool labels,
// the model-name mapping — is decided in k8s/topology.hpp; this file only translates:
//  - pool: namespace/name, its exposition label, origin "kubernetes InferencePool NS/NAME (G/V)";
//  - endpoint: (podIP, port), pod, namespace, engine (the engine-type label, or auto), metrics at
//    podIP:metrics_port (the endpoint's own port when unset) and the metrics path;
//  - models: the pool's target → model mapping (ambiguous targets map to themselves); the
//    --model-alias pairs also go into the topology-wide mapping, as the fallback for a target
//    the pool does not map.
// The first topology is published after the first complete sync of every watched resource;
// later ones on each content change. When the API server goes away the last one stays.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "agent/topology/topology.hpp"
#include "k8s/cluster_watch.hpp"
#include "k8s/rest_client.hpp"

namespace infertap::topology {

// Translates one k8s snapshot. `aliases` are the --model-alias pairs (TARGET → MODEL).
Topology FromKubernetes(const k8s::Topology& t, const std::map<std::string, std::string>& aliases);

// Parses --model-alias TARGET=MODEL values; a usage error for a bad one.
Status ParseModelAliases(const std::vector<std::string>& values,
                         std::map<std::string, std::string>* out);

class KubernetesTopologySource : public TopologySource {
 public:
  // `client` must outlive the source.
  KubernetesTopologySource(k8s::RestClient& client, k8s::ClusterWatchOptions options);
  ~KubernetesTopologySource() override;

  std::string Name() const override { return "kubernetes"; }
  // Starts the watch; an error when no node name is set. Topologies arrive on a reflector
  // thread.
  Status Start(OnChange on_change) override;
  void Stop() override;
  std::shared_ptr<const Topology> Current() const override { return push_.Current(); }

  k8s::ClusterWatch& watch() { return watch_; }

 private:
  const std::map<std::string, std::string> aliases_;
  PushTopologySource push_{"kubernetes"};
  k8s::ClusterWatch watch_;
};

}  // namespace infertap::topology
