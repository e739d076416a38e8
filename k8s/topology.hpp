// The node's view of the inference pools (docs/attribution.md, docs/kubernetes.md): which
// (podIP, port) endpoints on this node belong to which InferencePool, with which engine, and how
// a target model name maps back to the client-facing model name. Pure: computed from the
// reflectors' stores (or a test's hand-made objects), no I/O.
//
// Membership: a pod is an endpoint of a pool when it is in the pool's namespace, its labels
// contain every selector pair (an empty selector selects nothing: a pool with no selector is a
// misconfiguration, and taking every pod in the namespace would capture unrelated traffic), its
// Ready condition is True, it has no deletionTimestamp and it has a podIP. Each of the pool's
// target ports is one endpoint (data-parallel ranks listen on several ports). The engine comes
// from the pod label `inference.networking.k8s.io/engine-type`, else "auto" (detected from the
// scrape). Metrics are scraped from the endpoint's own port at /metrics.
//
// Conflicts are resolved deterministically and reported in Topology::notes:
//  - the same namespace/name in both API groups: the v1 pool wins;
//  - one (podIP, port) selected by two pools (overlapping selectors): the first pool in
//    (namespace, name) order keeps it, because each request must be counted exactly once.
//
// Pool label values (the `name` label of the inference_pool_* series): pool names are unique only
// per namespace, and the exposition must never carry two series with identical labels. Decision:
// a pool's label is its plain name (what upstream dashboards expect) unless another watched pool
// in another namespace has the same name; then every pool with that name is labelled
// "namespace/name" ('/' cannot occur in a Kubernetes name, so the two forms never collide). The
// decision is made over all watched pools, not only those with endpoints on this node, so every
// agent in the cluster labels a given pool the same way.
//
// Model names (docs/attribution.md): per pool, target → client-facing model from
//  - InferenceModel: spec.modelName M with spec.targetModels[].name T (each T → M); with no
//    targets the model is served under its own name (M → M);
//  - InferenceModelRewrite: a rule with exactly one exact match M maps each targets[].modelRewrite
//    T → M; a rule with no match (catch-all) or several matches makes its targets ambiguous;
//  - static aliases (--model-alias T=M), used for a target no CRD maps in that pool.
// Two different client names for one target (across all sources of a pool) are ambiguous: the
// target maps to itself. A target nothing maps is its own model name.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "k8s/objects.hpp"

namespace infertap::k8s {

inline constexpr char kEngineTypeLabel[] = "inference.networking.k8s.io/engine-type";

struct Endpoint {
  std::string pod, ns;
  std::string ip;
  uint16_t port = 0;
  std::string engine = "auto";
  uint16_t metrics_port = 0;
  std::string metrics_path = "/metrics";
  std::string uid;  // the pod's metadata.uid (its cgroup's name, agent/capture/pod_cgroup.hpp)
  bool operator==(const Endpoint&) const = default;
};

struct PoolModels {
  std::map<std::string, std::string> target_to_model;  // ambiguous targets map to themselves
  std::set<std::string> ambiguous;
  bool operator==(const PoolModels&) const = default;
};

struct Pool {
  std::string ns, name;
  std::string label;        // exposition `name` label value (see above)
  std::string api_version;  // group/version the pool came from
  Labels selector;
  std::vector<uint16_t> ports;
  std::vector<Endpoint> endpoints;  // this node's, sorted by (pod, port)
  PoolModels models;
  std::string Key() const { return ns + "/" + name; }
  bool operator==(const Pool&) const = default;
};

struct Topology {
  uint64_t version = 0;            // bumped by the watcher on every change; not part of equality
  std::vector<Pool> pools;         // sorted by (namespace, name)
  std::vector<std::string> notes;  // conflicts resolved (see above), for logs and /v1/state

  const Pool* FindPool(const std::string& ns, const std::string& name) const;
  // The pool and endpoint serving (ip, port), or nullptr.
  const Pool* PoolForEndpoint(const std::string& ip, uint16_t port,
                              const Endpoint** endpoint = nullptr) const;
  // Client-facing model name for `target` in the pool ns/name (the target itself when nothing
  // maps it, or the mapping is ambiguous).
  std::string ModelName(const std::string& ns, const std::string& pool,
                        const std::string& target) const;
  bool SameContent(const Topology& o) const { return pools == o.pools && notes == o.notes; }
};

struct TopologyInputs {
  std::string node;  // when set, pods on other nodes are ignored (the watch already filters)
  std::vector<PodInfo> pods;
  std::vector<PoolInfo> pools;  // both API versions
  std::vector<ModelInfo> models;
  std::vector<RewriteInfo> rewrites;
  std::map<std::string, std::string> aliases;  // --model-alias TARGET=MODEL
};

Topology ComputeTopology(const TopologyInputs& in);

// True when every selector pair is in `labels` (and the selector is not empty).
bool SelectorMatches(const Labels& selector, const Labels& labels);

}  // namespace infertap::k8s
