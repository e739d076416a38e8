// One HTTP/1.1 connection of the agent's servers as a state machine (docs/serving.md#layout):
// TLS handshake, request heads (agent/serve/head_parser.hpp), routing, responses, chunked streams,
// timeouts and heartbeats. It owns its transport and knows nothing of epoll or threads: the server
// (agent/serve/http_server.cc) calls Progress() when the socket is ready, OnHandlerDone() when a
// worker finished, Tick() on every loop turn, and reads interest() back. Tests drive it the same
// way over a socketpair.
//
// States: kHead (reading a request head) → kWaitHandler (a worker runs the handler) → kWriting
// (a fixed response goes out) or kStreaming (a chunked stream is pulled from its source while less
// than stream_output_cap waits for the socket) → kHead again for keep-alive, or closed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "agent/serve/head_parser.hpp"
#include "agent/serve/http_message.hpp"
#include "agent/serve/transport.hpp"

namespace infertap::serve {

using Clock = std::chrono::steady_clock;
using Handler = std::function<HttpResponse(const RequestHead&)>;

struct Route {
  Handler handler;
  bool may_block = true;  // runs on a worker; false: inline on the loop thread (must be quick)
};
using Routes = std::map<std::string, Route, std::less<>>;

// h(req), with a throwing handler turned into a 500 (a bug on our side must not end the server).
HttpResponse RunHandler(const Handler& h, const RequestHead& req);

// Bounds of one connection (HttpServerOptions carries them for the whole server).
// A stream is pulled only while less than stream_output_cap is queued for the socket, so a slow
// reader's backlog stays in the producer's bounded queue, where it is counted when dropped.
struct ConnectionLimits {
  size_t max_head_bytes = 16 * 1024;
  std::chrono::milliseconds head_timeout{10'000};       // accept / first byte → complete head
  std::chrono::milliseconds idle_timeout{60'000};       // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{30'000};      // pending output without any progress
  std::chrono::milliseconds heartbeat_interval{5'000};  // streams: max silence
  size_t stream_output_cap = 256 * 1024;
};

// Counters shared by the connections of one server; monotonic.
struct ConnectionCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};  // 400/431/413 answered by the connection itself
  std::atomic<uint64_t> tls_handshake_failures{0};
};

// What a connection asks of its server.
class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  // Runs `handler(req)` off the loop thread and later calls OnHandlerDone() on the loop thread;
  // false when the worker queue is full (the connection answers 503).
  [[nodiscard]] virtual bool SubmitHandler(uint64_t conn_id, const Handler* handler,
                                           RequestHead req) = 0;
  // The stream of `conn_id` has new data; any thread. The server calls Progress() soon.
  virtual void WakeStream(uint64_t conn_id) = 0;
  // Stopping: new responses say "Connection: close".
  virtual bool stopping() const = 0;
};

class HttpConnection {
 public:
  enum class State { kHead, kWaitHandler, kWriting, kStreaming };

  HttpConnection(uint64_t id, std::unique_ptr<Transport> transport, const ConnectionLimits& limits,
                 const Routes& routes, ConnectionHost* host, ConnectionCounters* counters,
                 Clock::time_point now);
  ~HttpConnection();  // destroys a stream source (unsubscribing it) and closes the transport
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Moves the connection as far as it goes without blocking.
  void Progress(Clock::time_point now);
  // The handler SubmitHandler() ran has answered.
  void OnHandlerDone(HttpResponse resp, Clock::time_point now);
  // Timeouts and heartbeats. False when a timeout expired: the caller closes the connection.
  [[nodiscard]] bool Tick(Clock::time_point now);

  // Finished (error, EOF, or a response that closes): the caller destroys it.
  bool closed() const { return closed_; }
  // EPOLLIN / EPOLLOUT bits the connection waits for now.
  uint32_t interest() const;
  uint64_t id() const { return id_; }
  int fd() const { return transport_->fd(); }
  State state() const { return state_; }
  size_t pending_output() const { return out_.size() - out_off_; }

 private:
  bool TryHead(Clock::time_point now);
  bool Reject(int status, const char* why, Clock::time_point now);
  void Respond(HttpResponse resp, bool head_only, Clock::time_point now);
  [[nodiscard]] bool ReadSome(std::string* buf, size_t max, Io* io);
  bool Flush(Clock::time_point now);
  void FillStream(Clock::time_point now);
  void AppendStreamBytes(const std::string& bytes, Clock::time_point now);
  void Close() { closed_ = true; }

  const uint64_t id_;
  std::unique_ptr<Transport> transport_;
  const ConnectionLimits& limits_;
  const Routes& routes_;
  ConnectionHost* host_;
  ConnectionCounters* counters_;

  State state_ = State::kHead;
  bool closed_ = false;
  HeadParser parser_;
  std::string in_;  // received bytes not yet fed to the parser
  std::string out_;
  size_t out_off_ = 0;
  bool close_after_write_ = false;
  bool keep_alive_ = true;     // of the request being answered
  bool head_only_ = false;     // the request being answered is a HEAD
  bool chunked_ = false;       // stream framing (HTTP/1.1)
  int minor_version_ = 1;      // of the request being answered
  bool head_started_ = false;  // head_deadline_ runs
  Clock::time_point head_deadline_;
  Clock::time_point idle_since_;
  Clock::time_point last_write_progress_;
  Clock::time_point last_stream_send_;
  std::shared_ptr<StreamSource> stream_;
  bool stream_more_ = false;  // the last pull stopped at the output cap
  std::shared_ptr<std::atomic<bool>> wake_pending_;
};

}  // namespace infertap::serve
