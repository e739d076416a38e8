// A small Kubernetes REST client on libcurl (docs/kubernetes.md): JSON GET/POST with a bounded
// total time, and a streaming watch reader that hands complete lines to the caller.
//
// Every call uses its own easy handle, so the client is safe to use from several threads at
// once (the reflectors and the authorizer's HTTP workers). TLS follows the ClusterConfig (CA file
// or inline PEM, client certificate, insecure-skip-tls-verify); proxies from the environment are
// ignored (the API server is reached directly) and redirects are not followed. The bearer token
// comes from a TokenSource, is re-read after a 401 and the request retried once; it is never
// logged or put into an error message.
//
// Stop() makes every transfer in progress (and every later one) end promptly with
// `stopped = true`, through curl's progress callback, for a clean shutdown.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "k8s/config.hpp"

namespace infertap::k8s {

struct RestOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{10000};  // total, for non-watch calls
  size_t max_body_bytes = 64u << 20;                 // a list page larger than this is an error
  size_t max_line_bytes = 16u << 20;                 // one watch event larger: error → relist
};

struct HttpResult {
  long status = 0;       // HTTP status; 0 when no response arrived
  std::string body;      // response body (capped)
  std::string error;     // transport error ("connect timeout", "TLS: ...") when status == 0
  bool stopped = false;  // Stop() ended it
  bool ok() const { return status >= 200 && status < 300; }
  // "HTTP 404: <message from the Status object>" or the transport error, for logs.
  std::string Describe() const;
};

struct WatchResult {
  long status = 0;                 // HTTP status of the watch response; 0 when none
  std::string body;                // the body of a non-200 answer (a Status object), capped
  std::string error;               // transport error, or "line too long", or "idle for N s"
  bool stopped = false;            // Stop() ended it
  bool aborted_by_caller = false;  // on_line returned false
  bool line_too_long = false;      // a line exceeded max_line_bytes (error says so)
  size_t lines = 0;                // complete lines handed to on_line
};

class RestClient {
 public:
  RestClient(ClusterConfig config, RestOptions options = {});
  ~RestClient();
  RestClient(const RestClient&) = delete;
  RestClient& operator=(const RestClient&) = delete;

  // `path` is the request target after the server URL: "/api/v1/pods?limit=500".
  // `cancel` (optional) ends the transfer promptly like Stop(), for one caller only.
  HttpResult Get(const std::string& path, const std::atomic<bool>* cancel = nullptr);
  HttpResult PostJson(const std::string& path, const std::string& json_body);
  // Any method (DELETE, PUT, PATCH with `content_type`); `body` may be null.
  HttpResult Request(const std::string& method, const std::string& path, const std::string* body,
                     const std::string& content_type = "application/json");

  // A streaming GET: every complete '\n'-terminated line of a 200 response goes to on_line
  // (without the newline; empty lines skipped). Returns when the server ends the stream, the
  // connection breaks, no byte arrived for `idle_timeout`, a line exceeds max_line_bytes,
  // on_line returns false, or Stop() is called.
  WatchResult Watch(const std::string& path, std::chrono::milliseconds idle_timeout,
                    const std::function<bool(std::string_view line)>& on_line,
                    const std::atomic<bool>* cancel = nullptr);

  void Stop();
  bool stopped() const { return stop_.load(); }
  const ClusterConfig& config() const { return config_; }
  TokenSource& tokens() { return tokens_; }

 private:
  struct Transfer;
  HttpResult Do(const std::string& method, const std::string& path, const std::string* body,
                const std::atomic<bool>* cancel, const std::string& content_type);
  void* NewHandle(Transfer* t, const std::string& method, const std::string& path,
                  const std::string& token, const std::string* body,
                  const std::string& content_type) const;

  const ClusterConfig config_;
  const RestOptions options_;
  TokenSource tokens_;
  std::atomic<bool> stop_{false};
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
std::string UrlEncode(std::string_view value);

}  // namespace infertap::k8s
