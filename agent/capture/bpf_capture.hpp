// RAII owner of the capture BPF programs: open → configure → load → attach in Start(); the
// destructor detaches every link and frees every map (no pins, nothing left in the kernel).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/capture/endpoint_map.hpp"
#include "agent/capture/event_source.hpp"
#include "agent/common/status.hpp"

struct capture_bpf;  // generated skeleton
struct ring_buffer;

namespace infertap {

struct CaptureOptions {
  uint32_t ring_buffer_bytes = 16u << 20;         // power of two, >= 4096
  uint32_t syscall_cap = IT_DEFAULT_SYSCALL_CAP;  // bytes captured per syscall
  bool trace_self = false;                        // tests only: also trace this process
};

struct KernelStats {
  uint64_t events = 0, bytes = 0, lost_events = 0, lost_bytes = 0, conns_full = 0, gap_bytes = 0,
           resolves = 0;
};

// Checks for root or CAP_BPF + CAP_PERFMON. On failure the message says what is missing.
Status CheckCapturePrivileges();

// Mounts tracefs at /sys/kernel/tracing when it is not mounted (fresh machines have neither
// tracefs nor debugfs; tracepoint attach fails with ENOENT without it). Sets *mounted.
Status EnsureTracefs(bool* mounted);

class BpfCapture : public EventSource {
 public:
  ~BpfCapture() override;
  static std::unique_ptr<BpfCapture> Start(const CaptureOptions& options, Status* status);

  // Changes the traced endpoint set (kernel filter) to `endpoints` by a diff (insert new, then
  // delete gone: endpoint_map.hpp) and makes every cached decision stale. On a partial failure
  // the map and endpoints() both hold exactly what succeeded; calling again retries.
  Status SetEndpoints(const std::vector<TracedEndpoint>& endpoints);
  // What the kernel filter holds.
  const std::vector<TracedEndpoint>& endpoints() const { return endpoints_; }

  PollResult Poll(EventSink& sink, int timeout_ms) override;
  int64_t WallOffsetNs() const override { return wall_offset_ns_; }
  KernelStats ReadStats() const;
  // Detaches/re-attaches the programs, keeping maps and the loaded programs (benchmarks
  // alternate attached and detached runs without paying the verifier each time).
  Status SetAttached(bool attached);
  size_t attached_programs() const { return links_; }
  // Name and fd of every loaded capture program (benchmarks read the kernel's own run-time
  // accounting, bpf_prog_info.run_time_ns / run_cnt, per program: docs/performance.md).
  std::vector<std::pair<std::string, int>> ProgramFds() const;

 private:
  BpfCapture() = default;
  static int OnRingEvent(void* ctx, void* data, size_t size);

  capture_bpf* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  EventSink* sink_ = nullptr;  // valid during Poll only
  size_t delivered_ = 0;
  size_t links_ = 0;
  int64_t wall_offset_ns_ = 0;
  std::vector<TracedEndpoint> endpoints_;
  int ncpus_ = 1;
};

}  // namespace infertap
