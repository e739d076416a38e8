// `infertap run`: the agent (docs/cli.md). Standalone mode: capture → parse → records → metrics
// live, pool gauges from the model servers' /metrics, Prometheus on --metrics-addr, the local
// inspection API for `top`/`trace` on --inspect-addr.
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/capture/tracker.hpp"
#include "agent/cli/commands.hpp"
#include "agent/cli/targets.hpp"
#include "agent/common/log.hpp"
#include "agent/common/version.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/pipeline/pipeline.hpp"
#include "agent/pool/poller.hpp"
#include "agent/serve/auth.hpp"
#include "agent/serve/inspect_server.hpp"
#include "agent/serve/metrics_server.hpp"
#include "agent/serve/record_broadcaster.hpp"

namespace infertap::cli {
namespace {

// True when /proc/<tgid>/fd/<fd> is a socket (the process is alive and still holds the fd).
bool FdHoldsSocket(uint32_t tgid, uint32_t fd) {
  char path[64], target[64];
  std::snprintf(path, sizeof(path), "/proc/%u/fd/%u", tgid, fd);
  ssize_t n = ::readlink(path, target, sizeof(target) - 1);
  if (n <= 0) return false;
  return std::string_view(target, size_t(n)).starts_with("socket:");
}

using pool::Engine;
using pool::EngineName;
using pool::ParseEngine;
using pool::PodStatus;
using pool::PollerOptions;
using pool::PoolPoller;
using pool::PoolTarget;
using serve::RecordBroadcaster;

struct RunArgs {
  TargetArgs targets;
  AttributionArgs attribution;
  std::string engine = "auto";
  std::string config;
  std::string metrics_addr = ":9090";
  std::string metrics_auth = "auto";
  std::string tls_cert, tls_key;
  std::string inspect_addr = "127.0.0.1:9091";
  bool inspect_allow_remote = false;
  std::string metrics_path = "/metrics";
  double poll_interval_s = 1.0;
  double staleness_s = 2.0;
  uint32_t ring_bytes = 16u << 20;
  uint32_t syscall_cap = IT_DEFAULT_SYSCALL_CAP;
  std::vector<std::string> extra_paths;
};

// One standalone pool: its name, endpoints, engine and how to scrape it.
struct PoolSpec {
  std::string name;
  std::vector<Endpoint> endpoints;
  Engine engine = Engine::kAuto;
  std::string metrics_path = "/metrics";
  std::map<std::string, std::string> model_alias;
};

uint64_t MonoNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// --config FILE (JSON):
// {"pools":[{"name":"p1","targets":["10.0.0.5:8000"],"engine":"vllm",
//            "metrics_path":"/metrics","model_alias":{"target":"model"}}]}
Status LoadConfig(const std::string& path, std::vector<PoolSpec>* pools) {
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
  for (const auto& p : j["pools"]) {
    PoolSpec spec;
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string() ||
        p["name"].get<std::string>().empty())
      return Status::Error("--config " + path + ": every pool needs a non-empty \"name\"");
    spec.name = p["name"];
    if (!p.contains("targets") || !p["targets"].is_array() || p["targets"].empty())
      return Status::Error("--config " + path + ": pool " + spec.name + " needs \"targets\"");
    for (const auto& t : p["targets"]) {
      std::string err;
      auto ep = t.is_string() ? ParseEndpoint(t.get<std::string>(), &err) : std::nullopt;
      if (!ep) return Status::Error("--config " + path + ": pool " + spec.name + ": " + err);
      spec.endpoints.push_back(*ep);
    }
    if (p.contains("engine")) {
      auto e = p["engine"].is_string() ? ParseEngine(p["engine"].get<std::string>()) : std::nullopt;
      if (!e) return Status::Error("--config " + path + ": pool " + spec.name + ": unknown engine");
      spec.engine = *e;
    }
    if (p.contains("metrics_path") && p["metrics_path"].is_string())
      spec.metrics_path = p["metrics_path"];
    if (p.contains("model_alias") && p["model_alias"].is_object())
      for (auto& [k, v] : p["model_alias"].items())
        if (v.is_string()) spec.model_alias[k] = v.get<std::string>();
    pools->push_back(std::move(spec));
  }
  return Status::Ok();
}

// The address to scrape for a traced endpoint: a wildcard means "this host".
std::string ScrapeAddress(const Endpoint& e) {
  if (!e.is_wildcard()) return e.ToString();
  return "127.0.0.1:" + std::to_string(e.port);
}

// Snapshot of what /v1/state shows, rebuilt by the capture loop once a second.
struct SharedState {
  std::mutex mu;
  std::string node;
  std::vector<std::string> endpoints;
  std::map<InFlightKey, int64_t> in_flight;
  size_t connections = 0;
  uint64_t capture_events = 0, lost_events = 0, parse_errors = 0, requests = 0, records = 0,
           ignored = 0;
};

std::string StateJson(SharedState& s, const PoolPoller& poller, const RecordBroadcaster& rb,
                      const std::vector<PoolSpec>& pools, uint64_t start_ns) {
  nlohmann::ordered_json j;
  std::lock_guard<std::mutex> lock(s.mu);
  j["node"] = s.node;
  j["version"] = kVersion;
  j["uptime_s"] = double(MonoNowNs() - start_ns) / 1e9;
  const std::vector<PodStatus> pods = poller.Pods();
  nlohmann::ordered_json jpools = nlohmann::json::array();
  for (const PoolSpec& p : pools) {
    nlohmann::ordered_json jp;
    jp["name"] = p.name;
    double q = 0, run = 0, kv = 0;
    int fresh = 0, kv_n = 0;
    nlohmann::ordered_json jpods = nlohmann::json::array();
    for (const PodStatus& st : pods) {
      if (st.target.pool != p.name) continue;
      nlohmann::ordered_json pod;
      pod["name"] = st.target.pod;
      pod["address"] = st.target.address;
      pod["fresh"] = st.fresh;
      if (st.stats) {
        pod["queue"] = st.stats->queue;
        pod["running"] = st.stats->running;
        if (st.stats->kv_cache_utilization)
          pod["kv_cache_utilization"] = *st.stats->kv_cache_utilization;
        pod["engine"] = std::string(EngineName(st.stats->engine));
      }
      pod["scrape_errors"] = st.scrape_errors;
      if (!st.last_error.empty()) pod["last_error"] = st.last_error;
      if (st.fresh && st.stats) {
        ++fresh;
        q += st.stats->queue;
        run += st.stats->running;
        if (st.stats->kv_cache_utilization) {
          kv += *st.stats->kv_cache_utilization;
          ++kv_n;
        }
      }
      jpods.push_back(std::move(pod));
    }
    jp["ready_pods"] = fresh;
    if (fresh > 0) {
      jp["average_queue_size"] = q / fresh;
      jp["average_running_requests"] = run / fresh;
      if (kv_n > 0) jp["average_kv_cache_utilization"] = kv / kv_n;
    }
    jp["pods"] = std::move(jpods);
    jpools.push_back(std::move(jp));
  }
  j["pools"] = std::move(jpools);
  nlohmann::ordered_json models = nlohmann::json::array();
  for (const auto& [k, n] : s.in_flight)
    models.push_back({{"pool", k.pool},
                      {"model_name", k.model_name},
                      {"target_model_name", k.target_model_name},
                      {"in_flight", n}});
  j["models"] = std::move(models);
  j["endpoints"] = s.endpoints;
  j["connections"] = s.connections;
  j["counters"] = {{"capture_events", s.capture_events},
                   {"capture_lost_events", s.lost_events},
                   {"parse_errors", s.parse_errors},
                   {"ignored_exchanges", s.ignored},
                   {"requests", s.requests},
                   {"records", s.records},
                   {"records_dropped_for_subscribers", rb.total_dropped()}};
  return j.dump();
}

class BroadcastListener : public RecordListener {
 public:
  explicit BroadcastListener(RecordBroadcaster& rb) : rb_(rb) {}
  void OnRecord(const RequestRecord& r) override { rb_.Publish(r); }

 private:
  RecordBroadcaster& rb_;
};

int Fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "infertap run: %s\n", msg.c_str());
  return code;
}

int RunAgent(const RunArgs& a) {
  // Before anything can be announced: a signal that arrives right after "capturing"/"running"
  // is printed must stop us gracefully (flushing files, detaching), not kill us.
  InstallStopSignals();
  const uint64_t start_ns = MonoNowNs();
  // ---- flags → configuration (usage errors exit 2) ----
  std::vector<PoolSpec> pools;
  if (!a.config.empty()) {
    if (!a.targets.targets.empty())
      return Fail("--config and --target are exclusive (put the targets in the config)", 2);
    if (Status s = LoadConfig(a.config, &pools); !s) return Fail(s.message(), 2);
  } else {
    std::vector<TracedEndpoint> eps;
    if (Status s = ResolveTargets(a.targets, &eps); !s) return Fail(s.message(), 2);
    PoolSpec spec;
    spec.name = a.attribution.pool;
    for (const auto& e : eps) spec.endpoints.push_back(e.endpoint);
    auto engine = ParseEngine(a.engine);
    if (!engine) return Fail("unknown --engine '" + a.engine + "'", 2);
    spec.engine = *engine;
    spec.metrics_path = a.metrics_path;
    pools.push_back(std::move(spec));
  }
  std::vector<TracedEndpoint> traced;
  uint32_t roles = a.targets.side == "client" ? IT_ROLE_CLIENT
                   : a.targets.side == "both" ? (IT_ROLE_SERVER | IT_ROLE_CLIENT)
                                              : IT_ROLE_SERVER;
  for (size_t i = 0; i < pools.size(); ++i)
    for (const Endpoint& e : pools[i].endpoints) traced.push_back({e, roles, uint32_t(i)});
  PipelineOptions popts;
  std::vector<EndpointAttribution> table;
  if (Status s = ResolveAttribution(a.attribution, traced, &popts, &table); !s)
    return Fail(s.message(), 2);
  table.clear();
  for (const PoolSpec& p : pools) {
    for (const Endpoint& e : p.endpoints) table.push_back({e, p.name, "", ScrapeAddress(e)});
    for (const auto& [t, m] : p.model_alias) popts.model_alias[t] = m;
  }
  popts.exchange.extra_inference_paths = a.extra_paths;

  std::string auth_mode;
  if (Status s = serve::ValidateAuthMode(a.metrics_auth, serve::InClusterFromEnv(), &auth_mode); !s)
    return Fail(s.message());
  if (a.tls_cert.empty() != a.tls_key.empty())
    return Fail("--tls-cert and --tls-key go together", 2);

  // ---- privileges first: the clearest error for the most common mistake ----
  if (Status s = CheckCapturePrivileges(); !s) return Fail(s.message());

  MetricsOptions mopts;
  mopts.metric_prefix = a.attribution.metric_prefix;
  mopts.max_models = a.attribution.max_models;
  mopts.version = kVersion;
  mopts.revision = kRevision;
  Metrics metrics(mopts);

  std::atomic<bool> ready{false};
  serve::MetricsServerOptions msopts;
  msopts.http.addr = a.metrics_addr;
  msopts.http.tls_cert_file = a.tls_cert;
  msopts.http.tls_key_file = a.tls_key;
  msopts.readiness = [&ready] {
    serve::Readiness r;
    r.ready = ready.load();
    if (!r.ready) r.reason = "BPF programs not attached yet";
    return r;
  };
  serve::MetricsServer metrics_server(msopts, metrics);
  if (Status s = metrics_server.Start(); !s) return Fail(s.message());

  RecordBroadcaster broadcaster(CurrentWallOffsetNs());
  SharedState shared;
  shared.node = popts.node;
  for (const auto& e : traced) shared.endpoints.push_back(e.endpoint.ToString());
  PollerOptions polls;
  polls.poll_interval = std::chrono::milliseconds(int64_t(a.poll_interval_s * 1000));
  polls.staleness = std::chrono::milliseconds(int64_t(a.staleness_s * 1000));
  PoolPoller poller(
      metrics, [] { return std::chrono::steady_clock::now(); }, polls);

  serve::InspectServerOptions isopts;
  isopts.http.addr = a.inspect_addr;
  isopts.allow_non_loopback = a.inspect_allow_remote;
  isopts.state = [&] { return StateJson(shared, poller, broadcaster, pools, start_ns); };
  serve::InspectServer inspect_server(isopts, broadcaster);
  if (Status s = inspect_server.Start(); !s) {
    metrics_server.Stop();
    return Fail(s.message());
  }
  if (a.inspect_allow_remote)
    LOG_WARN("inspection API on %s is reachable from other hosts (--inspect-allow-remote)",
             a.inspect_addr.c_str());

  // ---- capture ----
  CaptureOptions copts;
  copts.ring_buffer_bytes = a.ring_bytes;
  copts.syscall_cap = a.syscall_cap;
  Status st;
  std::unique_ptr<BpfCapture> cap = BpfCapture::Start(copts, &st);
  if (!cap) {
    inspect_server.Stop();
    metrics_server.Stop();
    return Fail(st.message());
  }
  if (st = cap->SetEndpoints(traced); !st) return Fail(st.message());

  Pipeline pipeline(popts, &metrics);
  pipeline.SetEndpoints(table);
  BroadcastListener listener(broadcaster);
  pipeline.AddListener(&listener);
  TrackerOptions topts;
  // Close events may be lost in a ring overflow: an idle connection whose fd no longer holds a
  // socket in its process is over (docs/capture.md#loss).
  topts.is_alive = [](const ConnInfo& c) { return FdHoldsSocket(c.tgid, c.fd); };
  ConnectionTracker tracker(pipeline, topts);

  std::vector<PoolTarget> scrape;
  for (const PoolSpec& p : pools)
    for (const Endpoint& e : p.endpoints)
      scrape.push_back({p.name, ScrapeAddress(e), ScrapeAddress(e), p.metrics_path, p.engine});
  poller.SetTargets(scrape);
  poller.Start();
  ready = true;

  std::string what;
  for (const auto& e : traced) what += (what.empty() ? "" : ", ") + e.endpoint.ToString();
  LOG_INFO("infertap %s running: tracing %s side of %s; metrics on %s (auth %s%s), inspect on %s",
           kVersion, a.targets.side.c_str(), what.c_str(), a.metrics_addr.c_str(),
           auth_mode.c_str(), a.tls_cert.empty() ? "" : ", TLS", a.inspect_addr.c_str());

  uint64_t last_publish = 0;
  uint64_t published_events = 0, published_bytes = 0;
  while (!StopRequested()) {
    PollResult r = cap->Poll(tracker, 100);
    if (!r.status) {
      LOG_ERROR("%s", r.status.message().c_str());
      break;
    }
    const uint64_t now = MonoNowNs();
    tracker.Flush(now);
    if (now - last_publish >= 1'000'000'000ull) {
      last_publish = now;
      const TrackerStats& ts = tracker.stats();
      metrics.AddCaptureEvents(ts.events - published_events, ts.data_bytes - published_bytes);
      published_events = ts.events;
      published_bytes = ts.data_bytes;
      const KernelStats ks = cap->ReadStats();
      metrics.SetCaptureLostEventsTotal(ks.lost_events);
      metrics.SetConnectionsTracked(int64_t(tracker.connections()));
      std::lock_guard<std::mutex> lock(shared.mu);
      shared.in_flight = pipeline.in_flight();
      shared.connections = tracker.connections();
      shared.capture_events = ts.events;
      shared.lost_events = ks.lost_events;
      shared.parse_errors = pipeline.stats().parse_errors;
      shared.requests = pipeline.stats().requests_received;
      shared.records = pipeline.stats().records;
      shared.ignored = pipeline.stats().ignored_exchanges;
    }
  }
  LOG_INFO("shutting down");
  ready = false;
  poller.Stop();
  cap.reset();  // detaches every program and frees every map
  inspect_server.Stop();
  metrics_server.Stop();
  return 0;
}

}  // namespace

Runner RegisterRun(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
      "run",
      "Run the agent: trace model-server endpoints, serve Prometheus metrics and the local "
      "inspection API (needs root or CAP_BPF+CAP_PERFMON)");
  AddTargetOptions(*cmd, args->targets);
  AddAttributionOptions(*cmd, args->attribution);
  cmd->add_option("--engine", args->engine,
                  "Model-server engine for pool gauges: auto, vllm, sglang, tgi, llama.cpp, "
                  "triton-trtllm, trtllm-serve")
      ->capture_default_str();
  cmd->add_option("--config", args->config,
                  "JSON file with several pools: {\"pools\":[{\"name\",\"targets\",\"engine\","
                  "\"metrics_path\",\"model_alias\"}]}");
  cmd->add_option("--metrics-addr", args->metrics_addr, "Prometheus /metrics, /healthz, /readyz")
      ->capture_default_str();
  cmd->add_option("--metrics-auth", args->metrics_auth,
                  "none, kubernetes (TokenReview + SubjectAccessReview), or auto (kubernetes in "
                  "a cluster, else none)")
      ->check(CLI::IsMember({"none", "auto", "kubernetes"}))
      ->capture_default_str();
  cmd->add_option("--tls-cert", args->tls_cert, "Serve /metrics over TLS with this PEM cert");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key for --tls-cert");
  cmd->add_option("--inspect-addr", args->inspect_addr,
                  "Local inspection API for `infertap top`/`trace` (loopback only)")
      ->capture_default_str();
  cmd->add_flag("--inspect-allow-remote", args->inspect_allow_remote,
                "Allow a non-loopback --inspect-addr (records metadata becomes reachable)");
  cmd->add_option("--model-server-metrics-path", args->metrics_path,
                  "Path of the model servers' Prometheus endpoint")
      ->capture_default_str();
  cmd->add_option("--poll-interval", args->poll_interval_s, "Seconds between pool scrapes")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  cmd->add_option("--metrics-staleness", args->staleness_s,
                  "Seconds a pod's scraped values stay fresh")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  AddRingBufferOption(*cmd, args->ring_bytes);
  cmd->add_option("--syscall-cap", args->syscall_cap,
                  "Bytes captured per syscall; the rest is counted as a gap")
      ->check(CLI::Range(1u, 16u << 20))
      ->capture_default_str();
  cmd->add_option("--inference-path", args->extra_paths,
                  "Extra POST path counted as inference traffic (repeatable)");
  return [args] { return RunAgent(*args); };
}

}  // namespace infertap::cli
