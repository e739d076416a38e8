// One direction of a byte stream, rebuilt from pieces tagged with 64-bit stream positions.
//
// Shared by the live tracker (kernel events carry positions) and the pcap reader (TCP sequence
// numbers unwrapped to positions): pieces may arrive out of order, twice, or overlapping; a
// piece ahead of the next expected byte waits (bounded) until the hole before it is filled or
// declared a hole of exactly its length. Bytes leave strictly in stream order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

namespace infertap {

class StreamReassembler {
 public:
  class Output {
   public:
    virtual ~Output() = default;
    // The range [next_pos, next_pos + len) in order; its first bytes.size() bytes are known, the
    // rest (if any) was never captured. ts_ns is the time of the piece that carried it.
    virtual void OnRange(uint64_t ts_ns, uint64_t len, std::span<const uint8_t> bytes) = 0;
    // `len` bytes of the stream are missing here.
    virtual void OnHole(uint64_t ts_ns, uint64_t len) = 0;
    // `len` bytes arrived again (retransmission, duplicate event): dropped.
    virtual void OnDuplicate(uint64_t len) = 0;
  };

  struct Limits {
    size_t max_pending_cost = 1 << 20;  // bytes held out of order before forcing the first hole
    size_t segment_overhead = 0;        // charged per held piece on top of its bytes
  };

  StreamReassembler();  // default Limits
  explicit StreamReassembler(Limits limits) : limits_(limits) {}
  void set_limits(Limits limits) { limits_ = limits; }

  uint64_t next_pos() const { return next_pos_; }
  bool has_pending() const { return !pending_.empty(); }
  // Time of the first held piece (by position); only meaningful when has_pending().
  uint64_t first_pending_ts() const { return pending_.begin()->second.ts_ns; }

  // Offers [pos, pos + len), of which the first bytes.size() bytes are known.
  void Offer(uint64_t pos, uint64_t len, uint64_t ts_ns, std::span<const uint8_t> bytes,
             Output& out);
  // Declares the hole before the first held piece and delivers what then follows in order.
  void ForceFirstHole(Output& out);
  // Flushes every held piece (holes declared), then declares a hole up to `pos` if short of it.
  void FinishAt(uint64_t pos, uint64_t ts_ns, Output& out);
  // Drops held pieces (nothing more of this stream will be delivered).
  void ClearPending();

 private:
  struct Piece {
    uint64_t ts_ns = 0;
    uint64_t len = 0;
    std::vector<uint8_t> bytes;  // first bytes.size() bytes of the range; the rest is unknown
  };

  void Deliver(uint64_t ts_ns, uint64_t len, std::span<const uint8_t> bytes, Output& out);
  void Drain(Output& out);

  Limits limits_;
  uint64_t next_pos_ = 0;
  std::map<uint64_t, Piece> pending_;  // by position
  size_t pending_cost_ = 0;
};

}  // namespace infertap
