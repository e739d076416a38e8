// The metrics endpoint (docs/serving.md): /metrics (Prometheus text 0.0.4, gzip when asked),
// /healthz and /readyz (never behind auth: kubelet probes carry no token).
//
// Threads: Serialize() and the authorizer run on the HTTP worker threads; /healthz and /readyz
// run inline on the event loop so a slow authorizer or scrape never fails a liveness probe. The
// readiness callback must therefore be quick and non-blocking (read an atomic).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "agent/common/status.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/serve/auth.hpp"
#include "agent/serve/http_server.hpp"

namespace infertap::serve {

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready ("BPF programs not attached"), shown in the 503 body
};

struct MetricsServerOptions {
  HttpServerOptions http;  // http.addr: --metrics-addr (default ":9090"); TLS files; limits
  // Called on every /readyz; null means always ready.
  std::function<Readiness()> readiness;
  // Null for --metrics-auth=none. Applies to /metrics only.
  std::shared_ptr<Authorizer> authorizer;
};

class MetricsServer {
 public:
  static constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

  // `metrics` must outlive the server.
  MetricsServer(MetricsServerOptions options, const Metrics& metrics);
  Status Start() { return http_.Start(); }
  void Stop() { http_.Stop(); }
  uint16_t port() const { return http_.port(); }
  HttpServerStats stats() const { return http_.stats(); }

 private:
  HttpResponse ServeMetrics(const RequestHead& req) const;
  HttpResponse ServeReady() const;

  MetricsServerOptions options_;
  const Metrics& metrics_;
  HttpServer http_;
};

// True when an Accept-Encoding value accepts gzip (a "gzip" coding without q=0).
bool AcceptsGzip(std::string_view accept_encoding);
// gzip (RFC 1952) of `data`; empty on a zlib failure (the caller then sends identity).
std::string GzipCompress(std::string_view data);

}  // namespace infertap::serve
