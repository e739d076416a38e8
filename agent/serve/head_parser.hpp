// Request heads for the agent's own servers (docs/serving.md), parsed with llhttp: the one HTTP/1
// grammar of the agent (the capture parsers in parsers/http_parser.cc use it too). On top of
// llhttp's strict-by-default request grammar this checks only what our endpoints need: origin-form
// targets, HTTP/1.0 or 1.1, token header names, at most 100 headers, a bounded head size. Body
// framing headers are left to the connection (agent/serve/http_connection.hpp), which refuses
// bodies.
//
// Incremental: Feed() takes each new run of bytes once, so a client that sends its head one byte
// at a time costs one pass over it, not one per byte.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "agent/serve/http_message.hpp"

namespace infertap::serve {

enum class HeadParse {
  kNeedMore,  // no complete head yet: every byte given was taken
  kOk,        // a head is complete: Take() it; *consumed = bytes of this Feed() that belong to it
  kInvalid,   // malformed: answer 400 and close
  kTooLarge,  // head longer than max_head_bytes or over 100 headers: answer 431 and close
};

class HeadParser {
 public:
  explicit HeadParser(size_t max_head_bytes);
  ~HeadParser();
  HeadParser(const HeadParser&) = delete;
  HeadParser& operator=(const HeadParser&) = delete;

  // The next bytes of the stream. After kOk the bytes past *consumed are the next request's:
  // Reset() and feed them again. After kInvalid / kTooLarge the parser stays failed until Reset().
  [[nodiscard]] HeadParse Feed(std::string_view bytes, size_t* consumed);
  // The completed head (valid after kOk; moves it out).
  RequestHead Take();
  // Ready for the next request on the same connection.
  void Reset();
  // Bytes of the current (incomplete) head seen so far; 0 right after Reset().
  size_t head_bytes() const { return head_bytes_; }

  // llhttp's callbacks (internal).
  struct Callbacks;

 private:
  size_t max_head_bytes_;
  size_t head_bytes_ = 0;
  struct State;
  std::unique_ptr<State> st_;
};

// One complete head from the start of `in` (tests and one-shot callers): HeadParser on a copy.
[[nodiscard]] HeadParse ParseRequestHeadOnce(std::string_view in, size_t max_head_bytes,
                                             RequestHead* req, size_t* consumed);

}  // namespace infertap::serve
