#include "agent/core/agent.hpp"

#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "agent/capture/pod_cgroup.hpp"
#include "agent/capture/skb_capture.hpp"
#include "agent/common/log.hpp"
#include "agent/common/version.hpp"
#include "agent/core/state_json.hpp"
#include "agent/serve/inspect_server.hpp"
#include "agent/serve/metrics_server.hpp"
#include "agent/serve/record_broadcaster.hpp"

namespace infertap {
namespace {

uint64_t MonoNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

constexpr uint64_t kSecondNs = 1'000'000'000ull;
constexpr uint64_t kFlushPeriodNs = 25'000'000ull;  // 25 ms: a hole waits 50..75 ms

nlohmann::ordered_json ModelsJson(const topology::ModelNames& names) {
  nlohmann::ordered_json out = nlohmann::json::array();
  for (const auto& [target, m] : names) {
    nlohmann::ordered_json j;
    j["target_model_name"] = target;
    j["model_name"] = m.model;
    j["origin"] = m.origin;
    if (m.ambiguous) j["ambiguous"] = true;
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace

class Agent::Broadcast : public RecordListener {
 public:
  explicit Broadcast(serve::RecordBroadcaster& rb) : rb_(rb) {}
  void OnRecord(const RequestRecord& r) override { rb_.Publish(r); }

 private:
  serve::RecordBroadcaster& rb_;
};

TopologyTables DeriveTables(const topology::Topology& t, uint32_t roles) {
  TopologyTables out;
  auto table = std::make_shared<AttributionTable>();
  std::set<std::pair<std::array<uint8_t, 16>, uint16_t>> seen;
  for (size_t i = 0; i < t.pools.size(); ++i) {
    const topology::TopologyPool& p = t.pools[i];
    for (const topology::TopologyEndpoint& e : p.endpoints) {
      if (seen.insert({e.address.addr, e.address.port}).second)
        out.traced.push_back({e.address, roles, uint32_t(i)});
      table->endpoints.push_back({e.address, p.label, e.ns, e.pod});
      out.targets.push_back({p.label, e.pod, e.metrics_address, e.metrics_path, e.engine});
    }
    // An entry for every pool, even without a mapping: it says the pool is current.
    auto& m = table->pool_models[p.label];
    for (const auto& [target, name] : p.models) m[target] = name.model;
  }
  for (const auto& [target, name] : t.models) table->models[target] = name.model;
  out.attribution = std::move(table);
  return out;
}

std::shared_ptr<const AttributionTable> UnionTable(const AttributionTable& next,
                                                   const AttributionTable& prev) {
  auto u = std::make_shared<AttributionTable>(next);
  std::set<std::pair<std::array<uint8_t, 16>, uint16_t>> have;
  for (const auto& e : next.endpoints) have.insert({e.endpoint.addr, e.endpoint.port});
  for (const auto& e : prev.endpoints)
    if (!have.count({e.endpoint.addr, e.endpoint.port})) u->endpoints.push_back(e);
  for (const auto& [pool, m] : prev.pool_models) u->pool_models.try_emplace(pool, m);
  return u;
}

Agent::Agent(AgentOptions options, std::unique_ptr<topology::TopologySource> source)
    : opt_(std::move(options)), source_(std::move(source)), start_ns_(MonoNowNs()) {}

Agent::~Agent() { Shutdown(); }

Status Agent::Start() {
  // Privileges first: the clearest error for the most common mistake.
  if (Status s = opt_.capture_backend == CaptureBackend::kCgroup ? CheckSkbCapturePrivileges()
                                                                 : CheckCapturePrivileges();
      !s)
    return s;

  if (opt_.auth_mode != "none" && !opt_.authorizer)
    return Status::Error("--metrics-auth=" + opt_.auth_mode +
                         " without an authorizer; refusing to serve /metrics unprotected");
  metrics_ = std::make_unique<Metrics>(opt_.metrics);
  serve::MetricsServerOptions msopts;
  msopts.authorizer = opt_.authorizer;
  msopts.http.addr = opt_.metrics_addr;
  msopts.http.tls_cert_file = opt_.tls_cert;
  msopts.http.tls_key_file = opt_.tls_key;
  // Ready once the programs are attached and a first topology is applied (a watch-based source
  // may deliver it after Start); a later failure of the source keeps the last one.
  msopts.readiness = [this] {
    serve::Readiness r;
    r.ready = ready_.load() && applied_version_.load() > 0;
    if (!ready_.load())
      r.reason = "BPF programs not attached yet";
    else if (!r.ready)
      r.reason = "waiting for the first topology from the " + source_->Name() + " source";
    return r;
  };
  metrics_server_ = std::make_unique<serve::MetricsServer>(msopts, *metrics_);
  if (Status s = metrics_server_->Start(); !s) {
    Shutdown();
    return s;
  }

  broadcaster_ = std::make_unique<serve::RecordBroadcaster>(CurrentWallOffsetNs());
  poller_ = std::make_unique<poller::PoolPoller>(
      *metrics_, [] { return std::chrono::steady_clock::now(); }, opt_.poller);

  serve::InspectServerOptions isopts;
  isopts.http.addr = opt_.inspect_addr;
  isopts.allow_non_loopback = opt_.inspect_allow_remote;
  isopts.state = [this] { return StateJson(); };
  inspect_server_ = std::make_unique<serve::InspectServer>(isopts, *broadcaster_);
  if (Status s = inspect_server_->Start(); !s) {
    Shutdown();
    return s;
  }
  if (opt_.inspect_allow_remote)
    LOG_WARN("inspection API on %s is reachable from other hosts (--inspect-allow-remote)",
             opt_.inspect_addr.c_str());

  pipeline_ = std::make_unique<Pipeline>(opt_.pipeline, metrics_.get());
  broadcast_listener_ = std::make_unique<Broadcast>(*broadcaster_);
  pipeline_->AddListener(broadcast_listener_.get());
  for (RecordListener* l : extra_listeners_) pipeline_->AddListener(l);
  Status st;
  LiveCaptureOptions copts;
  copts.backend = opt_.capture_backend;
  copts.capture = opt_.capture;
  copts.cgroups = opt_.capture_cgroups;
  capture_ = StartLiveCapture(copts, *pipeline_, &st);
  if (!capture_) {
    Shutdown();
    return st;
  }
  {
    std::lock_guard lock(state_mu_);
    shared_.capture = capture_->Info();
  }

  {
    std::lock_guard lock(state_mu_);
    shared_.topology = std::make_shared<const topology::Topology>();
  }
  if (Status s = source_->Start([this](auto t) { OnTopology(std::move(t)); }); !s) {
    Shutdown();
    return s;
  }
  // A synchronous source (static) has delivered already: apply it before announcing.
  ApplyPending(MonoNowNs());
  if (apply_failed_) {
    std::string err;
    {
      std::lock_guard lock(state_mu_);
      err = shared_.apply_error;
    }
    Shutdown();
    return Status::Error(err);
  }
  poller_->Start();
  ready_ = true;

  std::string what;
  for (const auto& e : capture_->endpoints())
    what += (what.empty() ? "" : ", ") + e.endpoint.ToString();
  if (what.empty()) what = "no endpoint yet (" + source_->Name() + " source)";
  const LiveCaptureInfo info = capture_->Info();
  std::string backend = info.backend + " backend";
  for (size_t i = 0; i < info.cgroups.size(); ++i)
    backend += (i == 0 ? " on " : ", ") + info.cgroups[i];
  if (!opt_.pod_cgroup_root.empty())
    backend += (info.cgroups.empty() ? " on " : " and ") + std::string("the pods' cgroups under ") +
               opt_.pod_cgroup_root;
  LOG_INFO(
      "infertap %s running: tracing %s side of %s (%s); metrics on %s (auth %s%s), inspect on %s",
      kVersion, opt_.side.c_str(), what.c_str(), backend.c_str(), opt_.metrics_addr.c_str(),
      opt_.auth_mode.c_str(), opt_.tls_cert.empty() ? "" : ", TLS", opt_.inspect_addr.c_str());
  return Status::Ok();
}

void Agent::OnTopology(std::shared_ptr<const topology::Topology> t) {
  if (!t) return;
  std::lock_guard lock(pending_mu_);
  pending_ = std::move(t);
}

void Agent::ApplyPending(uint64_t now_ns) {
  std::shared_ptr<const topology::Topology> t;
  {
    std::lock_guard lock(pending_mu_);
    t = std::move(pending_);
    pending_.reset();
  }
  if (t) {
    wanted_ = t;
  } else if (apply_failed_ && wanted_ && now_ns - last_retry_ns_ >= kSecondNs) {
    t = wanted_;  // retry what failed
  } else {
    return;
  }
  last_retry_ns_ = now_ns;

  TopologyTables tables = DeriveTables(*t, opt_.roles);
  // 1. Kernel filter, by a diff.
  Status st = capture_->SetEndpoints(tables.traced);
  // 2. Whatever the ring holds was emitted before the change took effect: attribute it with
  // both sets, the new one first.
  pipeline_->SetAttribution(UnionTable(*tables.attribution, *pipeline_->attribution()));
  for (int i = 0; i < 64; ++i) {
    PollResult r = capture_->Poll(0);
    if (!r.status || r.events == 0) break;
  }
  // 3. The new table; open connections keep theirs. While the kernel map still holds old
  // endpoints (a failed insert postpones removals), they stay attributed as before.
  pipeline_->SetAttribution(st ? tables.attribution
                               : UnionTable(*tables.attribution, *pipeline_->attribution()));
  // 4. Poller targets.
  poller_->SetTargets(std::move(tables.targets));

  apply_failed_ = !st;
  if (st) applied_version_ = t->version;
  std::vector<std::string> kernel;
  for (const auto& e : capture_->endpoints()) kernel.push_back(e.endpoint.ToString());
  {
    std::lock_guard lock(state_mu_);
    shared_.topology = t;
    shared_.apply_error = st ? "" : st.message();
    shared_.kernel_endpoints = std::move(kernel);
  }
  if (!st) {
    LOG_ERROR("topology %llu from %s applied partially (retrying every second): %s",
              (unsigned long long)t->version, t->source.c_str(), st.message().c_str());
  } else {
    size_t eps = 0;
    for (const auto& p : t->pools) eps += p.endpoints.size();
    LOG_INFO("topology %llu from %s applied: %zu pool(s), %zu endpoint(s)",
             (unsigned long long)t->version, t->source.c_str(), t->pools.size(), eps);
  }
  for (const std::string& n : t->notes) LOG_WARN("topology: %s", n.c_str());
  // 5. The pods' cgroups, after the endpoints: a new pod's packets are matched as soon as its
  // programs run, a gone pod's endpoints are already out of the filter.
  if (!opt_.pod_cgroup_root.empty()) SyncPodCgroups(now_ns);
}

void Agent::SyncPodCgroups(uint64_t now_ns) {
  last_cgroup_sync_ns_ = now_ns;
  // The pods of the topology, once each (a pod serving several ports or pools has one cgroup).
  std::vector<PodCgroupStatus> pods;
  std::set<std::string> seen;
  if (wanted_)
    for (const topology::TopologyPool& p : wanted_->pools)
      for (const topology::TopologyEndpoint& e : p.endpoints)
        if (seen.insert(e.pod_uid.empty() ? e.ns + "/" + e.pod : e.pod_uid).second)
          pods.push_back({e.ns, e.pod, e.pod_uid, "", false, ""});
  const PodCgroupResolver resolver(opt_.pod_cgroup_root);
  const std::vector<std::string> kubepods = resolver.KubepodsDirs();  // one scan per pass
  std::vector<std::string> cgroups = opt_.capture_cgroups;
  for (PodCgroupStatus& pc : pods) {
    if (pc.uid.empty()) {
      pc.status = "the pod has no metadata.uid";
      continue;
    }
    PodCgroupLookup found = resolver.Find(pc.uid, kubepods);
    pc.cgroup = found.path;
    pc.status = found.error;
    if (!found.path.empty()) cgroups.push_back(found.path);
  }
  // CgroupAttachments logs attaches, detaches and the first failure of each cgroup.
  capture_->SetCgroups(cgroups, now_ns);
  std::map<std::string, CgroupAttachmentState> states;
  for (const CgroupAttachmentState& st : capture_->CgroupStates()) states[st.path] = st;
  for (PodCgroupStatus& pc : pods) {
    if (pc.cgroup.empty()) continue;
    const auto it = states.find(pc.cgroup);
    pc.attached = it != states.end() && it->second.attached;
    pc.status = pc.attached          ? "attached"
                : it == states.end() ? "not attached"
                                     : "attach failed: " + it->second.error;
  }
  // A pod's first unresolved pass is logged once, and again when that changes.
  std::map<std::string, std::string> before;
  for (const PodCgroupStatus& pc : pod_cgroups_) before[pc.ns + "/" + pc.pod] = pc.status;
  for (const PodCgroupStatus& pc : pods) {
    const auto it = before.find(pc.ns + "/" + pc.pod);
    if (it != before.end() && it->second == pc.status) continue;
    if (pc.attached)
      LOG_INFO("pod %s/%s (uid %s): capturing cgroup %s", pc.ns.c_str(), pc.pod.c_str(),
               pc.uid.c_str(), pc.cgroup.c_str());
    else
      LOG_WARN("pod %s/%s (uid %s): %s; retrying every second", pc.ns.c_str(), pc.pod.c_str(),
               pc.uid.c_str(), pc.status.c_str());
  }
  pod_cgroups_ = pods;
  std::lock_guard lock(state_mu_);
  shared_.pod_cgroups = std::move(pods);
  shared_.capture.cgroups = capture_->Info().cgroups;
}

Status Agent::Run(const std::function<bool()>& stop) {
  if (!capture_) return Status::Error("agent not started");
  while (!stop()) {
    PollResult r = capture_->Poll(100);
    if (!r.status) return r.status;
    const uint64_t now = MonoNowNs();
    // Flush walks every tracked connection; the loop wakes up far more often than that is
    // needed (10,000 open streams at a token per second: thousands of times a second, and the
    // walks were 60% of the agent's CPU). Holes wait 50 ms anyway (docs/capture.md); the
    // tracker visiting only connections with pending bytes would remove the walk altogether.
    if (now - last_flush_ns_ >= kFlushPeriodNs) {
      capture_->Flush(now);
      last_flush_ns_ = now;
    }
    ApplyPending(now);
    // Pods whose cgroup was not there yet (containers start after the pod object is seen), or
    // whose attach failed, and cgroups that vanished: looked at again every second.
    if (!opt_.pod_cgroup_root.empty() && now - last_cgroup_sync_ns_ >= kSecondNs)
      SyncPodCgroups(now);
    if (now - last_publish_ns_ >= kSecondNs) Publish(now);
  }
  return Status::Ok();
}

void Agent::Publish(uint64_t now_ns) {
  last_publish_ns_ = now_ns;
  const LiveCaptureCounters c = capture_->Counters();
  metrics_->AddCaptureEvents(c.events - published_events_, c.data_bytes - published_bytes_);
  published_events_ = c.events;
  published_bytes_ = c.data_bytes;
  metrics_->SetCaptureLostEventsTotal(c.lost_events);
  metrics_->SetConnectionsTracked(int64_t(c.connections));
  std::lock_guard lock(state_mu_);
  shared_.connections = c.connections;
  shared_.capture_events = c.events;
  shared_.lost_events = c.lost_events;
  shared_.capture_detail = c.detail;
  shared_.parse_errors = pipeline_->stats().parse_errors;
  shared_.requests = pipeline_->stats().requests_received;
  shared_.records = pipeline_->stats().records;
  shared_.ignored = pipeline_->stats().ignored_exchanges;
}

void Agent::Shutdown() {
  ready_ = false;
  if (source_) source_->Stop();
  if (poller_) poller_->Stop();
  capture_.reset();  // detaches every program, frees every map, ends every connection
  pipeline_.reset();
  if (inspect_server_) inspect_server_->Stop();
  if (metrics_server_) metrics_server_->Stop();
}

std::string Agent::StateJson() const {
  nlohmann::ordered_json j;
  const poller::PollerSnapshot snap = poller_ ? poller_->Snapshot() : poller::PollerSnapshot{};
  std::lock_guard lock(state_mu_);
  const topology::Topology empty;
  const topology::Topology& topo = shared_.topology ? *shared_.topology : empty;
  j["node"] = opt_.pipeline.node;
  j["version"] = kVersion;
  j["uptime_s"] = double(MonoNowNs() - start_ns_) / 1e9;
  // The poller's result (the same numbers the inference_pool_* gauges carry) and the in-flight
  // count behind running_requests: one producer each (agent/core/state_json.hpp).
  j["pools"] = PoolsStateJson(topo, snap);
  j["models"] =
      InFlightStateJson(metrics_ ? metrics_->InFlight() : std::map<InFlightKey, int64_t>{});
  j["capture"] = {{"backend", shared_.capture.backend},
                  {"variant", shared_.capture.variant},
                  {"reason", shared_.capture.reason}};
  if (!shared_.capture.cgroups.empty() || !opt_.pod_cgroup_root.empty())
    j["capture"]["cgroups"] = shared_.capture.cgroups;
  if (!opt_.pod_cgroup_root.empty()) {
    j["capture"]["cgroup_root"] = opt_.pod_cgroup_root;
    nlohmann::ordered_json pods = nlohmann::json::array();
    for (const PodCgroupStatus& pc : shared_.pod_cgroups) {
      nlohmann::ordered_json jp;
      jp["namespace"] = pc.ns;
      jp["pod"] = pc.pod;
      jp["uid"] = pc.uid;
      jp["cgroup"] =
          pc.cgroup.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(pc.cgroup);
      jp["attached"] = pc.attached;
      jp["status"] = pc.status;
      pods.push_back(std::move(jp));
    }
    j["capture"]["pods"] = std::move(pods);
  }
  nlohmann::ordered_json detail = nlohmann::ordered_json::object();
  for (const auto& [name, value] : shared_.capture_detail) detail[name] = value;
  j["capture"]["counters"] = std::move(detail);
  j["endpoints"] = shared_.kernel_endpoints;
  j["connections"] = shared_.connections;
  j["counters"] = {
      {"capture_events", shared_.capture_events},
      {"capture_lost_events", shared_.lost_events},
      {"parse_errors", shared_.parse_errors},
      {"ignored_exchanges", shared_.ignored},
      {"requests", shared_.requests},
      {"records", shared_.records},
      {"records_dropped_for_subscribers", broadcaster_ ? broadcaster_->total_dropped() : 0}};
  // The topology as applied, and where each part came from (docs/serving.md).
  nlohmann::ordered_json jt;
  jt["source"] = source_ ? source_->Name() : "";
  jt["version"] = topo.version;
  jt["applied"] = shared_.apply_error.empty();
  if (!shared_.apply_error.empty()) jt["apply_error"] = shared_.apply_error;
  nlohmann::ordered_json tpools = nlohmann::json::array();
  for (const topology::TopologyPool& p : topo.pools) {
    nlohmann::ordered_json jp;
    jp["namespace"] = p.ns;
    jp["name"] = p.name;
    jp["label"] = p.label;
    jp["origin"] = p.origin;
    nlohmann::ordered_json eps = nlohmann::json::array();
    for (const topology::TopologyEndpoint& e : p.endpoints) {
      nlohmann::ordered_json je;
      je["pod"] = e.pod;
      je["namespace"] = e.ns;
      je["address"] = e.address.ToString();
      je["engine"] = std::string(poller::EngineName(e.engine));
      je["metrics_address"] = e.metrics_address;
      je["metrics_path"] = e.metrics_path;
      je["origin"] = e.origin;
      eps.push_back(std::move(je));
    }
    jp["endpoints"] = std::move(eps);
    jp["models"] = ModelsJson(p.models);
    tpools.push_back(std::move(jp));
  }
  jt["pools"] = std::move(tpools);
  jt["models"] = ModelsJson(topo.models);
  jt["notes"] = topo.notes;
  j["topology"] = std::move(jt);
  return j.dump();
}

}  // namespace infertap
