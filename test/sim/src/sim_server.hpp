// The simulator's server: N worker threads, each with its own epoll set, timer heap and
// connections. The listening sockets are shared (EPOLLEXCLUSIVE wakes one worker per
// connection), so a connection lives on one thread for its whole life and needs no locks; only
// the admission queue and the counters are shared.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sim_config.hpp"
#include "sim_state.hpp"

namespace infertap::sim {

class Worker;

class Server {
 public:
  explicit Server(SimConfig cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on every --listen address. False with a readable message on failure.
  bool Bind(std::string* error);
  // The bound addresses, with the real port when :0 was asked for ("127.0.0.1:41234").
  const std::vector<std::string>& bound() const { return bound_; }
  // Starts the worker threads; returns at once.
  void Start();
  // Asks the workers to exit and joins them. Open connections are closed.
  void Stop();

  const SimConfig& config() const { return cfg_; }
  Admission& admission() { return admission_; }
  Stats& stats() { return stats_; }
  MetricsMode metrics_mode() const { return metrics_mode_.load(std::memory_order_relaxed); }
  void set_metrics_mode(MetricsMode m) { metrics_mode_.store(m, std::memory_order_relaxed); }
  uint64_t NextSeq() { return seq_.fetch_add(1, std::memory_order_relaxed); }
  const std::vector<int>& listen_fds() const { return listen_fds_; }

 private:
  SimConfig cfg_;
  Admission admission_;
  Stats stats_;
  std::atomic<MetricsMode> metrics_mode_;
  std::atomic<uint64_t> seq_{0};
  std::vector<int> listen_fds_;
  std::vector<std::string> bound_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
};

// "127.0.0.1:8000", "[::1]:8000", "localhost:0" -> sockaddr; false if unparsable.
bool ParseHostPort(const std::string& s, std::string* host, int* port);

}  // namespace infertap::sim
