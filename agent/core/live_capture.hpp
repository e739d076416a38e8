// The live capture as the agent drives it, whichever backend runs (docs/capture.md
// "Backends"): kernel programs that fill a ring (an EventSource), their endpoint filter, and
// the user-space stage that turns their events into connections, whose consumers the Pipeline
// makes. The agent sees only this interface:
//
//   syscall  BpfCapture (raw syscall tracepoints) → ConnectionTracker → Connection → Pipeline
//   cgroup   SkbCapture (cgroup_skb on the pods'   → SkbFlows → TcpFlows → Connection → Pipeline
//            cgroup v2 directories)                   (the TCP reassembly of pcap replay)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/capture/bpf_capture.hpp"
#include "agent/capture/cgroup_attachments.hpp"
#include "agent/capture/connection.hpp"
#include "agent/capture/endpoint_map.hpp"
#include "agent/capture/event_source.hpp"
#include "agent/common/status.hpp"

namespace infertap {

enum class CaptureBackend { kSyscall, kCgroup };
std::string_view CaptureBackendName(CaptureBackend b);
// "syscall" or "cgroup"; false for anything else.
bool ParseCaptureBackend(std::string_view name, CaptureBackend* out);

struct LiveCaptureOptions {
  CaptureBackend backend = CaptureBackend::kSyscall;
  CaptureOptions capture;  // ring size for both; the rest is the syscall backend's
  // cgroup backend: the cgroup v2 directories to attach to at start (required to attach; may be
  // empty when SetCgroups() provides them later, as Kubernetes mode does).
  std::vector<std::string> cgroups;
};

struct LiveCaptureCounters {
  uint64_t events = 0;       // ring records consumed (well-formed)
  uint64_t data_bytes = 0;   // payload bytes delivered to connections
  uint64_t lost_events = 0;  // ring reservations the kernel programs could not make
  size_t connections = 0;    // connections tracked now
  // The backend's own counters by name (kernel per-CPU counters summed, user-space checks), for
  // /v1/state's capture.counters: what an operator needs to tell loss, filtering and bad records
  // apart.
  std::vector<std::pair<std::string, uint64_t>> detail;
};

// What /v1/state shows under "capture".
struct LiveCaptureInfo {
  std::string backend;               // "syscall" | "cgroup"
  std::string variant;               // syscall: "modern" | "compat"; cgroup: "cgroup_skb"
  std::string reason;                // why this variant
  std::vector<std::string> cgroups;  // cgroup backend: attached now
};

class LiveCapture {
 public:
  virtual ~LiveCapture() = default;
  // The kernel filter, by a diff (agent/capture/endpoint_map.hpp); what it holds afterwards.
  virtual Status SetEndpoints(const std::vector<TracedEndpoint>& endpoints) = 0;
  virtual const std::vector<TracedEndpoint>& endpoints() const = 0;
  // Hands what the ring holds (waiting at most timeout_ms) to the connections.
  virtual PollResult Poll(int timeout_ms) = 0;
  // Periodic step (`now_ns` CLOCK_MONOTONIC): holes past the reorder window become gaps, idle or
  // lost connections end.
  virtual void Flush(uint64_t now_ns) = 0;
  virtual LiveCaptureCounters Counters() const = 0;
  virtual LiveCaptureInfo Info() const = 0;
  // cgroup backend: the attached cgroups become `wanted`, by a diff (attach new, detach gone,
  // retry failed; agent/capture/cgroup_attachments.hpp), and the connections of every cgroup it
  // detached end now (`now_ns` CLOCK_MONOTONIC) instead of at the idle timeout. The syscall
  // backend attaches to no cgroup: every wanted one is reported failed.
  virtual CgroupSetChange SetCgroups(const std::vector<std::string>& wanted, uint64_t now_ns);
  // Every wanted cgroup and whether it is attached (none for the syscall backend).
  virtual std::vector<CgroupAttachmentState> CgroupStates() const { return {}; }
};

// Checks privileges, loads and attaches the backend's programs. `consumers` (the Pipeline)
// outlives the result. On failure returns null and *status says why, in one line.
std::unique_ptr<LiveCapture> StartLiveCapture(const LiveCaptureOptions& options,
                                              ConnConsumerFactory& consumers, Status* status);

}  // namespace infertap
