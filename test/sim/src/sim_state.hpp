// State shared by all worker threads: the concurrency slots that make requests wait (the queue
// the /metrics gauges report), and the counters behind /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>

#include "sim_config.hpp"

namespace infertap::sim {

class Worker;

// A request waiting for a slot: which worker owns it and which connection incarnation.
struct Ticket {
  Worker* worker = nullptr;
  int fd = -1;
  uint64_t gen = 0;
  uint64_t job = 0;  // which request on that connection (pipelining reuses the connection)
  bool operator==(const Ticket&) const = default;
};

// --max-running slots, FIFO. A freed slot passes straight to the oldest waiter (its worker is
// told through `deliver`), so the running count never dips between two requests.
class Admission {
 public:
  Admission(int max_running, std::function<void(const Ticket&)> deliver)
      : max_running_(max_running), deliver_(std::move(deliver)) {}

  // True: admitted now. False: queued; `deliver` is called later from some thread.
  bool TryAdmit(const Ticket& t);
  // A running request finished (or a delivered ticket found its connection gone).
  void Release();
  // A queued request went away before admission. False if it was already delivered, in which
  // case the receiving worker will find it dead and call Release().
  bool CancelWaiting(const Ticket& t);

  int running() const { return running_gauge_.load(std::memory_order_relaxed); }
  int waiting() const { return waiting_gauge_.load(std::memory_order_relaxed); }

 private:
  const int max_running_;
  std::function<void(const Ticket&)> deliver_;
  std::mutex mu_;
  int running_ = 0;
  std::deque<Ticket> queue_;
  std::atomic<int> running_gauge_{0};
  std::atomic<int> waiting_gauge_{0};
};

struct Stats {
  std::atomic<int64_t> kv_tokens{0};  // prompt + generated tokens of running requests
  std::atomic<int64_t> prompt_tokens_total{0};
  std::atomic<int64_t> generation_tokens_total{0};
  std::atomic<int64_t> finished_stop{0};
  std::atomic<int64_t> finished_length{0};
  std::atomic<int64_t> finished_abort{0};
  std::atomic<int64_t> finished_error{0};
};

// The Prometheus text a server of `cfg.engine` would expose, from the live state.
std::string RenderMetrics(const SimConfig& cfg, const Admission& adm, const Stats& stats);

}  // namespace infertap::sim
