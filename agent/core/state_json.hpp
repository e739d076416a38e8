// The numbers of `/v1/state` (docs/serving.md) that /metrics also shows, built from the same
// producers so the two can never disagree: the pool poller's snapshot (the values the
// inference_pool_* and per-pod gauges were set from at the poller's last Tick, freshness
// included) and Metrics::InFlight (the count behind running_requests).
#pragma once

#include <map>
#include <nlohmann/json.hpp>

#include "agent/metrics/metrics.hpp"
#include "agent/poller/poller.hpp"
#include "agent/topology/topology.hpp"

namespace infertap {

// `pools[]`: per pool of the topology, ready_pods and the averages from snap.pools, and its pods
// with `fresh` and their last values from snap.pods.
nlohmann::ordered_json PoolsStateJson(const topology::Topology& topo,
                                      const poller::PollerSnapshot& snap);
// `models[]`: {pool, model_name, target_model_name, in_flight} per key of `in_flight`.
nlohmann::ordered_json InFlightStateJson(const std::map<InFlightKey, int64_t>& in_flight);

}  // namespace infertap
