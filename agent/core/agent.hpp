// The composition root of `infertap run` (docs/architecture.md): one object that owns capture,
// connection tracker, pipeline, metrics, pool poller and the two HTTP servers, and applies the
// topology its TopologySource publishes.
//
// Threads: Run() is the capture loop (ring buffer → tracker → pipeline) and also the only thread
// that applies a topology, so the pipeline's attribution table is swapped on the pipeline's own
// thread. A source's notification only hands the snapshot over; the loop picks it up within one
// poll timeout (100 ms) and applies, in this order:
//   1. the kernel endpoint map, by a diff (insert new, then delete gone: never empty or
//      half-written; agent/capture/endpoint_map.hpp);
//   2. events already in the ring are drained with a table holding both sets, so a connection
//      opened just before the change is attributed as it was;
//   3. the pipeline's attribution table (open connections keep the entry they had at open);
//   4. the poller's targets (a pod that left loses its per-pod gauges);
//   5. with the cgroup backend in Kubernetes mode, the pods' cgroups (attach new pods', detach
//      gone pods' and end their connections), also retried every second for pods whose cgroup
//      is not there yet (the kubelet creates it after the pod object is seen).
// A failed step is logged, shown in /v1/state, and retried every second.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/core/live_capture.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/pipeline/pipeline.hpp"
#include "agent/poller/poller.hpp"
#include "agent/topology/topology.hpp"

namespace infertap {

namespace serve {
class Authorizer;
class MetricsServer;
class InspectServer;
class RecordBroadcaster;
}  // namespace serve

struct AgentOptions {
  uint32_t roles = IT_ROLE_SERVER;  // --capture-side as IT_ROLE_* mask
  std::string side = "server";      // for the start-up log
  PipelineOptions pipeline;         // node, exchange config (model names: the topology)
  MetricsOptions metrics;
  std::string metrics_addr = ":9090";
  std::string auth_mode = "none";  // effective --metrics-auth (validated)
  // Required when auth_mode is "kubernetes" (Start() refuses to serve /metrics without it).
  std::shared_ptr<serve::Authorizer> authorizer;
  std::string tls_cert, tls_key;
  std::string inspect_addr = "127.0.0.1:9091";
  bool inspect_allow_remote = false;
  poller::PollerOptions poller;
  CaptureOptions capture;  // ring size (both backends), the syscall backend's options
  // --capture-backend: syscall tracepoints (default) or cgroup_skb on `capture_cgroups`
  // (docs/capture.md "Backends"; server side only).
  CaptureBackend capture_backend = CaptureBackend::kSyscall;
  std::vector<std::string> capture_cgroups;
  // Kubernetes mode with the cgroup backend: the cgroup v2 root under which each model-server
  // pod's cgroup is found from its UID (agent/capture/pod_cgroup.hpp). The pods' cgroups are
  // attached (with capture_cgroups, which the CLI leaves empty in Kubernetes mode) when the
  // topology changes, and pods whose cgroup is not there yet (or whose attach failed) are
  // retried every second. "": no per-pod cgroups.
  std::string pod_cgroup_root;
};

// One model-server pod's cgroup as /v1/state shows it (capture.pods).
struct PodCgroupStatus {
  std::string ns, pod, uid;
  std::string cgroup;  // its directory, "" when not found
  bool attached = false;
  std::string status;  // "attached", "cgroup not found under ROOT (...)", "attach failed: ..."
  bool operator==(const PodCgroupStatus&) const = default;
};

// What the pipeline, the kernel filter and the poller get for one topology.
struct TopologyTables {
  std::vector<TracedEndpoint> traced;  // deduplicated by endpoint, first pool wins
  std::shared_ptr<const AttributionTable> attribution;
  std::vector<poller::PoolTarget> targets;
};
TopologyTables DeriveTables(const topology::Topology& t, uint32_t roles);
// `next`'s entries first, then `prev`'s for endpoints `next` lacks (used while draining).
std::shared_ptr<const AttributionTable> UnionTable(const AttributionTable& next,
                                                   const AttributionTable& prev);

class Agent {
 public:
  Agent(AgentOptions options, std::unique_ptr<topology::TopologySource> source);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Privileges, servers, BPF load/attach, the source. On failure everything started is
  // stopped again and the status says what failed.
  Status Start();
  // The capture loop, until `stop` returns true or capture fails (then the error).
  Status Run(const std::function<bool()>& stop);
  // Stops the poller, detaches capture, stops the servers. Idempotent; the destructor calls it.
  void Shutdown();

  // Not owned; call before Start().
  void AddRecordListener(RecordListener* listener) { extra_listeners_.push_back(listener); }
  std::string StateJson() const;
  // Version of the topology applied last (0: none yet).
  uint64_t applied_version() const { return applied_version_.load(); }

 private:
  void OnTopology(std::shared_ptr<const topology::Topology> t);
  void ApplyPending(uint64_t now_ns);
  void Publish(uint64_t now_ns);
  // Resolves the cgroup of every pod of the wanted topology and makes the attached set follow
  // (AgentOptions::pod_cgroup_root).
  void SyncPodCgroups(uint64_t now_ns);

  const AgentOptions opt_;
  const std::unique_ptr<topology::TopologySource> source_;
  const uint64_t start_ns_;

  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<serve::RecordBroadcaster> broadcaster_;
  std::unique_ptr<poller::PoolPoller> poller_;
  std::unique_ptr<serve::MetricsServer> metrics_server_;
  std::unique_ptr<serve::InspectServer> inspect_server_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<LiveCapture> capture_;  // after pipeline_: its connections' consumers
  class Broadcast;
  std::unique_ptr<Broadcast> broadcast_listener_;
  std::vector<RecordListener*> extra_listeners_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> applied_version_{0};

  // Handed over by the source (any thread), taken by the capture loop.
  std::mutex pending_mu_;
  std::shared_ptr<const topology::Topology> pending_;
  // Capture-loop state.
  std::shared_ptr<const topology::Topology> wanted_;  // last received; retried while failing
  bool apply_failed_ = false;
  uint64_t last_retry_ns_ = 0, last_publish_ns_ = 0, last_flush_ns_ = 0, last_cgroup_sync_ns_ = 0;
  std::vector<PodCgroupStatus> pod_cgroups_;  // the last SyncPodCgroups pass (logs changes)
  uint64_t published_events_ = 0, published_bytes_ = 0;

  // What /v1/state shows, refreshed by the capture loop.
  mutable std::mutex state_mu_;
  struct Shared {
    std::shared_ptr<const topology::Topology> topology;  // applied
    std::string apply_error;                             // "" when the last apply succeeded
    std::vector<std::string> kernel_endpoints;           // what the kernel filter holds
    LiveCaptureInfo capture;                             // which capture programs run, why
    std::vector<PodCgroupStatus> pod_cgroups;            // Kubernetes mode, cgroup backend
    std::vector<std::pair<std::string, uint64_t>> capture_detail;  // LiveCaptureCounters::detail
    size_t connections = 0;
    uint64_t capture_events = 0, lost_events = 0, parse_errors = 0, requests = 0, records = 0,
             ignored = 0;
  } shared_;
};

}  // namespace infertap
