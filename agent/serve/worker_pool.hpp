// The worker threads of one HTTP server (docs/serving.md#layout): handlers that may block (an
// authorizer asking the Kubernetes API, a state callback taking locks) run here so the event loop
// never waits for them. The queue is bounded: when it is full TrySubmit() says so and the caller
// answers 503, so a flood of slow requests costs memory for at most `max_pending` of them.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace infertap::serve {

// Threads we start must not take the process's stop signals (the CLI's handler runs on the main
// thread) and must see EPIPE instead of dying of SIGPIPE: OpenSSL writes with write(2), which has
// no MSG_NOSIGNAL, and a synchronous SIGPIPE goes to the writing thread, where it stays blocked.
void BlockProcessSignalsInThisThread();

class WorkerPool {
 public:
  // At least one thread.
  WorkerPool(size_t threads, size_t max_pending);
  ~WorkerPool();  // Stop()s
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `job`; false (and `job` dropped) when `max_pending` jobs already wait, or after Stop().
  [[nodiscard]] bool TrySubmit(std::function<void()> job);
  // Drops the jobs that have not started, waits for running ones and joins. Idempotent.
  void Stop();
  // Jobs waiting for a thread (not those running).
  size_t queued() const;

 private:
  void Main();

  const size_t max_pending_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace infertap::serve
