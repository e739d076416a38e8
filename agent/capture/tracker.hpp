// The connection tracker: capture events in, ordered byte streams out (docs/capture.md,
// docs/parsing.md).
//
// Per connection (conn_id from the kernel: a reused fd number gets a new id) the tracker keeps one
// Connection (agent/capture/connection.hpp), which rebuilds each direction's byte stream from
// event positions and feeds the connection's consumer. Events may arrive out of order (two
// threads writing one socket on two CPUs reserve ring space in a different order than stream
// positions); they wait, bounded, until the hole is filled. A hole that is not filled — a lost
// ring-buffer event, or bytes the kernel could not copy — is reported as a gap of exactly the
// missing length, so a downstream parser can resynchronise instead of gluing unrelated bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/capture/connection.hpp"
#include "agent/capture/event_source.hpp"

namespace infertap {

struct TrackerOptions {
  // Out-of-order bytes held per direction before the hole is declared a gap (docs/parsing.md: 1
  // MiB).
  size_t max_pending_bytes = 1 << 20;
  // A hole older than this (kernel time, vs the newest event seen) is declared a gap.
  uint64_t reorder_window_ns = 50'000'000;
  // Connections tracked at once; beyond it new connections are dropped and counted.
  size_t max_connections = 200'000;
  // Close events are lost with the rest of a ring overflow (docs/capture.md#loss-accounting);
  // nothing else would ever end such a connection. A connection with no event for this long is
  // ended by Flush (a later event of it starts a new one whose first bytes are a gap, so nothing is
  // mis-paired). 0 disables.
  uint64_t idle_timeout_ns = 300'000'000'000ull;
  // Live only: tells whether a connection's (tgid, fd) still holds a socket. Asked by Flush for
  // connections idle for at least liveness_check_after_ns, at most once per that period (a
  // readlink each: 10,000 idle connections cost about 2,000 calls a second at 5 s); false ends
  // the connection at once (its process exited or closed the fd). Empty in replay.
  std::function<bool(const ConnInfo&)> is_alive;
  uint64_t liveness_check_after_ns = 5'000'000'000ull;
};

// data_bytes, gap_bytes, duplicate_bytes: StreamTotals.
struct TrackerStats : StreamTotals {
  uint64_t events = 0;     // well-formed events consumed
  uint64_t malformed = 0;  // events rejected by the bounds checks
  uint64_t dropped_connections = 0;
  uint64_t reconciled_closes = 0;  // connections ended without their close event (see Flush)
};

// Owns one Connection per live connection (agent/capture/connection.hpp), whose consumer
// `consumers` makes (the Pipeline in the agent); nothing else keeps per-connection state.
class ConnectionTracker : public EventSink {
 public:
  ConnectionTracker(ConnConsumerFactory& consumers, TrackerOptions options = {});
  // Every connection's streams to one sink (the `--summary` printer, tests).
  ConnectionTracker(StreamSink& sink, TrackerOptions options = {});
  ~ConnectionTracker() override;

  void OnEvent(std::span<const uint8_t> record) override;
  // Declares holes older than the reorder window as gaps, and ends connections whose close event
  // was lost (idle timeout, is_alive). `now_ns` is CLOCK_MONOTONIC (live) or the newest event
  // time (replay). Called periodically by the pipeline.
  void Flush(uint64_t now_ns);
  // Ends every connection (end of capture): pending holes become gaps, then OnClose.
  void FinishAll(uint64_t ts_ns);

  size_t connections() const { return conns_.size(); }
  const TrackerStats& stats() const { return stats_; }
  uint64_t newest_ts_ns() const { return newest_ts_; }

 private:
  struct Conn {
    Conn(const ConnInfo& info, StreamReassembler::Limits limits, ConnConsumerFactory& consumers,
         StreamTotals& totals, uint64_t ts)
        : conn(info, limits, consumers, totals), last_ts(ts) {}
    Connection conn;
    uint64_t last_ts = 0;  // newest event of this connection
  };
  using ConnMap = std::unordered_map<uint64_t, Conn>;  // nodes: a Conn never moves

  Conn* GetOrCreate(const it_event_header& h, uint32_t fd, uint8_t role);
  void OnData(const it_data_event& ev, std::span<const uint8_t> payload);
  void OnOpen(const it_conn_event& ev);
  void OnClose(const it_conn_event& ev);
  // Erases `it` after its Connection was closed; keeps the (tgid, fd) index in step.
  void EraseConn(ConnMap::iterator it);
  void ReconcileIdle(uint64_t now_ns);
  static uint64_t FdKey(uint32_t tgid, uint32_t fd) { return uint64_t(tgid) << 32 | fd; }

  std::unique_ptr<SinkConsumers> sink_consumers_;  // set by the StreamSink constructor
  ConnConsumerFactory& consumers_;
  TrackerOptions opt_;
  TrackerStats stats_;
  uint64_t newest_ts_ = 0;
  ConnMap conns_;
  // (tgid, fd) → conn_id of the live connection holding that fd. A new connection on the same
  // (tgid, fd) proves the old one was closed even if its close event was lost.
  std::unordered_map<uint64_t, uint64_t> by_fd_;
  uint64_t last_reconcile_ns_ = 0;
};

}  // namespace infertap
