#include "agent/serve/worker_pool.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>

namespace infertap::serve {

void BlockProcessSignalsInThisThread() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  // Cannot fail with a valid `how` and set.
  (void)pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

WorkerPool::WorkerPool(size_t threads, size_t max_pending) : max_pending_(max_pending) {
  for (size_t i = 0; i < std::max<size_t>(1, threads); ++i)
    threads_.emplace_back([this] { Main(); });
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySubmit(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stop_ || jobs_.size() >= max_pending_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

size_t WorkerPool::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

void WorkerPool::Main() {
  BlockProcessSignalsInThisThread();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace infertap::serve
