// A stand-in for a running agent's inspection API (docs/serving.md), for tests of `top` and
// `trace`: HTTP/1.1 on 127.0.0.1 with an ephemeral port, GET /v1/state from a settable document,
// GET /v1/records as a chunked JSON-lines stream fed by Publish(). One thread per connection; the
// test decides exactly when each record line goes out.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace infertap::testing {

class FakeAgent {
 public:
  FakeAgent();
  ~FakeAgent();  // stops: closes every connection and joins every thread

  // Binds 127.0.0.1:`port` (0: ephemeral) and starts accepting; false on failure.
  bool Start(uint16_t port = 0);
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void SetState(std::string json);
  // Computes the state document per request instead (e.g. a counter that shows refreshes).
  void SetStateFunction(std::function<std::string()> fn);
  // HTTP status for /v1/records (200 streams; anything else is answered with a short body).
  void SetRecordsStatus(int status);
  // Sends `line` + "\n" as one chunk to every open record stream.
  void Publish(const std::string& line);
  // Sends a blank line (the JSON-lines heartbeat).
  void Heartbeat() { Publish(""); }
  // Ends every open record stream (terminal chunk, then close), as an agent shutting down would.
  void CloseStreams();
  // Waits until `n` record streams are open; false on timeout.
  bool WaitForStreams(size_t n, int timeout_ms);
  size_t open_streams();
  uint64_t state_requests() const { return state_requests_; }
  // Every request target seen, e.g. "/v1/records?format=json".
  std::vector<std::string> targets();

 private:
  struct Stream {
    std::deque<std::string> pending;  // chunks not yet written
    bool close = false;
  };
  void AcceptLoop();
  void Serve(int fd);
  void ServeRecords(int fd);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string state_ = "{}";
  std::function<std::string()> state_fn_;
  int records_status_ = 200;
  std::vector<std::shared_ptr<Stream>> streams_;
  std::vector<int> fds_;  // open connections, shut down on stop
  std::vector<std::thread> workers_;
  std::vector<std::string> targets_;
  std::atomic<uint64_t> state_requests_{0};
};

}  // namespace infertap::testing
