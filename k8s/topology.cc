#include "k8s/topology.hpp"

#include <algorithm>
#include <tuple>

namespace infertap::k8s {
namespace {

constexpr char kV1[] = "inference.networking.k8s.io/v1";

// Collects target → candidate client names for one pool.
struct MappingBuilder {
  std::map<std::string, std::set<std::string>> candidates;
  std::set<std::string> forced_ambiguous;

  void Add(const std::string& target, const std::string& model) {
    if (!target.empty() && !model.empty()) candidates[target].insert(model);
  }
  PoolModels Build(const std::map<std::string, std::string>& aliases) const {
    PoolModels pm;
    for (const auto& [target, models] : candidates) {
      if (models.size() == 1 && !forced_ambiguous.count(target)) {
        pm.target_to_model[target] = *models.begin();
      } else {
        pm.target_to_model[target] = target;
        pm.ambiguous.insert(target);
      }
    }
    for (const auto& target : forced_ambiguous) {
      if (!pm.target_to_model.count(target)) {
        pm.target_to_model[target] = target;
        pm.ambiguous.insert(target);
      }
    }
    for (const auto& [target, model] : aliases) pm.target_to_model.emplace(target, model);
    return pm;
  }
};

}  // namespace

bool SelectorMatches(const Labels& selector, const Labels& labels) {
  if (selector.empty()) return false;
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

const Pool* Topology::FindPool(const std::string& ns, const std::string& name) const {
  for (const auto& p : pools) {
    if (p.ns == ns && p.name == name) return &p;
  }
  return nullptr;
}

const Pool* Topology::PoolForEndpoint(const std::string& ip, uint16_t port,
                                      const Endpoint** endpoint) const {
  for (const auto& p : pools) {
    for (const auto& e : p.endpoints) {
      if (e.ip == ip && e.port == port) {
        if (endpoint != nullptr) *endpoint = &e;
        return &p;
      }
    }
  }
  return nullptr;
}

std::string Topology::ModelName(const std::string& ns, const std::string& pool,
                                const std::string& target) const {
  const Pool* p = FindPool(ns, pool);
  if (p == nullptr) return target;
  auto it = p->models.target_to_model.find(target);
  return it == p->models.target_to_model.end() ? target : it->second;
}

Topology ComputeTopology(const TopologyInputs& in) {
  Topology t;
  // 1. One pool per namespace/name; v1 wins over v1alpha2.
  std::map<std::pair<std::string, std::string>, const PoolInfo*> by_key;
  for (const auto& p : in.pools) {
    auto key = std::make_pair(p.ns, p.name);
    auto [it, inserted] = by_key.emplace(key, &p);
    if (!inserted) {
      const PoolInfo* keep = it->second->api_version == kV1 ? it->second : &p;
      const PoolInfo* drop = keep == &p ? it->second : &p;
      if (p.api_version == it->second->api_version) {
        keep = it->second;  // duplicates from one source cannot happen; keep the first
        drop = &p;
      }
      t.notes.push_back("pool " + p.ns + "/" + p.name + " exists as " + keep->api_version +
                        " and " + drop->api_version + "; using " + keep->api_version);
      it->second = keep;
    }
  }
  // 2. Label values: plain name unless the name is used in two namespaces.
  std::map<std::string, int> name_count;
  for (const auto& [key, p] : by_key) ++name_count[key.second];

  // 3. Model mappings per pool.
  std::map<std::pair<std::string, std::string>, MappingBuilder> mappings;
  for (const auto& m : in.models) {
    if (m.pool.empty() || m.model_name.empty()) continue;
    auto& b = mappings[{m.ns, m.pool}];
    if (m.targets.empty()) {
      b.Add(m.model_name, m.model_name);
    } else {
      for (const auto& target : m.targets) b.Add(target, m.model_name);
    }
  }
  for (const auto& r : in.rewrites) {
    if (r.pool.empty()) continue;
    auto& b = mappings[{r.ns, r.pool}];
    for (const auto& rule : r.rules) {
      bool single = rule.exact_matches.size() == 1 && rule.non_exact_matches == 0;
      for (const auto& target : rule.targets) {
        if (single) {
          b.Add(target, rule.exact_matches[0]);
        } else {
          b.forced_ambiguous.insert(target);
        }
      }
    }
  }

  // 4. Endpoints.
  std::vector<const PodInfo*> pods;
  for (const auto& pod : in.pods) {
    if (!in.node.empty() && !pod.node.empty() && pod.node != in.node) continue;
    if (!pod.ready || pod.terminating || pod.ip.empty()) continue;
    pods.push_back(&pod);
  }
  std::map<std::pair<std::string, uint16_t>, std::string> owner;  // endpoint → pool key
  for (const auto& [key, info] : by_key) {
    Pool pool;
    pool.ns = info->ns;
    pool.name = info->name;
    pool.label = name_count[info->name] > 1 ? info->ns + "/" + info->name : info->name;
    pool.api_version = info->api_version;
    pool.selector = info->selector;
    pool.ports = info->ports;
    std::sort(pool.ports.begin(), pool.ports.end());
    pool.ports.erase(std::unique(pool.ports.begin(), pool.ports.end()), pool.ports.end());
    for (const PodInfo* pod : pods) {
      if (pod->ns != pool.ns || !SelectorMatches(pool.selector, pod->labels)) continue;
      for (uint16_t port : pool.ports) {
        auto [it, inserted] = owner.emplace(std::make_pair(pod->ip, port), pool.Key());
        if (!inserted) {
          t.notes.push_back("endpoint " + pod->ip + ":" + std::to_string(port) + " (pod " +
                            pod->ns + "/" + pod->name + ") is selected by pools " + it->second +
                            " and " + pool.Key() + "; counted in " + it->second);
          continue;
        }
        Endpoint e;
        e.pod = pod->name;
        e.ns = pod->ns;
        e.uid = pod->uid;
        e.ip = pod->ip;
        e.port = port;
        e.metrics_port = port;
        if (auto l = pod->labels.find(kEngineTypeLabel);
            l != pod->labels.end() && !l->second.empty()) {
          e.engine = l->second;
        }
        pool.endpoints.push_back(std::move(e));
      }
    }
    std::sort(pool.endpoints.begin(), pool.endpoints.end(), [](const auto& a, const auto& b) {
      return std::tie(a.pod, a.port) < std::tie(b.pod, b.port);
    });
    auto m = mappings.find(key);
    pool.models =
        m == mappings.end() ? MappingBuilder().Build(in.aliases) : m->second.Build(in.aliases);
    t.pools.push_back(std::move(pool));
  }
  return t;
}

}  // namespace infertap::k8s
