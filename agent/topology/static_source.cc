#include "agent/topology/static_source.hpp"

#include <fstream>
#include <nlohmann/json.hpp>

namespace infertap::topology {
namespace {

TopologyEndpoint MakeEndpoint(const Endpoint& e, poller::Engine engine, const std::string& path,
                              const std::string& origin) {
  TopologyEndpoint t;
  t.address = e;
  t.pod = ScrapeAddress(e);
  t.engine = engine;
  t.metrics_address = ScrapeAddress(e);
  t.metrics_path = path;
  t.origin = origin;
  return t;
}

// --config FILE (JSON):
// {"pools":[{"name":"p1","targets":["10.0.0.5:8000"],"engine":"vllm",
//            "metrics_path":"/metrics","model_alias":{"target":"model"}}]}
Status LoadConfig(const std::string& path, Topology* out) {
  std::ifstream in(path);
  if (!in) return Status::Error("cannot read --config " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return Status::Error("--config " + path + ": invalid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("pools") || !j["pools"].is_array() || j["pools"].empty())
    return Status::Error("--config " + path +
                         ": expected {\"pools\": [ ... ]} with one pool or more");
  const std::string origin = "config " + path;
  for (const auto& p : j["pools"]) {
    TopologyPool pool;
    pool.origin = origin;
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string() ||
        p["name"].get<std::string>().empty())
      return Status::Error("--config " + path + ": every pool needs a non-empty \"name\"");
    pool.name = p["name"];
    pool.label = pool.name;
    if (!p.contains("targets") || !p["targets"].is_array() || p["targets"].empty())
      return Status::Error("--config " + path + ": pool " + pool.name + " needs \"targets\"");
    std::vector<Endpoint> eps;
    for (const auto& t : p["targets"]) {
      std::string err;
      auto ep = t.is_string() ? ParseEndpoint(t.get<std::string>(), &err) : std::nullopt;
      if (!ep) return Status::Error("--config " + path + ": pool " + pool.name + ": " + err);
      eps.push_back(*ep);
    }
    poller::Engine engine = poller::Engine::kAuto;
    if (p.contains("engine")) {
      auto e = p["engine"].is_string() ? poller::ParseEngine(p["engine"].get<std::string>())
                                       : std::nullopt;
      if (!e) return Status::Error("--config " + path + ": pool " + pool.name + ": unknown engine");
      engine = *e;
    }
    std::string metrics_path = "/metrics";
    if (p.contains("metrics_path") && p["metrics_path"].is_string())
      metrics_path = p["metrics_path"];
    for (const Endpoint& e : eps)
      pool.endpoints.push_back(MakeEndpoint(e, engine, metrics_path, origin));
    if (p.contains("model_alias") && p["model_alias"].is_object())
      for (auto& [k, v] : p["model_alias"].items())
        if (v.is_string()) AddModelName(pool.models, k, v.get<std::string>(), origin);
    out->pools.push_back(std::move(pool));
  }
  return Status::Ok();
}

}  // namespace

std::string ScrapeAddress(const Endpoint& e) {
  if (!e.is_wildcard()) return e.ToString();
  return "127.0.0.1:" + std::to_string(e.port);
}

Status BuildStaticTopology(const StaticTopologyOptions& o, Topology* out) {
  Topology t;
  t.source = "static";
  if (!o.config.empty()) {
    if (!o.targets.empty())
      return Status::Error("--config and --target are exclusive (put the targets in the config)");
    if (Status s = LoadConfig(o.config, &t); !s) return s;
  } else {
    std::vector<std::string> targets = o.targets;
    if (targets.empty()) targets.push_back(":8000");
    std::vector<Endpoint> eps;
    for (const std::string& s : targets) {
      std::string err;
      auto ep = ParseEndpoint(s, &err);
      if (!ep) return Status::Error(err);
      eps.push_back(*ep);
    }
    auto engine = poller::ParseEngine(o.engine);
    if (!engine) return Status::Error("unknown --engine '" + o.engine + "'");
    TopologyPool pool;
    pool.name = o.pool;
    pool.label = o.pool;
    pool.origin = o.targets.empty() ? "flags (default target)" : "flags";
    for (const Endpoint& e : eps)
      pool.endpoints.push_back(MakeEndpoint(e, *engine, o.metrics_path, pool.origin));
    t.pools.push_back(std::move(pool));
  }
  if (o.pool.empty()) return Status::Error("--pool must not be empty");
  for (const std::string& a : o.model_alias) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == a.size())
      return Status::Error("invalid --model-alias '" + a + "': expected TARGET=MODEL");
    AddModelName(t.models, a.substr(0, eq), a.substr(eq + 1), "flags");
  }
  t.version = 1;
  *out = std::move(t);
  return Status::Ok();
}

std::unique_ptr<StaticTopologySource> StaticTopologySource::Create(
    const StaticTopologyOptions& options, Status* status) {
  Topology t;
  *status = BuildStaticTopology(options, &t);
  if (!*status) return nullptr;
  return std::unique_ptr<StaticTopologySource>(
      new StaticTopologySource(std::make_shared<const Topology>(std::move(t))));
}

Status StaticTopologySource::Start(OnChange on_change) {
  if (on_change) on_change(topology_);
  return Status::Ok();
}

}  // namespace infertap::topology
