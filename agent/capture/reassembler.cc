#include "agent/capture/reassembler.hpp"

#include <algorithm>

namespace infertap {

StreamReassembler::StreamReassembler() : limits_() {}

void StreamReassembler::Deliver(uint64_t ts_ns, uint64_t len, std::span<const uint8_t> bytes,
                                Output& out) {
  out.OnRange(ts_ns, len, bytes.first(std::min<uint64_t>(bytes.size(), len)));
  next_pos_ += len;
}

void StreamReassembler::Offer(uint64_t pos, uint64_t len, uint64_t ts_ns,
                              std::span<const uint8_t> bytes, Output& out) {
  if (len == 0) return;
  if (pos < next_pos_) {
    // Overlaps what was delivered already: keep only the new tail.
    const uint64_t skip = next_pos_ - pos;
    if (skip >= len) {
      out.OnDuplicate(len);
      return;
    }
    out.OnDuplicate(skip);
    bytes = bytes.subspan(std::min<uint64_t>(skip, bytes.size()));
    pos += skip;
    len -= skip;
  }
  if (pos == next_pos_) {
    Deliver(ts_ns, len, bytes, out);
    Drain(out);
    return;
  }
  // A hole before this piece: hold it (bounded) until the hole is filled or declared.
  auto [it, inserted] = pending_.try_emplace(pos);
  if (!inserted) {
    if (it->second.len >= len) {
      out.OnDuplicate(len);
      return;
    }
    out.OnDuplicate(it->second.len);  // the longer piece replaces it
    pending_cost_ -= it->second.bytes.size() + limits_.segment_overhead;
  }
  it->second.ts_ns = ts_ns;
  it->second.len = len;
  it->second.bytes.assign(bytes.begin(), bytes.end());
  pending_cost_ += bytes.size() + limits_.segment_overhead;
  while (pending_cost_ > limits_.max_pending_cost && !pending_.empty()) ForceFirstHole(out);
}

void StreamReassembler::Drain(Output& out) {
  while (!pending_.empty()) {
    auto it = pending_.begin();
    if (it->first > next_pos_) return;
    const uint64_t pos = it->first;
    Piece piece = std::move(it->second);
    pending_cost_ -= piece.bytes.size() + limits_.segment_overhead;
    pending_.erase(it);
    std::span<const uint8_t> bytes(piece.bytes);
    uint64_t len = piece.len;
    if (pos < next_pos_) {
      const uint64_t skip = next_pos_ - pos;
      if (skip >= len) {
        out.OnDuplicate(len);
        continue;
      }
      out.OnDuplicate(skip);
      bytes = bytes.subspan(std::min<uint64_t>(skip, bytes.size()));
      len -= skip;
    }
    Deliver(piece.ts_ns, len, bytes, out);
  }
}

void StreamReassembler::ForceFirstHole(Output& out) {
  if (pending_.empty()) return;
  auto it = pending_.begin();
  if (it->first > next_pos_) {
    const uint64_t hole = it->first - next_pos_;
    out.OnHole(it->second.ts_ns, hole);
    next_pos_ = it->first;
  }
  Drain(out);
}

void StreamReassembler::FinishAt(uint64_t pos, uint64_t ts_ns, Output& out) {
  while (!pending_.empty()) ForceFirstHole(out);
  if (pos > next_pos_) {
    out.OnHole(ts_ns, pos - next_pos_);
    next_pos_ = pos;
  }
}

void StreamReassembler::ClearPending() {
  pending_.clear();
  pending_cost_ = 0;
}

}  // namespace infertap
