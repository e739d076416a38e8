// Decoding one captured frame down to its TCP segment (pure: no libpcap calls, no state).
//
// The pcap reader hands every record here with its link type; what comes back is the TCP 4-tuple,
// the header fields reassembly needs, and the payload split into what was captured and what the
// snaplen cut off. Everything is bounds-checked: a capture file is untrusted input (docs/faults.md).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "agent/capture/abi.hpp"

namespace infertap::pcap {

// TCP flag bits as they sit in byte 13 of the TCP header.
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

struct TcpSegment {
  Endpoint src, dst;    // IPv4 addresses v4-mapped, as everywhere in infertap
  uint16_t family = 0;  // AF_INET or AF_INET6
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  // Payload length on the wire, from the IP length fields (never from the capture length, which
  // may include Ethernet padding or be cut short by the snaplen).
  uint32_t payload_len = 0;
  // The captured prefix of the payload; payload.size() <= payload_len. The rest was not captured
  // and must become a gap downstream, never invented bytes.
  std::span<const uint8_t> payload;
};

enum class DecodeResult : uint8_t {
  kTcp,        // *out is filled
  kNotTcp,     // a well-formed frame that is not TCP over IPv4/IPv6 (ARP, UDP, ICMP, ...)
  kFragment,   // an IP fragment: not reassembled (TCP over loopback/LAN practically never is)
  kTruncated,  // the headers themselves were cut by the snaplen: nothing usable
  kMalformed,  // lengths that contradict each other
};

// True for the link types Decode understands (DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW,
// DLT_IPV4, DLT_IPV6, DLT_NULL, DLT_LOOP).
bool LinkTypeSupported(int dlt);

// `frame` is the captured bytes of one record; `wire_len` is its original length (pcap's `len`).
// The returned segment's payload points into `frame`.
DecodeResult Decode(int dlt, std::span<const uint8_t> frame, uint32_t wire_len, TcpSegment* out);

}  // namespace infertap::pcap
