#include "k8s/cluster_watch.hpp"

#include "agent/common/log.hpp"

namespace infertap::k8s {

std::vector<ResourceSpec> ClusterWatch::Resources(const ClusterWatchOptions& o) {
  std::vector<ResourceSpec> r;
  r.push_back({Kind::kPod, "/api/v1", "pods", o.ns, "spec.nodeName=" + o.node, false});
  r.push_back(
      {Kind::kPoolV1, "/apis/inference.networking.k8s.io/v1", "inferencepools", o.ns, "", true});
  r.push_back({Kind::kPoolV1Alpha2, "/apis/inference.networking.x-k8s.io/v1alpha2",
               "inferencepools", o.ns, "", true});
  r.push_back({Kind::kModel, "/apis/inference.networking.x-k8s.io/v1alpha2", "inferencemodels",
               o.ns, "", true});
  r.push_back({Kind::kRewrite, "/apis/inference.networking.x-k8s.io/v1alpha2",
               "inferencemodelrewrites", o.ns, "", true});
  return r;
}

ClusterWatch::ClusterWatch(RestClient& client, ClusterWatchOptions options, OnTopology on_topology)
    : options_(std::move(options)),
      on_topology_(std::move(on_topology)),
      current_(std::make_shared<Topology>()) {
  for (auto& spec : Resources(options_)) {
    reflectors_.push_back(
        std::make_unique<Reflector>(client, spec, options_.reflector, [this] { Recompute(); }));
  }
}

ClusterWatch::~ClusterWatch() { Stop(); }

Status ClusterWatch::Start() {
  if (options_.node.empty()) {
    return Status::Error(
        "kubernetes: the node name is not set (--node or NODE_NAME, from the downward API "
        "spec.nodeName)");
  }
  for (auto& r : reflectors_) r->Start();
  return Status::Ok();
}

void ClusterWatch::Stop() {
  for (auto& r : reflectors_) r->Stop();
}

std::shared_ptr<const Topology> ClusterWatch::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

bool ClusterWatch::synced() const {
  for (const auto& r : reflectors_) {
    if (!r->synced()) return false;
  }
  return true;
}

bool ClusterWatch::WaitSynced(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return synced_cv_.wait_for(lock, timeout, [this] { return published_; });
}

std::vector<std::pair<std::string, ReflectorStats>> ClusterWatch::Stats() const {
  std::vector<std::pair<std::string, ReflectorStats>> out;
  for (const auto& r : reflectors_) out.emplace_back(r->spec().Describe(), r->stats());
  return out;
}

void ClusterWatch::Recompute() {
  // Serialized: reflector threads call this concurrently; computing under the lock keeps the
  // published versions in order.
  std::lock_guard<std::mutex> compute(compute_mu_);
  if (!synced()) return;
  TopologyInputs in;
  in.node = options_.node;
  in.aliases = options_.aliases;
  for (const auto& r : reflectors_) {
    for (auto& o : r->Snapshot()) {
      if (auto* p = std::get_if<PodInfo>(&o)) {
        in.pods.push_back(std::move(*p));
      } else if (auto* pl = std::get_if<PoolInfo>(&o)) {
        in.pools.push_back(std::move(*pl));
      } else if (auto* m = std::get_if<ModelInfo>(&o)) {
        in.models.push_back(std::move(*m));
      } else if (auto* rw = std::get_if<RewriteInfo>(&o)) {
        in.rewrites.push_back(std::move(*rw));
      }
    }
  }
  auto next = std::make_shared<Topology>(ComputeTopology(in));
  std::shared_ptr<const Topology> prev = Current();
  bool first;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (published_ && next->SameContent(*prev)) return;
    next->version = prev->version + 1;
    current_ = next;
    first = !published_;
    published_ = true;
  }
  for (const auto& note : next->notes) {
    bool old = false;
    for (const auto& n : prev->notes) old |= n == note;
    if (!old) LOG_WARN("k8s: %s", note.c_str());
  }
  if (first) {
    LOG_INFO("k8s: initial sync done: %zu pools, node %s", next->pools.size(),
             options_.node.c_str());
    synced_cv_.notify_all();
  }
  if (on_topology_) on_topology_(next);
}

}  // namespace infertap::k8s
