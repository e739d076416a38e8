// libbpf at the boundary, shared by the two capture loaders (the syscall programs,
// agent/capture/bpf_capture.*, and the cgroup_skb programs, agent/capture/skb_capture.*): the
// log hook, the endpoint map writer, per-CPU counter sums and the ring-buffer reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "agent/capture/endpoint_map.hpp"
#include "agent/capture/event_source.hpp"
#include "agent/common/status.hpp"

struct ring_buffer;

namespace infertap {

// Capabilities by number (linux/capability.h; CAP_BPF and CAP_PERFMON need 5.8 headers).
inline constexpr int kCapNetAdmin = 12;
inline constexpr int kCapSysAdmin = 21;
inline constexpr int kCapPerfmon = 38;
inline constexpr int kCapBpf = 39;

// Ok for root, for CAP_SYS_ADMIN, or when every capability of `needed` is effective; otherwise
// "capturing needs root or CAP_A+CAP_B; this process lacks ..." with what is missing.
[[nodiscard]] Status CheckCapabilities(const std::vector<std::pair<int, std::string>>& needed);

// Routes libbpf's messages to our log: quiet unless debug logging is on, but the last warning is
// kept so that a failed load or attach can say why (LastLibbpfMessage). Idempotent.
void InstallLibbpfLogging();
std::string LastLibbpfMessage();

// The `endpoints` hash map of a loaded object (struct it_endpoint_key → it_endpoint_value), as
// ApplyEndpointDiff writes it.
class KernelEndpointMap : public EndpointMapWriter {
 public:
  explicit KernelEndpointMap(int map_fd) : fd_(map_fd) {}
  int Upsert(const TracedEndpoint& e) override;
  int Remove(const Endpoint& e) override;

 private:
  int fd_;
};

// Reads slots [0, count) of a per-CPU array of u64 counters, each summed over the CPUs. A slot
// that cannot be read is 0.
std::vector<uint64_t> SumPerCpuCounters(int map_fd, uint32_t count);

// The consumer side of one BPF ring buffer: hands each record to an EventSink.
class RingReader {
 public:
  RingReader() = default;
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  [[nodiscard]] Status Open(int ring_map_fd);
  // Waits at most timeout_ms for a wakeup, then delivers everything the ring holds. The
  // programs submit without waking us until the ring fills past a mark (cheaper per event), so
  // the timeout bounds the latency otherwise.
  PollResult Poll(EventSink& sink, int timeout_ms);

 private:
  static int OnRecord(void* ctx, void* data, size_t size);
  ring_buffer* rb_ = nullptr;
  EventSink* sink_ = nullptr;  // valid during Poll only
  size_t delivered_ = 0;
};

}  // namespace infertap
