// Test helpers: build TCP/IP frames for any supported link type and write them as pcap or pcapng,
// so each test states its scenario packet by packet and knows the exact expected byte streams.
#pragma once

#include <pcap/dlt.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/capture/abi.hpp"

namespace infertap::pcaptest {

inline constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

inline void Put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}
inline void Put32(std::vector<uint8_t>& v, uint32_t x) {
  Put16(v, static_cast<uint16_t>(x >> 16));
  Put16(v, static_cast<uint16_t>(x));
}
// Host byte order, as pcap and pcapng writers store their headers.
template <typename T>
inline void PutHost(std::vector<uint8_t>& v, T x) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &x, sizeof(T));
  v.insert(v.end(), b, b + sizeof(T));
}

inline Endpoint Ep(std::string_view text) {
  std::string err;
  auto ep = ParseEndpoint(text, &err);
  if (!ep) throw std::runtime_error(err);
  return *ep;
}

struct TcpSpec {
  Endpoint src, dst;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = kAck;
  uint16_t window = 65535;
  std::string payload;
  bool ipv6_hop_by_hop = false;  // prepend an 8-byte hop-by-hop extension header (IPv6 only)
};

// IP packet (v4 when both endpoints are v4-mapped) carrying one TCP segment.
inline std::vector<uint8_t> IpPacket(const TcpSpec& t) {
  std::vector<uint8_t> tcp;
  Put16(tcp, t.src.port);
  Put16(tcp, t.dst.port);
  Put32(tcp, t.seq);
  Put32(tcp, t.ack);
  tcp.push_back(5 << 4);
  tcp.push_back(t.flags);
  Put16(tcp, t.window);
  Put16(tcp, 0);  // checksum: the reader does not verify it (offloaded captures have junk there)
  Put16(tcp, 0);
  tcp.insert(tcp.end(), t.payload.begin(), t.payload.end());
  std::vector<uint8_t> ip;
  if (t.src.is_v4()) {
    ip.push_back(0x45);
    ip.push_back(0);
    Put16(ip, static_cast<uint16_t>(20 + tcp.size()));
    Put16(ip, 0);
    Put16(ip, 0x4000);  // DF
    ip.push_back(64);
    ip.push_back(6);
    Put16(ip, 0);
    ip.insert(ip.end(), t.src.addr.begin() + 12, t.src.addr.end());
    ip.insert(ip.end(), t.dst.addr.begin() + 12, t.dst.addr.end());
  } else {
    const size_t ext = t.ipv6_hop_by_hop ? 8 : 0;
    Put32(ip, 0x60000000);
    Put16(ip, static_cast<uint16_t>(ext + tcp.size()));
    ip.push_back(t.ipv6_hop_by_hop ? 0 : 6);
    ip.push_back(64);
    ip.insert(ip.end(), t.src.addr.begin(), t.src.addr.end());
    ip.insert(ip.end(), t.dst.addr.begin(), t.dst.addr.end());
    if (t.ipv6_hop_by_hop) {
      const uint8_t hbh[8] = {6, 0, 1, 4, 0, 0, 0, 0};  // next=TCP, len 0, PadN(4)
      ip.insert(ip.end(), hbh, hbh + 8);
    }
  }
  ip.insert(ip.end(), tcp.begin(), tcp.end());
  return ip;
}

// Wraps an IP packet in the link-layer header of `dlt`. `vlan` adds one 802.1Q tag (Ethernet).
inline std::vector<uint8_t> Frame(int dlt, const std::vector<uint8_t>& ip, bool vlan = false) {
  const bool v6 = (ip[0] >> 4) == 6;
  const uint16_t ethertype = v6 ? 0x86dd : 0x0800;
  std::vector<uint8_t> f;
  switch (dlt) {
    case DLT_EN10MB:
      for (int i = 0; i < 12; ++i) f.push_back(static_cast<uint8_t>(i + 1));
      if (vlan) {
        Put16(f, 0x8100);
        Put16(f, 42);
      }
      Put16(f, ethertype);
      break;
    case DLT_LINUX_SLL:
      Put16(f, 0);    // packet type: to us
      Put16(f, 772);  // ARPHRD_LOOPBACK
      Put16(f, 6);
      for (int i = 0; i < 8; ++i) f.push_back(0);
      Put16(f, ethertype);
      break;
    case DLT_LINUX_SLL2:
      Put16(f, ethertype);
      Put16(f, 0);
      Put32(f, 1);     // ifindex
      Put16(f, 772);   // ARPHRD_LOOPBACK
      f.push_back(0);  // packet type
      f.push_back(6);  // address length
      for (int i = 0; i < 8; ++i) f.push_back(0);
      break;
    case DLT_NULL:
      PutHost<uint32_t>(f, v6 ? 30 : 2);  // a BSD writer: AF_INET6 is 30 on macOS
      break;
    case DLT_LOOP:
      Put32(f, v6 ? 24 : 2);  // network order; OpenBSD's AF_INET6
      break;
    case DLT_RAW:
      break;
    default:
      throw std::runtime_error("test writer: unsupported dlt");
  }
  f.insert(f.end(), ip.begin(), ip.end());
  return f;
}

// Files store LINKTYPE_ values; they equal the DLT_ values except for raw IP, whose DLT_ number
// differs between platforms (tcpdump writes LINKTYPE_RAW = 101).
inline uint32_t LinkTypeInFile(int dlt) {
  return dlt == DLT_RAW ? 101 : static_cast<uint32_t>(dlt);
}

// Classic pcap, host byte order, µs or ns timestamps.
class PcapWriter {
 public:
  explicit PcapWriter(int dlt, uint32_t snaplen = 262144, bool nanos = false)
      : dlt_(dlt), snaplen_(snaplen), nanos_(nanos) {
    PutHost<uint32_t>(out_, nanos ? 0xa1b23c4d : 0xa1b2c3d4);
    PutHost<uint16_t>(out_, 2);
    PutHost<uint16_t>(out_, 4);
    PutHost<int32_t>(out_, 0);
    PutHost<uint32_t>(out_, 0);
    PutHost<uint32_t>(out_, snaplen);
    PutHost<uint32_t>(out_, LinkTypeInFile(dlt));
  }
  int dlt() const { return dlt_; }

  // Records the frame, cut to the snaplen like a real capture would.
  void Add(uint64_t ts_ns, const std::vector<uint8_t>& frame) {
    const uint32_t incl = std::min<uint32_t>(static_cast<uint32_t>(frame.size()), snaplen_);
    PutHost<uint32_t>(out_, static_cast<uint32_t>(ts_ns / 1'000'000'000));
    const uint64_t frac = ts_ns % 1'000'000'000;
    PutHost<uint32_t>(out_, static_cast<uint32_t>(nanos_ ? frac : frac / 1000));
    PutHost<uint32_t>(out_, incl);
    PutHost<uint32_t>(out_, static_cast<uint32_t>(frame.size()));
    out_.insert(out_.end(), frame.begin(), frame.begin() + incl);
  }
  void Add(uint64_t ts_ns, const TcpSpec& t) { Add(ts_ns, Frame(dlt_, IpPacket(t))); }

  std::vector<uint8_t>& bytes() { return out_; }

 private:
  int dlt_;
  uint32_t snaplen_;
  bool nanos_;
  std::vector<uint8_t> out_;
};

// pcapng: one section, one interface with nanosecond resolution, enhanced packet blocks.
class PcapngWriter {
 public:
  explicit PcapngWriter(int dlt) : dlt_(dlt) {
    PutHost<uint32_t>(out_, 0x0a0d0d0a);  // section header block
    PutHost<uint32_t>(out_, 28);
    PutHost<uint32_t>(out_, 0x1a2b3c4d);
    PutHost<uint16_t>(out_, 1);
    PutHost<uint16_t>(out_, 0);
    PutHost<int64_t>(out_, -1);  // section length unknown
    PutHost<uint32_t>(out_, 28);
    PutHost<uint32_t>(out_, 1);  // interface description block
    PutHost<uint32_t>(out_, 32);
    PutHost<uint16_t>(out_, static_cast<uint16_t>(LinkTypeInFile(dlt)));
    PutHost<uint16_t>(out_, 0);
    PutHost<uint32_t>(out_, 262144);
    PutHost<uint16_t>(out_, 9);  // if_tsresol = 10^-9
    PutHost<uint16_t>(out_, 1);
    out_.insert(out_.end(), {9, 0, 0, 0});
    PutHost<uint32_t>(out_, 0);  // opt_endofopt
    PutHost<uint32_t>(out_, 32);
  }
  void Add(uint64_t ts_ns, const TcpSpec& t) {
    const std::vector<uint8_t> frame = Frame(dlt_, IpPacket(t));
    const uint32_t padded = static_cast<uint32_t>((frame.size() + 3) & ~size_t{3});
    const uint32_t total = 32 + padded;
    PutHost<uint32_t>(out_, 6);  // enhanced packet block
    PutHost<uint32_t>(out_, total);
    PutHost<uint32_t>(out_, 0);
    PutHost<uint32_t>(out_, static_cast<uint32_t>(ts_ns >> 32));
    PutHost<uint32_t>(out_, static_cast<uint32_t>(ts_ns));
    PutHost<uint32_t>(out_, static_cast<uint32_t>(frame.size()));
    PutHost<uint32_t>(out_, static_cast<uint32_t>(frame.size()));
    out_.insert(out_.end(), frame.begin(), frame.end());
    out_.insert(out_.end(), padded - frame.size(), 0);
    PutHost<uint32_t>(out_, total);
  }
  std::vector<uint8_t>& bytes() { return out_; }

 private:
  int dlt_;
  std::vector<uint8_t> out_;
};

inline void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace infertap::pcaptest
