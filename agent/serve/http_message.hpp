// HTTP/1.1 request heads and responses for the agent's own small servers (docs/serving.md):
// /metrics, /healthz, /readyz and the local inspection API. Only what those endpoints need:
// GET/HEAD requests without bodies, fixed or streamed (chunked) responses. Heads are parsed by
// agent/serve/head_parser.hpp (llhttp).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "parsers/ascii.hpp"
#include "parsers/http_status.hpp"

namespace infertap::serve {

struct RequestHead {
  std::string method;     // "GET", "HEAD", ... (case-sensitive, RFC 9110)
  std::string target;     // as sent: "/v1/records?format=sse"
  std::string path;       // target before '?'
  std::string query;      // target after '?', without it
  int minor_version = 1;  // HTTP/1.<minor>
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent

  // First header with this name (case-insensitive), or nullptr.
  const std::string* Header(std::string_view name) const;
  // Number of headers with this name (case-insensitive).
  size_t HeaderCount(std::string_view name) const;
  // Value of `key` in the query string ("format=sse&x" → QueryParam("format") == "sse"), without
  // percent-decoding (our parameters are plain words). Empty when absent.
  std::string QueryParam(std::string_view key) const;
  // HTTP/1.1 defaults to keep-alive, HTTP/1.0 to close; the Connection header overrides.
  bool KeepAlive() const;
};

// Header names and auth schemes compare with infertap::EqualsIgnoreCase (parsers/ascii.hpp).
using ::infertap::EqualsIgnoreCase;

// Produces the bytes of a streamed response body, pulled by the server thread. A producer on
// another thread signals new data through the `wake` callback given to Start().
class StreamSource {
 public:
  virtual ~StreamSource() = default;
  // Server thread, once, before any Pull(). `wake` may be called from any thread, any number of
  // times, until this source is destroyed; it makes the server call Pull() soon. The server
  // destroys the source (on its thread, or in Stop()) when the connection ends.
  virtual void Start(std::function<void()> wake) = 0;
  // Server thread. Appends up to about `max_bytes` of body bytes to *out (the server adds the
  // chunked framing). Returns false when the stream is finished.
  virtual bool Pull(std::string* out, size_t max_bytes) = 0;
  // Server thread, when nothing was sent for the heartbeat interval: bytes that keep proxies from
  // timing the stream out and make a vanished client show up as a write error.
  virtual std::string Heartbeat() = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
  // When set, `body` is ignored and the body is streamed with chunked transfer encoding until the
  // source ends or the client goes away.
  std::shared_ptr<StreamSource> stream;

  static HttpResponse Text(int status, std::string body);
};

// Reason phrases (parsers/http_status.hpp), shared with the simulator.
using ::infertap::ReasonPhrase;

}  // namespace infertap::serve
