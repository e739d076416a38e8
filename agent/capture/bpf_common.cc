#include "agent/capture/bpf_common.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "agent/common/log.hpp"

namespace infertap {
namespace {

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

it_endpoint_key KeyOf(const Endpoint& e) {
  it_endpoint_key k{};
  std::memcpy(k.addr, e.addr.data(), 16);
  k.port = e.port;
  return k;
}

bool HasCap(const __user_cap_data_struct data[2], int cap) {
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

Status CheckCapabilities(const std::vector<std::pair<int, std::string>>& needed) {
  if (geteuid() == 0) return Status::Ok();
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0)
    return Status::FromErrno("cannot read process capabilities", errno);
  if (HasCap(data, kCapSysAdmin)) return Status::Ok();
  std::string all, missing;
  for (const auto& [cap, name] : needed) {
    all += (all.empty() ? "" : "+") + name;
    if (!HasCap(data, cap)) missing += (missing.empty() ? "" : " and ") + name;
  }
  if (missing.empty()) return Status::Ok();
  return Status::Error("capturing needs root or " + all + "; this process lacks " + missing +
                       " (run with sudo, or grant the capabilities)");
}

void InstallLibbpfLogging() { libbpf_set_print(LibbpfPrint); }

std::string LastLibbpfMessage() {
  std::lock_guard<std::mutex> lock(g_libbpf_mu);
  return g_libbpf_last;
}

int KernelEndpointMap::Upsert(const TracedEndpoint& e) {
  it_endpoint_key k = KeyOf(e.endpoint);
  it_endpoint_value v{e.roles, e.pool_index};
  return bpf_map_update_elem(fd_, &k, &v, BPF_ANY) == 0 ? 0 : errno;
}

int KernelEndpointMap::Remove(const Endpoint& e) {
  it_endpoint_key k = KeyOf(e);
  return bpf_map_delete_elem(fd_, &k) == 0 ? 0 : errno;
}

std::vector<uint64_t> SumPerCpuCounters(int map_fd, uint32_t count) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) ncpus = 1;
  std::vector<uint64_t> vals(static_cast<size_t>(ncpus));
  std::vector<uint64_t> out(count, 0);
  for (uint32_t idx = 0; idx < count; ++idx) {
    if (bpf_map_lookup_elem(map_fd, &idx, vals.data()) != 0) continue;
    for (uint64_t v : vals) out[idx] += v;
  }
  return out;
}

RingReader::~RingReader() {
  if (rb_) ring_buffer__free(rb_);
}

Status RingReader::Open(int ring_map_fd) {
  rb_ = ring_buffer__new(ring_map_fd, &RingReader::OnRecord, this, nullptr);
  if (!rb_) return Status::FromErrno("cannot open the capture ring buffer", errno);
  return Status::Ok();
}

int RingReader::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<RingReader*>(ctx);
  if (self->sink_) {
    self->sink_->OnEvent(std::span<const uint8_t>(static_cast<const uint8_t*>(data), size));
    ++self->delivered_;
  }
  return 0;
}

PollResult RingReader::Poll(EventSink& sink, int timeout_ms) {
  PollResult res;
  sink_ = &sink;
  delivered_ = 0;
  // consume() picks up what arrived without a wakeup.
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n >= 0) n = ring_buffer__consume(rb_);
  sink_ = nullptr;
  if (n < 0 && n != -EINTR) res.status = Status::FromErrno("ring buffer poll failed", n);
  res.events = delivered_;
  return res;
}

}  // namespace infertap
