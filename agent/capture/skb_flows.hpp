// The cgroup backend's user-space half (docs/capture.md "The cgroup backend"): ring records of
// packets in, per-connection ordered byte streams out, through exactly the TCP reassembly pcap
// replay uses (agent/replay/tcp_flows.hpp) and its Connection objects, whose consumers the given
// factory makes (the Pipeline in the agent). Records therefore come from the same path as on
// `infertap replay FILE.pcap`.
//
// Each record is checked and decoded (agent/capture/skb_events.hpp); a bad one is counted by
// reason and skipped. The kernel matched each packet's local endpoint, so that endpoint is the
// flow's server: no list of servers is kept here, and an endpoint change needs nothing from this
// class (new packets simply stop or start arriving). Each flow remembers the cgroup id of its
// first record, so the connections of a cgroup the programs leave can be ended at once.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "agent/capture/event_source.hpp"
#include "agent/capture/skb_events.hpp"
#include "agent/replay/tcp_flows.hpp"

namespace infertap {

// The live defaults: the syscall tracker's buffering and timeouts (agent/capture/tracker.hpp),
// and tombstones kept 10 s (late retransmissions and the last ACK come within a few RTOs).
pcap::FlowOptions LiveFlowOptions();

struct SkbFlowStats {
  uint64_t events = 0;     // well-formed records consumed
  uint64_t malformed = 0;  // records rejected by the checks (sum of by_error)
  std::array<uint64_t, size_t(SkbEventError::kCount)> by_error{};
};

class SkbFlows : public EventSink {
 public:
  SkbFlows(ConnConsumerFactory& consumers, pcap::FlowOptions options = LiveFlowOptions());

  void OnEvent(std::span<const uint8_t> record) override;
  // Holes past the reorder window, acknowledged-but-lost bytes, idle flows, old tombstones
  // (TcpFlows::Flush). `now_ns` is CLOCK_MONOTONIC, the clock of the records.
  void Flush(uint64_t now_ns) { flows_.Flush(now_ns); }
  // Ends every connection (end of capture).
  void FinishAll(uint64_t ts_ns) { flows_.FinishAll(ts_ns); }
  // Ends the connections of sockets in cgroup `cgroup_id` (the record's cgroup_id when the
  // connection started): the programs were detached from it, none of its packets will come.
  size_t FinishCgroup(uint64_t cgroup_id, uint64_t ts_ns) {
    return flows_.FinishTagged(cgroup_id, ts_ns);
  }

  size_t connections() const { return flows_.open_flows(); }
  const SkbFlowStats& stats() const { return stats_; }
  pcap::FlowStats flow_stats() const { return flows_.stats(); }

 private:
  pcap::TcpFlows flows_;
  SkbFlowStats stats_;
};

}  // namespace infertap
