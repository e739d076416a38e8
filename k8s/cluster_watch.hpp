// The Kubernetes topology source (docs/kubernetes.md): one reflector per watched resource —
// this node's pods (fieldSelector spec.nodeName), InferencePools in both API groups, and the
// optional InferenceModel / InferenceModelRewrite CRDs — and the Topology computed from their
// stores whenever one of them changes.
//
// Consumers read a versioned immutable snapshot (Current()) or get a callback with each new
// one. Nothing is published before every reflector has synced once (listed, or found its CRD
// missing), so the first topology is complete rather than a pods-without-pools transient; after
// that a new version is published only when the content changed. When the API server goes
// away, the last topology stays current (the reflectors retry with backoff).
//
// Recovery: the reflectors' backoff grows to 30 s, so on its own a reflector could look again
// up to 30 s after the API server is back. While any reflector is backing off, one probe per agent
// (GET /version, answered to every authenticated user, cheap for the server) asks every
// probe_interval (jittered) whether the server answers again; when it comes back after not
// answering, the sleeping reflectors retry at once (a reflector failing while the server
// answers keeps its own backoff), so the topology converges within about a second of the API's
// return at the cost of ~2 cheap requests a second per agent during an outage only
// (docs/kubernetes.md#api-server-outages).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "k8s/reflector.hpp"
#include "k8s/topology.hpp"

namespace infertap::k8s {

struct ClusterWatchOptions {
  std::string node;  // NODE_NAME; required (pods are watched only on this node)
  std::string ns;    // "" = all namespaces
  std::map<std::string, std::string> aliases;  // --model-alias
  ReflectorOptions reflector;
  // How often the recovery probe asks while a reflector backs off (0 = no probe).
  std::chrono::milliseconds probe_interval{500};
};

class ClusterWatch {
 public:
  // Called on a reflector thread with each new topology (serialized, in version order).
  using OnTopology = std::function<void(std::shared_ptr<const Topology>)>;
  ClusterWatch(RestClient& client, ClusterWatchOptions options, OnTopology on_topology = {});
  ~ClusterWatch();

  // Starts the reflectors; an error (nothing started) when options.node is empty.
  [[nodiscard]] Status Start();
  void Stop();

  // The latest published topology (version 0 and empty before the first sync).
  std::shared_ptr<const Topology> Current() const;
  bool synced() const;
  // Waits until every reflector synced once; false on timeout.
  bool WaitSynced(std::chrono::milliseconds timeout);
  std::vector<std::pair<std::string, ReflectorStats>> Stats() const;

  // The resources watched for `options` (exposed for tests and /v1/state).
  static std::vector<ResourceSpec> Resources(const ClusterWatchOptions& options);
  // Recovery probes sent so far (tests: no tight loop).
  uint64_t probes() const { return probes_.load(); }

 private:
  void Recompute();
  void ProbeLoop();
  bool ApiAnswers();

  const ClusterWatchOptions options_;
  const OnTopology on_topology_;
  RestClient& client_;
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::thread probe_thread_;
  std::atomic<bool> probe_stop_{false};
  std::atomic<uint64_t> probes_{0};
  std::mutex probe_mu_;
  std::condition_variable probe_cv_;
  std::mutex compute_mu_;  // serializes Recompute (and the callbacks, in version order)
  mutable std::mutex mu_;  // guards current_ and published_
  std::condition_variable synced_cv_;
  std::shared_ptr<const Topology> current_;
  bool published_ = false;
};

}  // namespace infertap::k8s
