// The local inspection API for `infertap top` and `infertap trace` (docs/serving.md), on
// --inspect-addr (default 127.0.0.1:9091):
//   GET /v1/state    → the JSON document of the state callback (application/json)
//   GET /v1/records  → a live stream of request records (metadata only, docs/records.md JSON):
//        `Accept: text/event-stream` or `?format=sse`: SSE, one `data: <json>\n\n` per record,
//          `: keep-alive` comments as heartbeats, `: dropped N` when records were lost;
//        otherwise JSON lines (application/x-ndjson), one record per line, an empty line as the
//          heartbeat (line readers must skip empty lines).
//        Both use chunked transfer encoding (HTTP/1.1). Heartbeats every ~5 s keep proxies
//        (kubectl port-forward) from timing out and surface a vanished client as a write error.
//        Only records published after the client connected are sent.
//
// The API has no authentication, so it listens on loopback only: Start() refuses any other
// address unless allow_non_loopback is set (an explicit flag for debugging setups such as a pod
// network namespace shared with a sidecar; the caller should log a warning when it is used).
//
// Threads: the state callback runs on an HTTP worker thread; streams drain on the loop thread.
#pragma once

#include <functional>
#include <string>

#include "agent/common/status.hpp"
#include "agent/serve/http_server.hpp"
#include "agent/serve/record_broadcaster.hpp"

namespace infertap::serve {

struct InspectServerOptions {
  HttpServerOptions http = DefaultHttp();  // http.addr: --inspect-addr
  bool allow_non_loopback = false;
  // Returns one JSON document (pools, pods, endpoints, connections, counters). Null → "{}".
  std::function<std::string()> state;

  static HttpServerOptions DefaultHttp() {
    HttpServerOptions o;
    o.addr = "127.0.0.1:9091";
    o.max_connections = 64;  // a few CLIs, not a fleet
    return o;
  }
};

class InspectServer {
 public:
  // `records` must outlive the server.
  InspectServer(InspectServerOptions options, RecordBroadcaster& records);
  // Errors: a non-loopback address without allow_non_loopback, or the HttpServer's errors.
  Status Start();
  void Stop() { http_.Stop(); }
  uint16_t port() const { return http_.port(); }
  HttpServerStats stats() const { return http_.stats(); }

 private:
  HttpResponse ServeRecords(const RequestHead& req);

  InspectServerOptions options_;
  RecordBroadcaster& records_;
  HttpServer http_;
};

// True when the request asks for SSE: ?format=sse, or an Accept header naming text/event-stream.
// ?format=json forces JSON lines.
bool WantsSse(const RequestHead& req);

}  // namespace infertap::serve
