#include "agent/core/live_capture.hpp"

#include <unistd.h>

#include <cstdio>

#include "agent/capture/skb_capture.hpp"
#include "agent/capture/skb_flows.hpp"
#include "agent/capture/tracker.hpp"

namespace infertap {
namespace {

// True when /proc/<tgid>/fd/<fd> is a socket (the process is alive and still holds the fd).
bool FdHoldsSocket(uint32_t tgid, uint32_t fd) {
  char path[64], target[64];
  std::snprintf(path, sizeof(path), "/proc/%u/fd/%u", tgid, fd);
  ssize_t n = ::readlink(path, target, sizeof(target) - 1);
  if (n <= 0) return false;
  return std::string_view(target, size_t(n)).starts_with("socket:");
}

class SyscallCapture : public LiveCapture {
 public:
  SyscallCapture(std::unique_ptr<BpfCapture> bpf, ConnConsumerFactory& consumers)
      : bpf_(std::move(bpf)), tracker_(consumers, TrackerOptionsLive()) {}

  Status SetEndpoints(const std::vector<TracedEndpoint>& e) override {
    return bpf_->SetEndpoints(e);
  }
  const std::vector<TracedEndpoint>& endpoints() const override { return bpf_->endpoints(); }
  PollResult Poll(int timeout_ms) override { return bpf_->Poll(tracker_, timeout_ms); }
  void Flush(uint64_t now_ns) override { tracker_.Flush(now_ns); }
  LiveCaptureCounters Counters() const override {
    LiveCaptureCounters c;
    c.events = tracker_.stats().events;
    c.data_bytes = tracker_.stats().data_bytes;
    const KernelStats k = bpf_->ReadStats();
    c.lost_events = k.lost_events;
    c.connections = tracker_.connections();
    const TrackerStats& t = tracker_.stats();
    c.detail = {{"kernel_events", k.events},         {"kernel_bytes", k.bytes},
                {"lost_events", k.lost_events},      {"lost_bytes", k.lost_bytes},
                {"conns_full", k.conns_full},        {"kernel_gap_bytes", k.gap_bytes},
                {"resolves", k.resolves},            {"malformed_events", t.malformed},
                {"gap_bytes", t.gap_bytes},          {"duplicate_bytes", t.duplicate_bytes},
                {"reconciled_closes", t.reconciled_closes}};
    return c;
  }
  LiveCaptureInfo Info() const override {
    return {"syscall", std::string(BpfVariantName(bpf_->variant())), bpf_->variant_reason(), {}};
  }

 private:
  static TrackerOptions TrackerOptionsLive() {
    TrackerOptions o;
    // Close events may be lost in a ring overflow: an idle connection whose fd no longer holds
    // a socket in its process is over (docs/capture.md#loss-accounting).
    o.is_alive = [](const ConnInfo& c) { return FdHoldsSocket(c.tgid, c.fd); };
    return o;
  }

  std::unique_ptr<BpfCapture> bpf_;
  ConnectionTracker tracker_;
};

class CgroupCapture : public LiveCapture {
 public:
  CgroupCapture(std::unique_ptr<SkbCapture> skb, ConnConsumerFactory& consumers)
      : skb_(std::move(skb)), flows_(consumers) {}

  Status SetEndpoints(const std::vector<TracedEndpoint>& e) override {
    return skb_->SetEndpoints(e);
  }
  const std::vector<TracedEndpoint>& endpoints() const override { return skb_->endpoints(); }
  CgroupSetChange SetCgroups(const std::vector<std::string>& wanted, uint64_t now_ns) override {
    CgroupSetChange change = skb_->SetCgroups(wanted);
    if (!change.detached_ids.empty()) {
      // Whatever the ring holds from those cgroups was emitted before the detach: deliver it
      // first, then end their connections (an exchange cut short is reported incomplete, as at
      // the end of a capture), instead of holding them until the 300 s idle timeout.
      for (int i = 0; i < 64; ++i) {
        PollResult r = skb_->Poll(flows_, 0);
        if (!r.status || r.events == 0) break;
      }
      for (uint64_t id : change.detached_ids) detach_closed_ += flows_.FinishCgroup(id, now_ns);
    }
    return change;
  }
  std::vector<CgroupAttachmentState> CgroupStates() const override {
    return skb_->cgroup_states();
  }
  PollResult Poll(int timeout_ms) override { return skb_->Poll(flows_, timeout_ms); }
  void Flush(uint64_t now_ns) override { flows_.Flush(now_ns); }
  LiveCaptureCounters Counters() const override {
    LiveCaptureCounters c;
    c.events = flows_.stats().events;
    c.data_bytes = flows_.flow_stats().bytes;
    const SkbKernelStats k = skb_->ReadStats();
    c.lost_events = k.lost_events;
    c.connections = flows_.connections();
    const pcap::FlowStats f = flows_.flow_stats();
    c.detail = {{"kernel_packets", k.packets},
                {"kernel_events", k.events},
                {"kernel_bytes", k.bytes},
                {"lost_events", k.lost_events},
                {"lost_bytes", k.lost_bytes},
                {"skipped_packets", k.skipped},
                {"pure_acks", k.acks},
                {"unreadable_packets", k.unreadable},
                {"malformed_records", flows_.stats().malformed},
                {"flows", f.flows},
                {"gap_bytes", f.gap_bytes},
                {"acked_gap_bytes", f.acked_gap_bytes},
                {"retransmitted_bytes", f.retransmitted_bytes},
                {"idle_closed", f.idle_closed},
                {"dropped_packets", f.dropped_packets},
                {"cgroups_attached", skb_->cgroups().size()},
                {"cgroup_attach_failures", skb_->cgroup_attach_failures()},
                {"detach_closed", detach_closed_}};
    return c;
  }
  LiveCaptureInfo Info() const override {
    return {"cgroup", "cgroup_skb", "--capture-backend cgroup", skb_->cgroups()};
  }

 private:
  std::unique_ptr<SkbCapture> skb_;
  SkbFlows flows_;
  uint64_t detach_closed_ = 0;  // connections ended because their cgroup was detached
};

}  // namespace

CgroupSetChange LiveCapture::SetCgroups(const std::vector<std::string>& wanted, uint64_t) {
  CgroupSetChange change;
  change.failed = wanted;
  if (!wanted.empty()) change.first_error = "the syscall backend attaches to no cgroup";
  return change;
}

std::string_view CaptureBackendName(CaptureBackend b) {
  return b == CaptureBackend::kCgroup ? "cgroup" : "syscall";
}

bool ParseCaptureBackend(std::string_view name, CaptureBackend* out) {
  if (name == "syscall") {
    *out = CaptureBackend::kSyscall;
    return true;
  }
  if (name == "cgroup") {
    *out = CaptureBackend::kCgroup;
    return true;
  }
  return false;
}

std::unique_ptr<LiveCapture> StartLiveCapture(const LiveCaptureOptions& options,
                                              ConnConsumerFactory& consumers, Status* status) {
  if (options.backend == CaptureBackend::kCgroup) {
    SkbCaptureOptions so;
    so.cgroups = options.cgroups;
    so.ring_buffer_bytes = options.capture.ring_buffer_bytes;
    std::unique_ptr<SkbCapture> skb = SkbCapture::Start(so, status);
    if (!skb) return nullptr;
    return std::make_unique<CgroupCapture>(std::move(skb), consumers);
  }
  std::unique_ptr<BpfCapture> bpf = BpfCapture::Start(options.capture, status);
  if (!bpf) return nullptr;
  return std::make_unique<SyscallCapture>(std::move(bpf), consumers);
}

}  // namespace infertap
