// A small HTTP/1.1 server for the agent's own endpoints (docs/serving.md): /metrics, /healthz,
// /readyz and the local inspection API with its long-lived record streams. This file is the event
// loop that ties the parts together (docs/serving.md#layout): the listener (listener.hpp), one
// state machine per connection (http_connection.hpp) over a plain or TLS transport (transport.hpp,
// tls.hpp), and the worker pool for blocking handlers (worker_pool.hpp).
//
// Why our own server rather than civetweb (Debian libcivetweb), prometheus-cpp's Exposer or
// Boost.Beast (docs/serving.md#layout has the whole decision):
//  - Debian's civetweb loads OpenSSL with dlopen("libssl.so"), a name only the -dev package
//    provides, so TLS would work on the build host and fail in the image.
//  - civetweb gives every connection a worker thread for its whole life; each `infertap top` /
//    `trace` stream would pin one, and a stuck stream delays mg_stop().
//  - What we need is small and fully testable here: GET/HEAD without bodies, fixed responses,
//    chunked streams fed from another thread, TLS via OpenSSL linked normally.
//
// Threads:
//  - One event-loop thread (epoll, non-blocking sockets) owns every connection: accept, TLS
//    handshakes, reading heads, writing responses, streams, timeouts, heartbeats.
//  - `worker_threads` threads run handlers of routes registered with may_block = true (the
//    default), so a slow handler (an authorizer calling the Kubernetes API, a state callback
//    taking locks) never stalls other connections or the health probes. Routes registered with
//    may_block = false run inline on the loop thread and must be quick and non-blocking.
//  - Start()/Stop() from any one thread. Handlers and StreamSource::wake from any thread.
//
// Robustness bounds (HttpServerOptions): request head size (431), head timeout from the first
// byte (slow-loris), idle keep-alive timeout, write-stall timeout (a client that stops reading),
// per-connection output cap for streams (data waits in the producer's bounded queue, not here),
// connection cap (excess connections are answered 503 and closed), bounded handler queue (503).
// Requests with a body are answered 413 and the connection closed: no endpoint takes one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "agent/common/status.hpp"
#include "agent/serve/http_connection.hpp"
#include "agent/serve/http_message.hpp"

namespace infertap::serve {

// The per-connection bounds (head size and timeouts, write stall, heartbeats, stream output cap)
// are the ConnectionLimits fields (http_connection.hpp); these add the server-wide ones.
struct HttpServerOptions : ConnectionLimits {
  std::string addr = ":9090";  // see listen_addr.hpp
  // PEM files; both or neither. Loaded (and checked against each other) by Start().
  std::string tls_cert_file;
  std::string tls_key_file;

  size_t max_connections = 256;
  size_t worker_threads = 2;
  size_t max_pending_handlers = 128;
};

// Counters for tests and /v1/state; all monotonic except `connections`.
struct HttpServerStats {
  uint64_t accepted = 0;
  uint64_t rejected_over_cap = 0;
  uint64_t requests = 0;
  uint64_t bad_requests = 0;  // 400/431/413 answered without reaching a handler
  uint64_t timeouts = 0;      // head, idle or write timeout closes
  uint64_t tls_handshake_failures = 0;
  uint64_t connections = 0;  // open now
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Exact-path routes; register before Start(). GET and HEAD reach the handler (HEAD gets the
  // headers only); other methods get 405. Unknown paths get 404.
  void Handle(std::string path, Handler handler, bool may_block = true);

  // Binds, listens and starts the threads. Errors name the address and the reason:
  // "cannot listen on :9090: Address already in use", "cannot load TLS certificate ...".
  Status Start();
  // Closes the listener and every connection (streams end without their terminal chunk, which
  // tells a client the stream was cut), destroys stream sources and joins the loop thread within
  // one loop tick. Joining the workers waits for handlers already running. Idempotent.
  void Stop();

  // The bound port (useful with port 0); 0 before Start().
  uint16_t port() const { return port_.load(); }
  bool tls() const { return !options_.tls_cert_file.empty(); }
  HttpServerStats stats() const;

 private:
  struct Impl;
  HttpServerOptions options_;
  Routes routes_;
  std::atomic<uint16_t> port_{0};
  std::unique_ptr<Impl> impl_;
};

}  // namespace infertap::serve
