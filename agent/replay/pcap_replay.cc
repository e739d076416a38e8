#include "agent/replay/pcap_replay.hpp"

#include <pcap/pcap.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "agent/replay/packet.hpp"

namespace infertap {
namespace {

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

std::string LinkTypeName(int dlt) {
  const char* name = pcap_datalink_val_to_name(dlt);
  return name ? name : "unknown";
}

}  // namespace

bool LooksLikePcap(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return false;
  uint8_t m[4];
  if (std::fread(m, 1, sizeof(m), f.get()) != sizeof(m)) return false;
  const uint32_t be = static_cast<uint32_t>(m[0]) << 24 | static_cast<uint32_t>(m[1]) << 16 |
                      static_cast<uint32_t>(m[2]) << 8 | m[3];
  switch (be) {
    case 0xa1b2c3d4:  // pcap, µs, big-endian writer
    case 0xd4c3b2a1:  // pcap, µs, little-endian writer
    case 0xa1b23c4d:  // pcap, ns
    case 0x4d3cb2a1:
    case 0x0a0d0d0a:  // pcapng section header block (same bytes in either byte order)
      return true;
    default:
      return false;
  }
}

Status PcapReplay::Replay(const std::string& path, const std::vector<Endpoint>& servers,
                          StreamSink& sink, PcapStats* stats) {
  SinkConsumers consumers(sink);
  return Replay(path, servers, consumers, stats);
}

Status PcapReplay::Replay(const std::string& path, const std::vector<Endpoint>& servers,
                          ConnConsumerFactory& consumers, PcapStats* stats) {
  // Opened here rather than by pcap_open_offline so that "no such file" and "not a capture" are
  // told apart: libpcap reports both through the same error buffer.
  FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return Status::Error(path + ": cannot open: " + std::strerror(errno));
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  // Nanosecond precision: libpcap scales µs files up, and ns files keep their resolution.
  std::unique_ptr<pcap_t, PcapCloser> handle(
      pcap_fopen_offline_with_tstamp_precision(fp, PCAP_TSTAMP_PRECISION_NANO, errbuf));
  if (!handle) {
    std::fclose(fp);  // on failure libpcap leaves the FILE to the caller
    return Status::Error(path + ": not a pcap or pcapng file (" + errbuf + ")");
  }
  const int dlt = pcap_datalink(handle.get());
  if (!pcap::LinkTypeSupported(dlt)) {
    return Status::Error(path + ": unsupported link type " + LinkTypeName(dlt) + " (" +
                         std::to_string(dlt) +
                         "); supported: EN10MB, LINUX_SLL, LINUX_SLL2, RAW, NULL, LOOP");
  }

  PcapStats local;
  PcapStats& st = stats ? *stats : local;
  st = PcapStats{};
  pcap::TcpFlows flows(servers, consumers, opt_.flows);
  uint64_t newest_ts = 0;
  Status status;
  for (;;) {
    pcap_pkthdr* hdr = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(handle.get(), &hdr, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      // A record cut off mid-way (a capture killed while writing, a partial download) or one
      // whose header is nonsense. What came before is still good: finish it below.
      const std::string why = pcap_geterr(handle.get());
      const std::string n = std::to_string(st.packets + 1);
      status = Status::Error(path +
                             (why.find("truncated") != std::string::npos
                                  ? ": truncated at packet " + n
                                  : ": corrupt record at packet " + n) +
                             " (" + why + ")");
      break;
    }
    ++st.packets;
    const uint64_t ts = static_cast<uint64_t>(hdr->ts.tv_sec) * 1'000'000'000ull +
                        static_cast<uint64_t>(hdr->ts.tv_usec);
    newest_ts = std::max(newest_ts, ts);
    pcap::TcpSegment seg;
    const auto result =
        pcap::Decode(dlt, std::span<const uint8_t>(data, hdr->caplen), hdr->len, &seg);
    if (result != pcap::DecodeResult::kTcp) {
      ++st.skipped_packets;
      continue;
    }
    ++st.tcp_packets;
    if (seg.payload.size() < seg.payload_len) ++st.truncated_packets;
    flows.OnSegment(seg, ts);
  }
  flows.FinishAll(newest_ts);
  const pcap::FlowStats fs = flows.stats();
  st.flows = fs.flows;
  st.bytes = fs.bytes;
  st.gap_bytes = fs.gap_bytes;
  st.retransmitted_bytes = fs.retransmitted_bytes;
  st.untraced_packets = fs.untraced_packets;
  st.dropped_packets = fs.dropped_packets;
  return status;
}

}  // namespace infertap
