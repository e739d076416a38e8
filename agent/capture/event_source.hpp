// The seam between where capture events come from and what consumes them (STYLE: "an
// EventSource interface at the ring-buffer seam with live, recording and replay
// implementations — the same pipeline runs on all three").
//
// An event is one record in the format of bpf/infertap_abi.h (it_event_header first). Sources
// hand out views valid only for the duration of the OnEvent call.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "agent/common/status.hpp"

namespace infertap {

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void OnEvent(std::span<const uint8_t> record) = 0;
};

struct PollResult {
  Status status;        // not ok: the source failed (message says why)
  size_t events = 0;    // delivered by this call
  bool at_end = false;  // no more events will come (end of a file)
};

class EventSource {
 public:
  virtual ~EventSource() = default;
  // Delivers the events available now, waiting at most timeout_ms for the first one.
  virtual PollResult Poll(EventSink& sink, int timeout_ms) = 0;
  // Offset to add to an event's CLOCK_MONOTONIC timestamp to get wall-clock (UNIX epoch) ns.
  virtual int64_t WallOffsetNs() const = 0;
};

// Current CLOCK_REALTIME − CLOCK_MONOTONIC, in ns.
int64_t CurrentWallOffsetNs();

}  // namespace infertap
