// Incremental HTTP/1.1 request parser for the simulator.
//
// The simulator needs more control over the body than a callback parser gives it: it must answer
// `Expect: 100-continue` after the head and before the body, and it must leave pipelined requests
// untouched in the buffer until the current response is finished. So the parser works on a
// caller-owned buffer, never copies the tail, and reports how many bytes one request used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace infertap::sim {

// Caps: a request larger than this is refused with 413/431 instead of growing memory.
inline constexpr size_t kMaxHeadBytes = 64 * 1024;
inline constexpr size_t kMaxBodyBytes = 16 * 1024 * 1024;

struct HttpRequest {
  std::string method;
  std::string target;  // path plus query, as sent
  int version_minor = 1;
  // Names lower-cased at parse time (HTTP header names are case-insensitive).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // de-chunked
  bool expect_continue = false;
  bool keep_alive = true;

  // First header with this lower-case name, or empty.
  std::string_view Header(std::string_view lower_name) const;
  bool HasHeader(std::string_view lower_name) const;
  // The path without the query string.
  std::string_view Path() const;
};

enum class ParseState {
  kNeedMoreData,  // call again when more bytes arrived
  kHeadDone,      // head parsed, body still incomplete (time to send 100 Continue)
  kOk,            // one full request parsed; `consumed` bytes belong to it
  kInvalid,       // malformed; `error_status` says what to answer (400, 413, 431, 501)
};

// Parses one request from the front of a buffer. Keep one instance per connection and feed it
// the whole unconsumed buffer each time; it remembers how far it got.
class RequestParser {
 public:
  ParseState Parse(std::string_view buf);

  // Valid after kOk: bytes of `buf` used by this request. Call Reset() before the next one.
  size_t consumed() const { return consumed_; }
  int error_status() const { return error_status_; }
  const HttpRequest& request() const { return req_; }
  HttpRequest& request() { return req_; }
  bool head_done() const { return phase_ != Phase::kHead; }
  void Reset();

 private:
  enum class Phase { kHead, kFixedBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kDone };

  ParseState ParseHead(std::string_view buf);
  ParseState ParseBody(std::string_view buf);
  ParseState Fail(int status);

  HttpRequest req_;
  Phase phase_ = Phase::kHead;
  size_t pos_ = 0;        // how far into the buffer we have parsed
  size_t remaining_ = 0;  // bytes left in the fixed body or the current chunk
  size_t consumed_ = 0;
  int error_status_ = 0;
  bool reported_head_ = false;
};

}  // namespace infertap::sim
