// Decoding the cgroup backend's ring records (struct it_skb_event, bpf/infertap_abi.h) into the
// TCP segments the packet reassembly takes (agent/replay/tcp_flows.hpp). Pure: no libbpf.
//
// A record comes from the kernel, but nothing in it is trusted: its size is checked against the
// struct and its cap_len, its piece against the packet's payload length, its enums against their
// values. A record that fails is reported with the reason and skipped (the caller counts it);
// it never reaches the reassembly.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "agent/capture/abi.hpp"
#include "agent/replay/packet.hpp"

namespace infertap {

enum class SkbEventError : uint8_t {
  kNone = 0,
  kShort,      // fewer bytes than the fixed header
  kType,       // not IT_EV_SKB
  kVersion,    // another IT_ABI_VERSION
  kCapLen,     // cap_len above IT_CHUNK_MAX, or past the end of the record
  kRange,      // offset + cap_len past the packet's payload_len
  kDirection,  // not IT_DIR_INGRESS / IT_DIR_EGRESS
  kFamily,     // not AF_INET / AF_INET6
  kCount,
};
std::string_view SkbEventErrorName(SkbEventError e);

// One decoded record: its header (copied) and its payload piece (a view into the record).
struct SkbPiece {
  std::span<const uint8_t> payload;
  it_skb_event hdr{};  // last: the struct ends in the (empty here) flexible array `data`
};

[[nodiscard]] SkbEventError DecodeSkbEvent(std::span<const uint8_t> record, SkbPiece* out);

// What one piece means to the reassembly:
//   - `data`: the piece's bytes at their own sequence number (seq + 1 for a SYN, + offset), with
//     the packet's ACK. SYN only on the first piece; FIN only on the last one.
//   - `fin` (has_fin): for a piece of a FIN packet that is not its last, the FIN at the packet's
//     end, so the stream's length is known even if the last piece was lost to a full ring.
//   - `local`: the traced socket's endpoint, i.e. the server (the kernel matched it): the
//     destination on ingress, the source on egress.
struct SkbSegments {
  pcap::TcpSegment data;
  bool has_fin = false;
  pcap::TcpSegment fin;
  Endpoint local;
};
SkbSegments SegmentsOf(const SkbPiece& piece);

}  // namespace infertap
