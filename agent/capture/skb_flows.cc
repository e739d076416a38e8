#include "agent/capture/skb_flows.hpp"

namespace infertap {

pcap::FlowOptions LiveFlowOptions() {
  pcap::FlowOptions o;
  o.max_flows = 200'000;
  o.max_pending_bytes = 1 << 20;
  o.reorder_window_ns = 50'000'000;
  o.idle_timeout_ns = 300'000'000'000ull;
  o.tombstone_ns = 10'000'000'000ull;
  return o;
}

SkbFlows::SkbFlows(ConnConsumerFactory& consumers, pcap::FlowOptions options)
    : flows_({}, consumers, options) {}

void SkbFlows::OnEvent(std::span<const uint8_t> record) {
  SkbPiece piece;
  const SkbEventError err = DecodeSkbEvent(record, &piece);
  if (err != SkbEventError::kNone) {
    ++stats_.malformed;
    ++stats_.by_error[size_t(err)];
    return;
  }
  ++stats_.events;
  const SkbSegments s = SegmentsOf(piece);
  flows_.OnSegment(s.data, piece.hdr.ts_ns, s.local, piece.hdr.cgroup_id);
  if (s.has_fin) flows_.OnSegment(s.fin, piece.hdr.ts_ns, s.local, piece.hdr.cgroup_id);
}

}  // namespace infertap
