// RAII owner of the cgroup backend's kernel programs (bpf/capture_skb.bpf.c; docs/capture.md
// "The cgroup backend"): open → configure → load → attach `cgroup_skb/ingress` and
// `cgroup_skb/egress` to every given cgroup v2 directory in Start(); SetCgroups() changes that
// set later by a diff (agent/capture/cgroup_attachments.hpp: Kubernetes mode follows the pods);
// the destructor detaches every link and frees every map (links, not pins: nothing stays in the
// kernel).
//
// What it delivers through the EventSource seam are raw ring records (struct it_skb_event);
// agent/capture/skb_flows.hpp turns them into connections.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/capture/cgroup_attachments.hpp"
#include "agent/capture/endpoint_map.hpp"
#include "agent/capture/event_source.hpp"
#include "agent/common/status.hpp"

struct capture_skb_bpf;
struct bpf_link;

namespace infertap {

class RingReader;

struct SkbCaptureOptions {
  // cgroup v2 directories (e.g. a pod's /sys/fs/cgroup/kubepods.slice/...): the programs see
  // the packets of sockets created by processes inside them or their descendants. Attached in
  // Start(), where a failure is fatal; may be empty when SetCgroups() provides them later.
  std::vector<std::string> cgroups;
  uint32_t ring_buffer_bytes = 16u << 20;  // power of two, >= IT_RING_MIN_BYTES
};

// The per-CPU counters of bpf/infertap_abi.h enum it_skb_stat, summed.
struct SkbKernelStats {
  uint64_t packets = 0, events = 0, bytes = 0, lost_events = 0, lost_bytes = 0, skipped = 0,
           acks = 0, unreadable = 0;
};

// Root, or CAP_BPF + CAP_NET_ADMIN (cgroup_skb programs are networking programs: loading and
// attaching them needs CAP_NET_ADMIN, not CAP_PERFMON).
Status CheckSkbCapturePrivileges();

// "" when `path` is a cgroup v2 directory this process can open; otherwise one line saying
// what is wrong (missing, not a directory, not cgroup v2, permission).
std::string CheckCgroupDirectory(const std::string& path);

class SkbCapture : public EventSource, private CgroupAttacher {
 public:
  ~SkbCapture() override;
  static std::unique_ptr<SkbCapture> Start(const SkbCaptureOptions& options, Status* status);

  // The traced endpoints (role server only: the packets' local side), by a diff
  // (agent/capture/endpoint_map.hpp). Every packet is looked up, so a change applies at once.
  Status SetEndpoints(const std::vector<TracedEndpoint>& endpoints);
  const std::vector<TracedEndpoint>& endpoints() const { return endpoints_; }

  PollResult Poll(EventSink& sink, int timeout_ms) override;
  int64_t WallOffsetNs() const override { return wall_offset_ns_; }
  SkbKernelStats ReadStats() const;

  // The attached cgroups become `wanted` (attach new, detach gone, retry failed; never fatal:
  // agent/capture/cgroup_attachments.hpp). The result names what changed.
  CgroupSetChange SetCgroups(const std::vector<std::string>& wanted);
  // Attached now, in path order.
  std::vector<std::string> cgroups() const { return attachments_->AttachedPaths(); }
  std::vector<CgroupAttachmentState> cgroup_states() const { return attachments_->States(); }
  uint64_t cgroup_attach_failures() const { return attachments_->attach_failures(); }
  // Name and fd of both programs (benchmarks read the kernel's run-time accounting).
  std::vector<std::pair<std::string, int>> ProgramFds() const;

 private:
  SkbCapture() = default;
  std::unique_ptr<Attachment> Attach(const std::string& path, uint64_t* cgroup_id,
                                     std::string* error) override;

  capture_skb_bpf* skel_ = nullptr;
  std::unique_ptr<CgroupAttachments> attachments_;  // before skel_ goes: the links use it
  std::unique_ptr<RingReader> ring_;
  std::vector<TracedEndpoint> endpoints_;
  int64_t wall_offset_ns_ = 0;
};

}  // namespace infertap
