// Concurrent HTTP GETs of model-server /metrics pages (libcurl multi interface).
//
// One HttpFetcher is driven by one thread (the pool poller's). Transfers run concurrently, each
// with its own timeout, so a pod that is down, hangs or sends garbage only ever costs its own
// transfer: the others complete and are reported as soon as they finish.
//
// Safety: plain http only, no redirects, proxies from the environment ignored (pod IPs must be
// reached directly, never through an egress proxy), decoded body capped (a gzip bomb stops at the
// cap), and signals never used for timeouts (threaded agent).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace infertap::poller {

struct FetchResult {
  bool ok = false;       // transfer done and HTTP 200
  long http_status = 0;  // 0 when no response
  std::string body;      // decoded (gzip handled)
  std::string content_type;
  std::string error;  // why !ok, e.g. "timeout after 1000 ms", "HTTP 500"
};

struct FetchOptions {
  std::chrono::milliseconds timeout{1000};
  size_t max_body_bytes = 8u << 20;
};

class HttpFetcher {
 public:
  explicit HttpFetcher(FetchOptions options);
  ~HttpFetcher();
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;

  // Starts GET `url`. `id` is the caller's handle, unique among transfers in flight. Returns
  // false (with nothing started) if libcurl refuses the handle.
  bool Start(uint64_t id, const std::string& url);
  // Drops an in-flight transfer without reporting it (its target went away).
  void Cancel(uint64_t id);
  // Advances all transfers, waiting up to `max_wait` for activity, and reports every transfer
  // that finished (on this thread).
  void Poll(std::chrono::milliseconds max_wait,
            const std::function<void(uint64_t id, FetchResult&& result)>& on_done);
  // Makes a Poll() in progress return early. The only method safe to call from another thread.
  void Wakeup();
  size_t InFlight() const { return transfers_.size(); }

 private:
  struct Transfer;
  static size_t OnBody(char* data, size_t size, size_t nmemb, void* user);

  const FetchOptions options_;
  void* multi_ = nullptr;    // CURLM*
  void* headers_ = nullptr;  // curl_slist*
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
};

}  // namespace infertap::poller
