// TCP reassembly for captured packets: segments in, per-connection ordered byte streams out
// through the same Connection objects the live capture feeds (agent/capture/connection.hpp;
// docs/parsing.md, docs/cli.md `infertap replay`): each flow owns one, whose consumer the given
// ConnConsumerFactory makes.
//
// A packet capture sees TCP, not syscalls: segments can be retransmitted (whole or overlapping),
// reordered, lost by the capture, cut by the snaplen, and the capture can start in the middle of
// a connection. This class turns that into exactly what the live tracker produces: bytes in stream
// order, each byte once, and every byte that is known to exist but was not captured reported as a
// gap of its exact length so the HTTP parser resynchronises instead of gluing unrelated bytes.
//
// Server side. With a `servers` list, a flow is traced (as role server) when one of its endpoints
// matches a list entry (an all-zero address matches any address); other flows are ignored. With
// an empty list it is inferred from the first packet of the flow that is seen:
//   1. a SYN without ACK goes to the server;
//   2. a SYN+ACK comes from the server (the SYN itself was not captured);
//   3. otherwise (capture started mid-connection) the endpoint with the lower port is the server,
//      and on equal ports the destination of that first packet.
//
// Directions are the server's view, like a live capture with role server: client→server bytes
// are kIngress, server→client bytes kEgress.
//
// Live use (the cgroup backend, agent/capture/skb_flows.hpp): the caller names each segment's
// server endpoint (the kernel filter matched it), and Flush() is called periodically with the
// monotonic clock: it declares holes held past the reorder window, turns bytes the peer has
// acknowledged but the capture never delivered into a gap of exact length, ends idle flows and
// forgets old tombstones. A pcap replay never calls Flush (its end is FinishAll).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "agent/capture/connection.hpp"
#include "agent/replay/packet.hpp"

namespace infertap::pcap {

struct FlowOptions {
  // Connections tracked at once (closed ones linger as small tombstones so their late ACKs and
  // retransmissions are not mistaken for new connections; tombstones are evicted first).
  size_t max_flows = 100'000;
  // Out-of-order bytes held per direction (plus a fixed per-segment overhead, so a flood of tiny
  // segments is bounded too) before the first hole is declared a gap.
  size_t max_pending_bytes = 4 << 20;
  // Live only (Flush): a hole older than this (segment time vs now) is declared a gap; bytes the
  // peer acknowledged that were not captured become a gap after this long.
  uint64_t reorder_window_ns = 50'000'000;
  // Live only (Flush): a flow with no segment for this long is ended and forgotten (a later
  // segment of it starts a new flow, as a capture that starts mid-connection does). 0: never.
  uint64_t idle_timeout_ns = 0;
  // Live only (Flush): a closed flow's tombstone is forgotten after this long. 0: kept until
  // max_flows needs the room (replay).
  uint64_t tombstone_ns = 0;
};

struct FlowStats {
  uint64_t flows = 0;                // connections opened (OnOpen calls)
  uint64_t bytes = 0;                // payload bytes delivered via OnData
  uint64_t gap_bytes = 0;            // bytes delivered via OnGap
  uint64_t retransmitted_bytes = 0;  // payload bytes seen again and dropped (keep-alives excluded)
  uint64_t untraced_packets = 0;     // TCP packets of flows that match no `servers` endpoint
  uint64_t dropped_packets = 0;      // packets of new flows refused because max_flows was reached
  uint64_t idle_closed = 0;          // flows ended by Flush's idle timeout
  uint64_t acked_gap_bytes = 0;      // bytes the peer acknowledged that were never captured (Flush)
};

class TcpFlows {
 public:
  TcpFlows(std::vector<Endpoint> servers, ConnConsumerFactory& consumers, FlowOptions options = {});
  ~TcpFlows();

  void OnSegment(const TcpSegment& seg, uint64_t ts_ns);
  // The same, with the server endpoint known (`server` is seg.src or seg.dst): a new flow takes
  // it instead of consulting the `servers` list or guessing.
  void OnSegment(const TcpSegment& seg, uint64_t ts_ns, const Endpoint& server);
  // The same, and a new flow is tagged with `tag` (the cgroup backend: the socket's cgroup id),
  // which FinishTagged() selects by.
  void OnSegment(const TcpSegment& seg, uint64_t ts_ns, const Endpoint& server, uint64_t tag);
  // Live capture's periodic step (see the top of this file). `now_ns` is on the segments' clock.
  void Flush(uint64_t now_ns);
  // End of capture: every open connection's holes become gaps, then OnClose, in conn_id order.
  void FinishAll(uint64_t ts_ns);
  // Ends and forgets every open flow tagged `tag` (its capture stopped: no segment of it will
  // come), as FinishAll does; returns how many. Not kept as tombstones: if capture of the tag
  // resumes, a later segment starts a new flow mid-connection.
  size_t FinishTagged(uint64_t tag, uint64_t ts_ns);

  FlowStats stats() const;
  size_t open_flows() const;

 private:
  struct DirState {
    bool started = false;  // the stream's origin is known (SYN or first data segment)
    uint32_t isn = 0;      // valid when syn_seen
    bool syn_seen = false;
    uint32_t seq0 = 0;  // sequence number of stream position 0 (positions are 64-bit: no wrap)
    bool fin_seen = false;
    uint64_t fin_pos = 0;  // stream length announced by the FIN
    bool done = false;     // FIN seen and every byte before it delivered or declared a gap
    bool acked_valid = false;
    uint32_t acked = 0;     // highest ACK number the peer sent for this stream
    uint64_t acked_ts = 0;  // time of the segment that carried it
  };
  // The TCP state beside the Connection (which holds the reassembly: in-order delivery, held
  // out-of-order segments, holes, and the consumer).
  struct Flow {
    Flow(const ConnInfo& info, StreamReassembler::Limits limits, ConnConsumerFactory& consumers,
         StreamTotals& totals, const Endpoint& server_ep)
        : conn(info, limits, consumers, totals), server(server_ep) {}
    Connection conn;
    Endpoint server;
    DirState dir[2];         // by Direction
    uint64_t last_ts = 0;    // newest segment of the flow
    uint64_t closed_ts = 0;  // when it was closed (tombstone age)
    uint64_t tag = 0;        // OnSegment's tag when the flow started
    bool closed() const { return conn.closed(); }
  };
  struct Key {
    Endpoint a, b;  // ordered so both directions of a flow share one key
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };

  static Key MakeKey(const Endpoint& x, const Endpoint& y);
  // The server endpoint for a new flow whose first seen packet is `seg`; false if untraced.
  bool ChooseServer(const TcpSegment& seg, Endpoint* server) const;
  Flow* NewFlow(const Key& key, const TcpSegment& seg, const Endpoint& server, uint64_t ts_ns);
  void Process(const TcpSegment& seg, uint64_t ts_ns, const Endpoint* server, uint64_t tag = 0);
  void OnPayload(Flow& f, Direction d, uint32_t seq, const TcpSegment& seg, uint64_t ts_ns);
  // Flush's step for one open flow: held holes, acknowledged-but-missing bytes.
  void FlushFlow(Flow& f, uint64_t now_ns);
  void UpdateDone(Flow& f, Direction d, uint64_t ts_ns);
  void CloseFlow(Flow& f, uint64_t ts_ns);
  // Position in the 64-bit stream of sequence number `seq` (may precede next_pos).
  static int64_t PositionOf(const Flow& f, Direction d, uint32_t seq);

  std::vector<Endpoint> servers_;
  ConnConsumerFactory& consumers_;
  FlowOptions opt_;
  FlowStats stats_;      // flows, untraced/dropped packets, retransmissions seen before reassembly
  StreamTotals totals_;  // what the connections delivered
  uint64_t next_conn_id_ = 1;
  std::unordered_map<Key, Flow, KeyHash> flows_;  // nodes: a Flow never moves
};

}  // namespace infertap::pcap
