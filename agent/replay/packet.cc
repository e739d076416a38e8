#include "agent/replay/packet.hpp"

#include <pcap/dlt.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace infertap::pcap {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
// 802.1Q, 802.1ad (QinQ outer) and the pre-standard QinQ tag some switches still emit.
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;
constexpr uint16_t kEtherQinQOld = 0x9100;
constexpr int kMaxVlanTags = 4;
// IPv6 extension headers walked before giving up; real packets carry one or two.
constexpr int kMaxIpv6ExtHeaders = 8;
constexpr uint8_t kProtoTcp = 6;

uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Where the IP header starts, or kNotTcp/kTruncated for frames that carry no IP.
struct LinkResult {
  DecodeResult result = DecodeResult::kTcp;
  size_t offset = 0;
};

LinkResult EthernetPayload(std::span<const uint8_t> f) {
  if (f.size() < 14) return {DecodeResult::kTruncated, 0};
  size_t off = 12;
  uint16_t type = Be16(&f[off]);
  for (int tags = 0; type == kEtherVlan || type == kEtherQinQ || type == kEtherQinQOld; ++tags) {
    if (tags == kMaxVlanTags) return {DecodeResult::kMalformed, 0};
    off += 4;
    if (f.size() < off + 2) return {DecodeResult::kTruncated, 0};
    type = Be16(&f[off]);
  }
  if (type != kEtherIpv4 && type != kEtherIpv6) return {DecodeResult::kNotTcp, 0};
  return {DecodeResult::kTcp, off + 2};
}

LinkResult LinkPayload(int dlt, std::span<const uint8_t> f) {
  // Cooked headers carry the ethertype at a fixed offset: SLL at 14 of 16, SLL2 at 0 of 20.
  auto cooked = [&](size_t hdr_len, size_t proto_off) -> LinkResult {
    if (f.size() < hdr_len) return {DecodeResult::kTruncated, 0};
    const uint16_t proto = Be16(&f[proto_off]);
    if (proto != kEtherIpv4 && proto != kEtherIpv6) return {DecodeResult::kNotTcp, 0};
    return {DecodeResult::kTcp, hdr_len};
  };
  switch (dlt) {
    case DLT_EN10MB:
      return EthernetPayload(f);
    case DLT_LINUX_SLL:
      return cooked(16, 14);
    case DLT_LINUX_SLL2:
      return cooked(20, 0);
    case DLT_NULL:
    case DLT_LOOP:
      // A 4-byte address family, host order for NULL and network order for LOOP, and AF_INET6
      // differs between BSDs (24, 28, 30) and Linux (10): the IP version nibble is the reliable
      // signal, so the family word is only skipped.
      if (f.size() < 4) return {DecodeResult::kTruncated, 0};
      return {DecodeResult::kTcp, 4};
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
      return {DecodeResult::kTcp, 0};
    default:
      return {DecodeResult::kNotTcp, 0};
  }
}

}  // namespace

bool LinkTypeSupported(int dlt) {
  switch (dlt) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_NULL:
    case DLT_LOOP:
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
      return true;
    default:
      return false;
  }
}

DecodeResult Decode(int dlt, std::span<const uint8_t> frame, uint32_t wire_len, TcpSegment* out) {
  const LinkResult link = LinkPayload(dlt, frame);
  if (link.result != DecodeResult::kTcp) return link.result;
  // A record whose original length is below its captured length is corrupt; trust the bytes.
  const size_t wire = std::max<size_t>(wire_len, frame.size());
  size_t off = link.offset;
  if (frame.size() < off + 1) return DecodeResult::kTruncated;
  // Bytes of the IP packet that were on the wire, headers included.
  const size_t wire_ip = wire - off;

  TcpSegment seg;
  size_t ip_end = 0;  // one past the IP packet, in wire coordinates relative to the frame
  uint8_t proto = 0;
  const uint8_t version = frame[off] >> 4;
  if (version == 4) {
    if (frame.size() < off + 20) return DecodeResult::kTruncated;
    const uint8_t* ip = &frame[off];
    const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
    if (ihl < 20) return DecodeResult::kMalformed;
    size_t total = Be16(ip + 2);
    // Total length 0 is what a capture of a TSO/GSO super-packet shows: the wire length is the
    // only size left.
    if (total == 0) total = wire_ip;
    if (total < ihl || total > wire_ip) return DecodeResult::kMalformed;
    const uint16_t frag = Be16(ip + 6);
    if ((frag & 0x2000) != 0 || (frag & 0x1fff) != 0) return DecodeResult::kFragment;
    proto = ip[9];
    seg.family = AF_INET;
    seg.src.addr[10] = seg.src.addr[11] = seg.dst.addr[10] = seg.dst.addr[11] = 0xff;
    std::memcpy(seg.src.addr.data() + 12, ip + 12, 4);
    std::memcpy(seg.dst.addr.data() + 12, ip + 16, 4);
    ip_end = off + total;
    off += ihl;
  } else if (version == 6) {
    if (frame.size() < off + 40) return DecodeResult::kTruncated;
    const uint8_t* ip = &frame[off];
    size_t total = 40 + static_cast<size_t>(Be16(ip + 4));
    // Payload length 0: a jumbogram or a GSO capture; fall back to the wire length as for IPv4.
    if (total == 40) total = wire_ip;
    if (total > wire_ip) return DecodeResult::kMalformed;
    seg.family = AF_INET6;
    std::memcpy(seg.src.addr.data(), ip + 8, 16);
    std::memcpy(seg.dst.addr.data(), ip + 24, 16);
    ip_end = off + total;
    proto = ip[6];
    off += 40;
    // Extension headers before TCP: hop-by-hop (0), routing (43), destination options (60) and
    // AH (51) are skipped by their length; a first fragment without more fragments (an "atomic"
    // fragment, RFC 6946) is skipped too; real fragments and ESP cannot be followed.
    for (int n = 0; proto != kProtoTcp; ++n) {
      if (n == kMaxIpv6ExtHeaders) return DecodeResult::kMalformed;
      if (frame.size() < off + 8) return DecodeResult::kTruncated;
      const uint8_t* ext = &frame[off];
      size_t len = 0;
      if (proto == 0 || proto == 43 || proto == 60) {
        len = (static_cast<size_t>(ext[1]) + 1) * 8;
      } else if (proto == 51) {
        len = (static_cast<size_t>(ext[1]) + 2) * 4;
      } else if (proto == 44) {
        if ((Be16(ext + 2) & 0xfff9) != 0) return DecodeResult::kFragment;
        len = 8;
      } else {
        return DecodeResult::kNotTcp;
      }
      proto = ext[0];
      off += len;
      if (off > ip_end) return DecodeResult::kMalformed;
    }
  } else {
    return DecodeResult::kNotTcp;
  }
  if (proto != kProtoTcp) return DecodeResult::kNotTcp;

  if (frame.size() < off + 20) return DecodeResult::kTruncated;
  const uint8_t* tcp = &frame[off];
  const size_t tcp_len = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (tcp_len < 20 || off + tcp_len > ip_end) return DecodeResult::kMalformed;
  seg.src.port = Be16(tcp);
  seg.dst.port = Be16(tcp + 2);
  seg.seq = Be32(tcp + 4);
  seg.ack = Be32(tcp + 8);
  seg.flags = tcp[13];
  seg.window = Be16(tcp + 14);
  const size_t payload_off = off + tcp_len;
  seg.payload_len = static_cast<uint32_t>(ip_end - payload_off);
  // Only what was captured and belongs to the IP packet (Ethernet pads short frames to 60 bytes).
  const size_t captured_end = std::min(frame.size(), ip_end);
  if (captured_end > payload_off)
    seg.payload = frame.subspan(payload_off, captured_end - payload_off);
  *out = seg;
  return DecodeResult::kTcp;
}

}  // namespace infertap::pcap
