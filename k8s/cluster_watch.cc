#include "k8s/cluster_watch.hpp"

#include <nlohmann/json.hpp>
#include <random>

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
      client_(client),
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
  if (options_.probe_interval.count() > 0 && !probe_thread_.joinable()) {
    probe_stop_.store(false);
    probe_thread_ = std::thread([this] { ProbeLoop(); });
  }
  return Status::Ok();
}

void ClusterWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(probe_mu_);
    probe_stop_.store(true);
  }
  probe_cv_.notify_all();
  if (probe_thread_.joinable()) probe_thread_.join();
  for (auto& r : reflectors_) r->Stop();
}

bool ClusterWatch::ApiAnswers() {
  // A prompt 200 with the version object: a server answering 500s, garbage, an HTML error
  // page or only after seconds is not back.
  // An answer slower than kSlowAnswer is a server in trouble, not one that is back.
  constexpr auto kSlowAnswer = std::chrono::milliseconds(2000);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult r = client_.Get("/version", &probe_stop_);
  probes_.fetch_add(1);
  if (std::chrono::steady_clock::now() - t0 > kSlowAnswer) return false;
  if (!r.ok()) return false;
  auto j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("gitVersion");
}

void ClusterWatch::ProbeLoop() {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.75, 1.0);
  bool was_down = false;
  while (!probe_stop_.load()) {
    {
      std::unique_lock<std::mutex> lock(probe_mu_);
      auto d = std::chrono::milliseconds(
          static_cast<int64_t>(static_cast<double>(options_.probe_interval.count()) * jitter(rng)));
      probe_cv_.wait_for(lock, d, [this] { return probe_stop_.load(); });
    }
    if (probe_stop_.load()) break;
    bool any_failing = false;
    for (const auto& r : reflectors_) any_failing |= r->backing_off();
    if (!any_failing) {
      was_down = false;
      continue;
    }
    if (!ApiAnswers()) {
      was_down = true;
      continue;
    }
    // The server answers while a reflector backs off: that failure is the reflector's own (a
    // 403, a bad object) and keeps its backoff. Only a return from an outage cuts the sleeps short.
    if (!was_down) continue;
    LOG_INFO("k8s: the API server answers again; retrying the watches now");
    was_down = false;
    for (const auto& r : reflectors_) {
      if (r->backing_off()) r->Wake();
    }
  }
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
