#include "agent/core/state_json.hpp"

#include <string>
#include <utility>

namespace infertap {

nlohmann::ordered_json PoolsStateJson(const topology::Topology& topo,
                                      const poller::PollerSnapshot& snap) {
  nlohmann::ordered_json jpools = nlohmann::json::array();
  for (const topology::TopologyPool& p : topo.pools) {
    nlohmann::ordered_json jp;
    jp["name"] = p.label;
    jp["namespace"] = p.ns;
    auto g = snap.pools.find(p.label);
    jp["ready_pods"] = g != snap.pools.end() ? g->second.ready_pods : 0;
    if (g != snap.pools.end()) {
      if (g->second.average_queue_size) jp["average_queue_size"] = *g->second.average_queue_size;
      if (g->second.average_running_requests)
        jp["average_running_requests"] = *g->second.average_running_requests;
      if (g->second.average_kv_cache_utilization)
        jp["average_kv_cache_utilization"] = *g->second.average_kv_cache_utilization;
    }
    nlohmann::ordered_json jpods = nlohmann::json::array();
    for (const poller::PodStatus& st : snap.pods) {
      if (st.target.pool != p.label) continue;
      nlohmann::ordered_json pod;
      pod["name"] = st.target.pod;
      pod["address"] = st.target.address;
      pod["fresh"] = st.fresh;
      if (st.stats) {
        pod["queue"] = st.stats->queue;
        pod["running"] = st.stats->running;
        if (st.stats->kv_cache_utilization)
          pod["kv_cache_utilization"] = *st.stats->kv_cache_utilization;
        pod["engine"] = std::string(poller::EngineName(st.stats->engine));
      }
      pod["scrape_errors"] = st.scrape_errors;
      if (!st.last_error.empty()) pod["last_error"] = st.last_error;
      jpods.push_back(std::move(pod));
    }
    jp["pods"] = std::move(jpods);
    jpools.push_back(std::move(jp));
  }
  return jpools;
}

nlohmann::ordered_json InFlightStateJson(const std::map<InFlightKey, int64_t>& in_flight) {
  nlohmann::ordered_json models = nlohmann::json::array();
  for (const auto& [k, n] : in_flight)
    models.push_back({{"pool", k.pool},
                      {"model_name", k.model_name},
                      {"target_model_name", k.target_model_name},
                      {"in_flight", n}});
  return models;
}

}  // namespace infertap
