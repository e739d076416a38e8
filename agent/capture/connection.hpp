// One traced connection (docs/architecture.md "Connections"): its identity, both directions'
// reassembly and the protocol consumer that reads the two byte streams, in one object.
//
// The producers of byte streams — the live ConnectionTracker (kernel events) and the pcap
// replay's TcpFlows (TCP segments) — each keep one Connection per connection and feed it stream
// pieces by position; the Connection puts them in order, reports every hole as a gap of its exact
// length, counts, and hands the result to its consumer. The consumer is made by a
// ConnConsumerFactory when the connection is created (the Pipeline is the agent's factory: its
// consumer is the per-connection HTTP exchange assembler with its attribution), so live capture and
// replay share one path and no other component keeps a map of connections.
//
//   ConnectionTracker / TcpFlows ──▶ Connection { ConnInfo, StreamReassembler ×2, ConnConsumer }
//                                                                            ▲ made by
//                                                                  ConnConsumerFactory (Pipeline)
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "agent/capture/abi.hpp"
#include "agent/capture/reassembler.hpp"

namespace infertap {

struct ConnCounters {
  // Data pieces received: ring-buffer data events (live), TCP segments delivered (pcap).
  uint64_t events = 0;
  uint64_t bytes_in = 0;   // ingress bytes delivered as data (read by the traced process)
  uint64_t bytes_out = 0;  // egress bytes delivered as data (written by the traced process)
  uint64_t gap_bytes = 0;  // bytes delivered as gaps, both directions
};

struct ConnInfo {
  uint64_t conn_id = 0;
  uint32_t tgid = 0;
  uint32_t fd = 0;
  Role role = Role::kUnknown;
  uint16_t family = 0;  // AF_INET / AF_INET6; 0 until the open event was seen
  Endpoint local, remote;
  uint64_t cgroup_id = 0;
  uint64_t open_ts_ns = 0;
  bool addresses_known = false;  // false when the open event was lost
  ConnCounters counters;
};

// What reads one connection's two ordered byte streams. Every call is on the producer's thread.
class ConnConsumer {
 public:
  virtual ~ConnConsumer() = default;
  // The connection's open event arrived (live: it may come after its first data, so this is when
  // its addresses become known; pcap: right after creation).
  virtual void OnOpen() {}
  // Bytes in stream order. ts_ns is the kernel timestamp of the syscall that carried them.
  virtual void OnData(Direction dir, uint64_t ts_ns, std::span<const uint8_t> bytes) = 0;
  // `len` bytes of the stream are missing here. len == kUnknownGap: an unknown amount may be
  // missing (the connection's close event was lost, and with it perhaps its last data events).
  virtual void OnGap(Direction dir, uint64_t ts_ns, uint64_t len) = 0;
  static constexpr uint64_t kUnknownGap = ~uint64_t(0);
  // The connection is over (closed, or the capture ended). The consumer is destroyed right after.
  virtual void OnClose(uint64_t ts_ns) = 0;
};

class ConnConsumerFactory {
 public:
  virtual ~ConnConsumerFactory() = default;
  // Called once per connection, at its creation; never returns null. `conn` is the Connection's
  // own ConnInfo: it outlives the consumer, never moves, and is updated in place (addresses at
  // OnOpen, counters).
  virtual std::unique_ptr<ConnConsumer> NewConsumer(const ConnInfo& conn) = 0;
};

// One observer for every connection of a capture (the `--summary` printer, tests): the same calls
// with the connection passed along. SinkConsumers adapts it to a ConnConsumerFactory.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void OnOpen(const ConnInfo& /*conn*/) {}
  virtual void OnData(const ConnInfo& conn, Direction dir, uint64_t ts_ns,
                      std::span<const uint8_t> bytes) = 0;
  virtual void OnGap(const ConnInfo& conn, Direction dir, uint64_t ts_ns, uint64_t len) = 0;
  static constexpr uint64_t kUnknownGap = ConnConsumer::kUnknownGap;
  virtual void OnClose(const ConnInfo& conn, uint64_t ts_ns) = 0;
};

class SinkConsumers : public ConnConsumerFactory {
 public:
  explicit SinkConsumers(StreamSink& sink) : sink_(sink) {}
  std::unique_ptr<ConnConsumer> NewConsumer(const ConnInfo& conn) override;

 private:
  StreamSink& sink_;
};

// Byte totals over every connection of one producer.
struct StreamTotals {
  uint64_t data_bytes = 0;       // payload bytes delivered
  uint64_t gap_bytes = 0;        // bytes delivered as gaps
  uint64_t duplicate_bytes = 0;  // bytes seen twice (dropped)
};

class Connection {
 public:
  // `totals` (the producer's) outlives the connection. The consumer is made here.
  Connection(const ConnInfo& info, StreamReassembler::Limits limits, ConnConsumerFactory& factory,
             StreamTotals& totals);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  ConnInfo& info() { return info_; }
  const ConnInfo& info() const { return info_; }
  const StreamReassembler& stream(Direction d) const { return dir_[Index(d)]; }
  bool closed() const { return consumer_ == nullptr; }

  // The open event arrived (info() already updated): tells the consumer.
  void Opened();
  // [pos, pos + len) of direction `d`, of which the first bytes.size() bytes are known.
  void Offer(Direction d, uint64_t pos, uint64_t len, uint64_t ts_ns,
             std::span<const uint8_t> bytes);
  // Declares the holes of `d` before pieces carried by syscalls no later than ts_ns.
  void DeclareHolesBefore(Direction d, uint64_t ts_ns);
  // Declares the holes of both directions held for at least `window_ns` at `now_ns`.
  void DeclareHolesOlderThan(uint64_t now_ns, uint64_t window_ns);
  // Delivers what `d` holds (holes declared), then a hole up to `pos` if short of it.
  void FinishStream(Direction d, uint64_t pos, uint64_t ts_ns);
  // Drops what `d` holds out of order (nothing more of it will be delivered).
  void DropPending(Direction d) { dir_[Index(d)].ClearPending(); }
  // Ends the connection: each direction finished at final_pos[d] (nullptr: at what it has), then
  // the consumer's OnClose, then the consumer is destroyed. Further calls do nothing.
  void Close(uint64_t ts_ns, const uint64_t* final_pos);
  // Ends a connection whose close event was lost: events lost with it cannot be measured, so each
  // direction first reports an unknown gap (pending exchanges end Incomplete, never as if
  // complete), then Close.
  void CloseLost(uint64_t ts_ns);

 private:
  class Output;
  static int Index(Direction d) { return static_cast<int>(d); }

  ConnInfo info_;
  StreamReassembler dir_[2];
  StreamTotals& totals_;
  std::unique_ptr<ConnConsumer> consumer_;  // after info_: it is made with a reference to it
};

}  // namespace infertap
