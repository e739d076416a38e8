// `infertap replay` on packet captures: a pcap or pcapng file in, the same per-connection byte
// streams the live capture produces out, through the same Connection objects (docs/cli.md). The
// rest of the pipeline (HTTP, SSE, records, metrics) cannot tell the difference, except that
// timestamps are the capture's wall clock (epoch ns) instead of CLOCK_MONOTONIC.
//
// libpcap reads both formats. Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked
// SLL and SLL2 (`tcpdump -i any`), raw IP, BSD loopback (NULL/LOOP). IPv4 and IPv6 (extension
// headers skipped), TCP only; IP fragments are counted and skipped. Reassembly and the rule that
// decides which side is the model server are described in tcp_flows.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/capture/connection.hpp"
#include "agent/common/status.hpp"
#include "agent/replay/tcp_flows.hpp"

namespace infertap {

struct PcapStats {
  uint64_t packets = 0;            // records read from the file
  uint64_t tcp_packets = 0;        // records that decoded to a TCP segment
  uint64_t skipped_packets = 0;    // not TCP over IP, IP fragments, malformed, headers cut short
  uint64_t truncated_packets = 0;  // TCP payload cut by the snaplen (the rest became gap bytes)
  uint64_t flows = 0;              // connections delivered (OnOpen calls)
  uint64_t bytes = 0;              // payload bytes delivered via OnData
  uint64_t gap_bytes = 0;          // bytes delivered via OnGap
  uint64_t retransmitted_bytes = 0;
  uint64_t untraced_packets = 0;  // TCP packets of flows matching no `servers` endpoint
  uint64_t dropped_packets = 0;   // packets of flows refused at the flow cap
};

struct PcapOptions {
  pcap::FlowOptions flows;
};

// True when the file starts with a pcap (any byte order, µs or ns) or pcapng magic number. Lets
// `infertap replay` choose between its own capture format and a packet capture.
bool LooksLikePcap(const std::string& path);

class PcapReplay {
 public:
  explicit PcapReplay(PcapOptions options = {}) : opt_(options) {}

  // Reads the whole file into `sink`. `servers` marks the model-server side (empty: inferred).
  // On error (unreadable, not a capture, unsupported link type, truncated or corrupt record) the
  // Status names the file; everything read before a bad record has been delivered and every
  // connection closed. `stats` may be null.
  Status Replay(const std::string& path, const std::vector<Endpoint>& servers,
                ConnConsumerFactory& consumers, PcapStats* stats);
  // Every connection's streams to one sink (the `--summary` printer, tests).
  Status Replay(const std::string& path, const std::vector<Endpoint>& servers, StreamSink& sink,
                PcapStats* stats);

 private:
  PcapOptions opt_;
};

}  // namespace infertap
