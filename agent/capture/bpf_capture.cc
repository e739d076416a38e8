#include "agent/capture/bpf_capture.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <mutex>
#include <string>

#include "agent/common/log.hpp"
#include "capture.skel.h"

namespace infertap {
namespace {

constexpr int kCapBpf = 39;      // CAP_BPF (Linux 5.8)
constexpr int kCapPerfmon = 38;  // CAP_PERFMON (Linux 5.8)
constexpr int kCapSysAdmin = 21;

// libbpf's messages: kept quiet unless debug logging is on, but the last few warnings are kept
// so a failed load can say why.
std::mutex g_libbpf_mu;
std::string g_libbpf_last;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list ap) {
  // Verifier logs can be long: format into a growing string, not a fixed buffer.
  va_list copy;
  va_copy(copy, ap);
  const int len = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (len < 0) return 0;
  std::string msg(size_t(len) + 1, '\0');
  std::vsnprintf(msg.data(), msg.size(), fmt, ap);
  msg.resize(size_t(len));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  if (level != LIBBPF_DEBUG) {
    std::lock_guard<std::mutex> lock(g_libbpf_mu);
    g_libbpf_last = msg.substr(0, 300);
  }
  if (GetLogLevel() == LogLevel::kDebug) std::fprintf(stderr, "libbpf: %s\n", msg.c_str());
  return 0;
}

std::string LastLibbpfMessage() {
  std::lock_guard<std::mutex> lock(g_libbpf_mu);
  return g_libbpf_last;
}

bool HasCap(const __user_cap_data_struct data[2], int cap) {
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

Status CheckCapturePrivileges() {
  if (geteuid() == 0) return Status::Ok();
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0)
    return Status::FromErrno("cannot read process capabilities", errno);
  if (HasCap(data, kCapSysAdmin)) return Status::Ok();
  std::string missing;
  if (!HasCap(data, kCapBpf)) missing += "CAP_BPF";
  if (!HasCap(data, kCapPerfmon)) missing += missing.empty() ? "CAP_PERFMON" : " and CAP_PERFMON";
  if (missing.empty()) return Status::Ok();
  return Status::Error("capturing needs root or CAP_BPF+CAP_PERFMON; this process lacks " +
                       missing + " (run with sudo, or grant the capabilities)");
}

Status EnsureTracefs(bool* mounted) {
  *mounted = false;
  struct stat st {};
  if (stat("/sys/kernel/tracing/events", &st) == 0) return Status::Ok();
  if (stat("/sys/kernel/debug/tracing/events", &st) == 0) return Status::Ok();
  if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0)
    return Status::FromErrno(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed (mount it with "
        "'mount -t tracefs tracefs /sys/kernel/tracing', or mount the host's into the pod)",
        errno);
  *mounted = true;
  return Status::Ok();
}

BpfCapture::~BpfCapture() {
  if (rb_) ring_buffer__free(rb_);
  // Destroying the skeleton detaches every link and closes every map and program fd.
  if (skel_) capture_bpf__destroy(skel_);
}

std::unique_ptr<BpfCapture> BpfCapture::Start(const CaptureOptions& options, Status* status) {
  libbpf_set_print(LibbpfPrint);
  if (Status s = CheckCapturePrivileges(); !s) {
    *status = s;
    return nullptr;
  }
  bool mounted = false;
  if (Status s = EnsureTracefs(&mounted); !s) {
    *status = s;
    return nullptr;
  }
  if (mounted) LOG_INFO("tracefs was not mounted: mounted it at /sys/kernel/tracing");

  uint32_t ring = options.ring_buffer_bytes;
  if (std::string why = CheckRingBufferSize(ring); !why.empty()) {
    *status = Status::Error(why);
    return nullptr;
  }

  std::unique_ptr<BpfCapture> cap(new BpfCapture());
  cap->ncpus_ = libbpf_num_possible_cpus();
  if (cap->ncpus_ <= 0) cap->ncpus_ = 1;
  cap->skel_ = capture_bpf__open();
  if (!cap->skel_) {
    *status = Status::FromErrno("cannot open the capture BPF object", errno);
    return nullptr;
  }
  capture_bpf* s = cap->skel_;
  s->rodata->agent_tgid = options.trace_self ? 0 : static_cast<uint32_t>(getpid());
  s->rodata->syscall_cap = options.syscall_cap;
  // The mark scales with the ring: a fixed one above the ring size would never wake us.
  s->rodata->wakeup_bytes = IT_WAKEUP_BYTES(uint64_t(ring));
  bpf_map__set_max_entries(s->maps.events, ring);

  if (int err = capture_bpf__load(s); err) {
    *status = Status::FromErrno(
        "cannot load the capture BPF programs (" + LastLibbpfMessage() + ")", err);
    return nullptr;
  }
  if (int err = capture_bpf__attach(s); err) {
    std::string hint;
    if (err == -ENOENT) hint = "; is tracefs mounted at /sys/kernel/tracing?";
    *status = Status::FromErrno(
        "cannot attach the capture tracepoints (" + LastLibbpfMessage() + hint + ")", err);
    return nullptr;
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, s->obj)++ cap->links_;

  cap->rb_ =
      ring_buffer__new(bpf_map__fd(s->maps.events), &BpfCapture::OnRingEvent, cap.get(), nullptr);
  if (!cap->rb_) {
    *status = Status::FromErrno("cannot open the capture ring buffer", errno);
    return nullptr;
  }
  cap->wall_offset_ns_ = CurrentWallOffsetNs();
  *status = Status::Ok();
  return cap;
}

namespace {

class KernelEndpointMap : public EndpointMapWriter {
 public:
  explicit KernelEndpointMap(int fd) : fd_(fd) {}
  int Upsert(const TracedEndpoint& e) override {
    it_endpoint_key k = KeyOf(e.endpoint);
    it_endpoint_value v{e.roles, e.pool_index};
    return bpf_map_update_elem(fd_, &k, &v, BPF_ANY) == 0 ? 0 : errno;
  }
  int Remove(const Endpoint& e) override {
    it_endpoint_key k = KeyOf(e);
    return bpf_map_delete_elem(fd_, &k) == 0 ? 0 : errno;
  }

 private:
  static it_endpoint_key KeyOf(const Endpoint& e) {
    it_endpoint_key k{};
    std::memcpy(k.addr, e.addr.data(), 16);
    k.port = e.port;
    return k;
  }
  int fd_;
};

}  // namespace

Status BpfCapture::SetEndpoints(const std::vector<TracedEndpoint>& endpoints) {
  KernelEndpointMap map(bpf_map__fd(skel_->maps.endpoints));
  EndpointDiffResult res =
      ApplyEndpointDiff(map, endpoints_, endpoints, bpf_map__max_entries(skel_->maps.endpoints));
  endpoints_ = std::move(res.in_map);
  // Cached per-fd decisions carry the epoch they were made in; moving it re-decides them.
  if (res.changed()) __atomic_add_fetch(&skel_->data->filter_epoch, 1, __ATOMIC_SEQ_CST);
  return res.status;
}

int BpfCapture::OnRingEvent(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfCapture*>(ctx);
  if (self->sink_) {
    self->sink_->OnEvent(std::span<const uint8_t>(static_cast<const uint8_t*>(data), size));
    ++self->delivered_;
  }
  return 0;
}

PollResult BpfCapture::Poll(EventSink& sink, int timeout_ms) {
  PollResult res;
  sink_ = &sink;
  delivered_ = 0;
  // The kernel side wakes us only when the ring fills past a threshold (cheaper per event);
  // the timeout bounds the latency otherwise. consume() picks up what arrived without wakeup.
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n >= 0) n = ring_buffer__consume(rb_);
  sink_ = nullptr;
  if (n < 0 && n != -EINTR) res.status = Status::FromErrno("ring buffer poll failed", n);
  res.events = delivered_;
  return res;
}

Status BpfCapture::SetAttached(bool attached) {
  if (!attached) {
    capture_bpf__detach(skel_);
    return Status::Ok();
  }
  if (int err = capture_bpf__attach(skel_); err)
    return Status::FromErrno("cannot attach the capture tracepoints (" + LastLibbpfMessage() + ")",
                             err);
  return Status::Ok();
}

std::vector<std::pair<std::string, int>> BpfCapture::ProgramFds() const {
  std::vector<std::pair<std::string, int>> out;
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel_->obj) {
    out.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
  }
  return out;
}

KernelStats BpfCapture::ReadStats() const {
  KernelStats out;
  const int fd = bpf_map__fd(skel_->maps.stats);
  std::vector<uint64_t> vals(ncpus_);
  auto sum = [&](uint32_t idx) {
    uint64_t total = 0;
    if (bpf_map_lookup_elem(fd, &idx, vals.data()) == 0)
      for (uint64_t v : vals) total += v;
    return total;
  };
  out.events = sum(IT_STAT_EVENTS);
  out.bytes = sum(IT_STAT_BYTES);
  out.lost_events = sum(IT_STAT_LOST_EVENTS);
  out.lost_bytes = sum(IT_STAT_LOST_BYTES);
  out.conns_full = sum(IT_STAT_CONNS_FULL);
  out.gap_bytes = sum(IT_STAT_GAP_BYTES);
  out.resolves = sum(IT_STAT_RESOLVES);
  return out;
}

}  // namespace infertap
