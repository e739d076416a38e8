// The connection tracker: capture events in, ordered byte streams out (docs/capture.md,
// docs/parsing.md).
//
// Per connection (conn_id from the kernel: a reused fd number gets a new id) and direction, the
// tracker rebuilds the byte stream from event positions. Events may arrive out of order (two
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
#include "agent/capture/event_source.hpp"
#include "agent/capture/reassembler.hpp"

namespace infertap {

struct ConnCounters {
  uint64_t events = 0;     // data events received (pieces, not syscalls)
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

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void OnOpen(const ConnInfo& /*conn*/) {}
  // Bytes in stream order. ts_ns is the kernel timestamp of the syscall that carried them.
  virtual void OnData(const ConnInfo& conn, Direction dir, uint64_t ts_ns,
                      std::span<const uint8_t> bytes) = 0;
  // `len` bytes of the stream are missing here. len == kUnknownGap: an unknown amount may be
  // missing (the connection's close event was lost, and with it perhaps its last data events).
  virtual void OnGap(const ConnInfo& conn, Direction dir, uint64_t ts_ns, uint64_t len) = 0;
  static constexpr uint64_t kUnknownGap = ~uint64_t(0);
  // The connection is over (closed, or the capture ended). No more calls for it.
  virtual void OnClose(const ConnInfo& conn, uint64_t ts_ns) = 0;
};

struct TrackerOptions {
  // Out-of-order bytes held per direction before the hole is declared a gap (docs/parsing.md: 1
  // MiB).
  size_t max_pending_bytes = 1 << 20;
  // A hole older than this (kernel time, vs the newest event seen) is declared a gap.
  uint64_t reorder_window_ns = 50'000'000;
  // Connections tracked at once; beyond it new connections are dropped and counted.
  size_t max_connections = 200'000;
  // Close events are lost with the rest of a ring overflow (docs/capture.md#loss-accounting); nothing else
  // would ever end such a connection. A connection with no event for this long is ended by
  // Flush (a later event of it starts a new one whose first bytes are a gap, so nothing is
  // mis-paired). 0 disables.
  uint64_t idle_timeout_ns = 300'000'000'000ull;
  // Live only: tells whether a connection's (tgid, fd) still holds a socket. Asked by Flush for
  // connections idle for at least liveness_check_after_ns, at most once per that period (a
  // readlink each: 10,000 idle connections cost about 2,000 calls a second at 5 s); false ends
  // the connection at once (its process exited or closed the fd). Empty in replay.
  std::function<bool(const ConnInfo&)> is_alive;
  uint64_t liveness_check_after_ns = 5'000'000'000ull;
};

struct TrackerStats {
  uint64_t events = 0;           // well-formed events consumed
  uint64_t data_bytes = 0;       // payload bytes delivered
  uint64_t gap_bytes = 0;        // bytes delivered as gaps
  uint64_t malformed = 0;        // events rejected by the bounds checks
  uint64_t duplicate_bytes = 0;  // bytes seen twice (dropped)
  uint64_t dropped_connections = 0;
  uint64_t reconciled_closes = 0;  // connections ended without their close event (see Flush)
};

class ConnectionTracker : public EventSink {
 public:
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
    ConnInfo info;
    StreamReassembler dir[2];
    uint64_t last_ts = 0;  // newest event of this connection
  };
  class DirOutput;

  Conn* GetOrCreate(const it_event_header& h, uint32_t fd, uint8_t role);
  void OnData(const it_data_event& ev, std::span<const uint8_t> payload);
  void OnOpen(const it_conn_event& ev);
  void OnClose(const it_conn_event& ev);
  void CloseConn(Conn& c, uint64_t ts, const uint64_t* final_pos);
  // Ends a connection whose close event was lost: events lost with it cannot be measured, so
  // each direction first reports an unknown gap (pending exchanges end Incomplete, never as if
  // complete), then the close.
  void CloseLost(Conn& c, uint64_t ts);
  // Erases `it` after CloseConn; keeps the (tgid, fd) index in step.
  void EraseConn(std::unordered_map<uint64_t, std::unique_ptr<Conn>>::iterator it);
  void ReconcileIdle(uint64_t now_ns);
  static uint64_t FdKey(uint32_t tgid, uint32_t fd) { return uint64_t(tgid) << 32 | fd; }

  StreamSink& sink_;
  TrackerOptions opt_;
  TrackerStats stats_;
  uint64_t newest_ts_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns_;
  // (tgid, fd) → conn_id of the live connection holding that fd. A new connection on the same
  // (tgid, fd) proves the old one was closed even if its close event was lost.
  std::unordered_map<uint64_t, uint64_t> by_fd_;
  uint64_t last_reconcile_ns_ = 0;
};

}  // namespace infertap
