#include "agent/serve/record_broadcaster.hpp"

#include <algorithm>

namespace infertap::serve {

RecordBroadcaster::RecordBroadcaster(int64_t wall_offset_ns, size_t queue_capacity)
    : wall_offset_ns_(wall_offset_ns), capacity_(std::max<size_t>(1, queue_capacity)) {}

void RecordBroadcaster::Publish(const RequestRecord& record) {
  published_++;
  if (sub_count_.load(std::memory_order_relaxed) == 0) return;
  // Encode once, outside the lock; every subscriber shares the same string.
  auto json = std::make_shared<const std::string>(RecordToJson(record, wall_offset_ns_));
  std::lock_guard lock(mu_);
  for (const auto& sub : subs_) {
    bool was_empty;
    {
      std::lock_guard sl(sub->mu_);
      was_empty = sub->queue_.empty();
      if (sub->queue_.size() >= capacity_) {
        sub->queue_.pop_front();
        sub->dropped_++;
        total_dropped_++;
      }
      sub->queue_.push_back(json);
    }
    if (was_empty && sub->notify_) sub->notify_();
  }
}

std::shared_ptr<RecordBroadcaster::Subscription> RecordBroadcaster::Subscribe(
    std::function<void()> notify) {
  auto sub = std::make_shared<Subscription>();
  sub->notify_ = std::move(notify);
  std::lock_guard lock(mu_);
  subs_.push_back(sub);
  sub_count_ = subs_.size();
  return sub;
}

void RecordBroadcaster::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  std::lock_guard lock(mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
  sub_count_ = subs_.size();
}

size_t RecordBroadcaster::subscribers() const { return sub_count_.load(); }

void RecordBroadcaster::Subscription::Drain(std::vector<std::shared_ptr<const std::string>>* out,
                                            size_t max_records) {
  std::lock_guard lock(mu_);
  size_t n = std::min(max_records, queue_.size());
  for (size_t i = 0; i < n; ++i) {
    out->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

size_t RecordBroadcaster::Subscription::queued() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

}  // namespace infertap::serve
