#include "agent/capture/skb_events.hpp"

#include <sys/socket.h>

#include <cstring>

namespace infertap {

std::string_view SkbEventErrorName(SkbEventError e) {
  switch (e) {
    case SkbEventError::kNone:
      return "none";
    case SkbEventError::kShort:
      return "short";
    case SkbEventError::kType:
      return "type";
    case SkbEventError::kVersion:
      return "version";
    case SkbEventError::kCapLen:
      return "cap_len";
    case SkbEventError::kRange:
      return "range";
    case SkbEventError::kDirection:
      return "direction";
    case SkbEventError::kFamily:
      return "family";
    default:
      return "unknown";
  }
}

SkbEventError DecodeSkbEvent(std::span<const uint8_t> record, SkbPiece* out) {
  if (record.size() < sizeof(it_skb_event)) return SkbEventError::kShort;
  it_skb_event h;
  std::memcpy(&h, record.data(), sizeof(h));
  if (h.type != IT_EV_SKB) return SkbEventError::kType;
  if (h.version != IT_ABI_VERSION) return SkbEventError::kVersion;
  // Ring records are reserved in size classes, so the record may be longer than the piece.
  if (h.cap_len > IT_CHUNK_MAX || h.cap_len > record.size() - sizeof(h))
    return SkbEventError::kCapLen;
  if (uint64_t(h.offset) + h.cap_len > h.payload_len) return SkbEventError::kRange;
  if (h.direction != IT_DIR_INGRESS && h.direction != IT_DIR_EGRESS)
    return SkbEventError::kDirection;
  if (h.family != AF_INET && h.family != AF_INET6) return SkbEventError::kFamily;
  out->hdr = h;
  out->payload = record.subspan(sizeof(h), h.cap_len);
  return SkbEventError::kNone;
}

SkbSegments SegmentsOf(const SkbPiece& piece) {
  const it_skb_event& h = piece.hdr;
  SkbSegments out;
  pcap::TcpSegment& seg = out.data;
  seg.src = EndpointFromAbi(h.saddr, h.sport);
  seg.dst = EndpointFromAbi(h.daddr, h.dport);
  seg.family = h.family;
  seg.ack = h.ack;
  seg.window = h.window;
  seg.payload_len = h.cap_len;
  seg.payload = piece.payload;
  out.local = h.direction == IT_DIR_INGRESS ? seg.dst : seg.src;

  // The packet's first payload byte has sequence number seq + 1 after a SYN (the SYN takes one);
  // TcpFlows adds that itself for a segment that carries the SYN flag.
  const bool syn = (h.tcp_flags & pcap::kTcpSyn) != 0;
  const bool last = uint64_t(h.offset) + h.cap_len >= h.payload_len;
  uint8_t flags = h.tcp_flags;
  if (h.offset == 0) {
    seg.seq = h.seq;
  } else {
    seg.seq = h.seq + (syn ? 1u : 0u) + h.offset;
    flags &= uint8_t(~pcap::kTcpSyn);
  }
  if (!last) flags &= uint8_t(~pcap::kTcpFin);
  seg.flags = flags;
  if ((h.tcp_flags & pcap::kTcpFin) != 0 && !last) {
    out.has_fin = true;
    pcap::TcpSegment& fin = out.fin;
    fin.src = seg.src;
    fin.dst = seg.dst;
    fin.family = seg.family;
    fin.seq = h.seq + (syn ? 1u : 0u) + h.payload_len;
    fin.ack = h.ack;
    fin.window = h.window;
    fin.flags = uint8_t(h.tcp_flags & (pcap::kTcpFin | pcap::kTcpAck));
  }
  return out;
}

}  // namespace infertap
