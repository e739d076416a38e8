// Fans request records out to live /v1/records streams (docs/serving.md) without ever slowing the
// pipeline.
//
// Publish() is called on the pipeline thread. It never waits for a subscriber: each subscriber
// has a bounded queue (default 10,000 records); when it is full the oldest record is dropped and
// counted for that subscriber and in the total. Holding the lock costs one JSON encoding per
// record (shared by all subscribers) plus a deque push per subscriber; with no subscriber it is
// one atomic load. Subscribers drain on the HTTP loop thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parsers/record.hpp"

namespace infertap::serve {

class RecordBroadcaster {
 public:
  class Subscription {
   public:
    // Moves up to `max_records` queued JSON lines (no newline) into *out, oldest first.
    void Drain(std::vector<std::shared_ptr<const std::string>>* out, size_t max_records);
    // Records dropped from this subscriber's queue because it was full.
    uint64_t dropped() const { return dropped_.load(); }
    size_t queued() const;

   private:
    friend class RecordBroadcaster;
    mutable std::mutex mu_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    std::atomic<uint64_t> dropped_{0};
    std::function<void()> notify_;
  };

  // `wall_offset_ns` turns record monotonic times into wall-clock `ts` (see RecordToJson).
  explicit RecordBroadcaster(int64_t wall_offset_ns, size_t queue_capacity = 10'000);

  // Pipeline thread; never blocks on subscribers.
  void Publish(const RequestRecord& record);

  // `notify` is called (under the broadcaster's lock, so it must only signal, e.g. an eventfd)
  // when the queue goes from drained to non-empty; it is never called after Unsubscribe returns.
  std::shared_ptr<Subscription> Subscribe(std::function<void()> notify);
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);

  size_t subscribers() const;
  uint64_t published() const { return published_.load(); }
  // Drops across all subscribers, including ones that have gone.
  uint64_t total_dropped() const { return total_dropped_.load(); }
  int64_t wall_offset_ns() const { return wall_offset_ns_; }

 private:
  const int64_t wall_offset_ns_;
  const size_t capacity_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  std::atomic<size_t> sub_count_{0};
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> total_dropped_{0};
};

}  // namespace infertap::serve
