#include "agent/topology/kubernetes_source.hpp"

#include "agent/common/log.hpp"

namespace infertap::topology {

Topology FromKubernetes(const k8s::Topology& k, const std::map<std::string, std::string>& aliases) {
  Topology t;
  t.source = "kubernetes";
  t.notes = k.notes;
  for (const auto& [target, model] : aliases) AddModelName(t.models, target, model, "flags");
  for (const k8s::Pool& kp : k.pools) {
    TopologyPool p;
    p.ns = kp.ns;
    p.name = kp.name;
    p.label = kp.label.empty() ? kp.name : kp.label;
    p.origin = "kubernetes InferencePool " + kp.Key() + " (" + kp.api_version + ")";
    for (const k8s::Endpoint& ke : kp.endpoints) {
      std::string err;
      std::string host = ke.ip.find(':') != std::string::npos ? "[" + ke.ip + "]" : ke.ip;
      auto addr = ParseEndpoint(host + ":" + std::to_string(ke.port), &err);
      if (!addr || addr->is_wildcard()) {
        t.notes.push_back("pod " + ke.ns + "/" + ke.pod + ": unusable podIP '" + ke.ip +
                          "' skipped (" + (addr ? "wildcard" : err) + ")");
        continue;
      }
      TopologyEndpoint e;
      e.address = *addr;
      e.pod = ke.pod;
      e.ns = ke.ns;
      e.pod_uid = ke.uid;
      auto engine = poller::ParseEngine(ke.engine);
      if (!engine) {
        t.notes.push_back("pod " + ke.ns + "/" + ke.pod + ": unknown engine-type '" + ke.engine +
                          "', detecting it from the scrape");
        engine = poller::Engine::kAuto;
      }
      e.engine = *engine;
      const uint16_t mport = ke.metrics_port ? ke.metrics_port : ke.port;
      e.metrics_address = host + ":" + std::to_string(mport);
      e.metrics_path = ke.metrics_path.empty() ? "/metrics" : ke.metrics_path;
      e.origin = "kubernetes pod " + ke.ns + "/" + ke.pod;
      p.endpoints.push_back(std::move(e));
    }
    for (const auto& [target, model] : kp.models.target_to_model) {
      if (kp.models.ambiguous.count(target)) {
        p.models[target] = ModelName{target, "kubernetes (ambiguous)", true};
      } else {
        p.models[target] = ModelName{model, "kubernetes", false};
      }
    }
    for (const std::string& target : kp.models.ambiguous)
      p.models.try_emplace(target, ModelName{target, "kubernetes (ambiguous)", true});
    t.pools.push_back(std::move(p));
  }
  return t;
}

Status ParseModelAliases(const std::vector<std::string>& values,
                         std::map<std::string, std::string>* out) {
  for (const std::string& a : values) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      return Status::Error("invalid --model-alias '" + a + "': expected TARGET=MODEL");
    (*out)[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return Status::Ok();
}

KubernetesTopologySource::KubernetesTopologySource(k8s::RestClient& client,
                                                   k8s::ClusterWatchOptions options)
    : aliases_(options.aliases),
      watch_(client, std::move(options), [this](std::shared_ptr<const k8s::Topology> k) {
        Topology t = FromKubernetes(*k, aliases_);
        size_t endpoints = 0;
        for (const auto& p : t.pools) endpoints += p.endpoints.size();
        LOG_INFO("kubernetes topology v%llu: %zu pools, %zu endpoints on this node",
                 static_cast<unsigned long long>(k->version), t.pools.size(), endpoints);
        push_.Publish(std::move(t));
      }) {}

KubernetesTopologySource::~KubernetesTopologySource() { Stop(); }

Status KubernetesTopologySource::Start(OnChange on_change) {
  if (Status s = push_.Start(std::move(on_change)); !s) return s;
  return watch_.Start();
}

void KubernetesTopologySource::Stop() {
  watch_.Stop();
  push_.Stop();
}

}  // namespace infertap::topology
