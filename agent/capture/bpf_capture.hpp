// RAII owner of the capture BPF programs: open → configure → load → attach in Start(); the
// destructor detaches every link and frees every map (no pins, nothing left in the kernel).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/capture/endpoint_map.hpp"
#include "agent/capture/event_source.hpp"
#include "agent/common/status.hpp"

struct bpf_object_skeleton;
struct bpf_map;

namespace infertap {

class RingReader;

// Which build of the kernel programs runs (docs/capture.md#kernel-requirements). Both emit the
// same events; kAuto picks kModern when the kernel has everything it needs, else kCompat.
enum class BpfVariant { kAuto, kModern, kCompat };
std::string_view BpfVariantName(BpfVariant v);

// What the kernel offers the capture programs, found by libbpf's feature probes and by loading
// tiny test programs (never by reading the version string). Needs root or CAP_BPF.
struct KernelFeatures {
  bool probed = false;  // false: probing itself failed (see error)
  std::string error;
  bool btf = false;                // /sys/kernel/btf/vmlinux (CO-RE): both variants need it
  bool ringbuf = false;            // BPF ring buffer (5.8): both variants need it
  bool task_storage = false;       // task storage map + bpf_task_storage_get in tracepoints
  bool current_task_btf = false;   // bpf_get_current_task_btf (5.11)
  bool fetch_atomics = false;      // atomic fetch-and-add whose result is used (5.12)
  bool for_each_map_elem = false;  // bpf_for_each_map_elem (5.13)
  bool loop = false;               // bpf_loop (5.17)
  // "" when the modern object can run, else the missing features, comma separated.
  std::string MissingForModern() const;
  // One line per feature, "name: yes|no (what it is)".
  std::string Describe() const;
};
KernelFeatures ProbeKernelFeatures();

// The variant asked for by INFERTAP_BPF_VARIANT (auto, modern, compat; unset = auto). A bad
// value sets *error.
BpfVariant VariantFromEnvironment(std::string* error);

struct CaptureOptions {
  uint32_t ring_buffer_bytes = 16u << 20;         // power of two, >= 4096
  uint32_t syscall_cap = IT_DEFAULT_SYSCALL_CAP;  // bytes captured per syscall
  bool trace_self = false;                        // tests only: also trace this process
  // kAuto also consults INFERTAP_BPF_VARIANT (tests force the compatible variant with it).
  BpfVariant variant = BpfVariant::kAuto;
  uint32_t conns_max = 0;  // tests only: bound of the kernel's connection table (0: 65536)
};

struct KernelStats {
  uint64_t events = 0, bytes = 0, lost_events = 0, lost_bytes = 0, conns_full = 0, gap_bytes = 0,
           resolves = 0;
};

// Checks for root or CAP_BPF + CAP_PERFMON. On failure the message says what is missing.
Status CheckCapturePrivileges();

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
  // Programs with a live link (counted after each attach).
  size_t attached_programs() const { return links_; }
  // The variant that runs (kModern or kCompat) and why it was chosen, for the log, /v1/state
  // and `infertap version --features`.
  BpfVariant variant() const { return variant_; }
  const std::string& variant_reason() const { return variant_reason_; }
  // Name and fd of every loaded capture program (benchmarks read the kernel's own run-time
  // accounting, bpf_prog_info.run_time_ns / run_cnt, per program: docs/performance.md).
  std::vector<std::pair<std::string, int>> ProgramFds() const;

 private:
  BpfCapture() = default;

  size_t CountLinks() const;

  // The loaded object, whichever variant (both skeletons have the same maps and globals).
  void* skel_ = nullptr;
  void (*destroy_)(void*) = nullptr;
  bpf_object_skeleton* skeleton_ = nullptr;
  bpf_map* events_map_ = nullptr;
  bpf_map* endpoints_map_ = nullptr;
  bpf_map* stats_map_ = nullptr;
  __u64* filter_epoch_ = nullptr;  // in the mmap'd .data
  BpfVariant variant_ = BpfVariant::kModern;
  std::string variant_reason_;
  std::unique_ptr<RingReader> ring_;
  size_t links_ = 0;
  int64_t wall_offset_ns_ = 0;
  std::vector<TracedEndpoint> endpoints_;
};

}  // namespace infertap
