// Incremental Server-Sent Events parser (WHATWG HTML "EventSource" stream rules).
//
// Input is the de-chunked (and decoded) body of a text/event-stream response, in any split.
// Line ends are LF, CRLF or CR; a CR that ends one Feed() and an LF that starts the next are ONE
// line end. Fields: `data` (one leading space stripped, several lines joined with LF), `event`,
// `id`, `retry`; lines starting with ':' are comments (keep-alives). A blank line dispatches the
// pending event if it has data.
//
// Deliberate differences from a browser, because an observer must not lose the last usage chunk:
//  - Finish() (end of stream) dispatches a pending event even without the final blank line, and
//    an unterminated last line is processed as a line.
//  - llama.cpp's non-standard `error:` field marks the event as an error and makes it dispatch
//    even without `data`.
//
// Memory is bounded by max_event_bytes: an event (data + event type + current line) larger than
// that is dropped up to its terminating blank line and reported once via SseSink::OnOversize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "parsers/parse_state.hpp"

namespace infertap {

// One dispatched event. Views are valid only during the OnEvent call. `data` is always followed
// by at least SseParser::kReadPadding readable bytes, so a SIMD JSON parser can read it in place.
struct SseEvent {
  std::string_view type;    // `event:` value, "" when absent (browsers call that "message")
  std::string_view data;    // data lines joined with LF, without the trailing LF
  std::string_view id;      // last `id:` seen on the stream (sticky, per the spec)
  bool error_line = false;  // an `error:` line was part of this event (llama.cpp)
};

class SseSink {
 public:
  virtual ~SseSink() = default;
  virtual void OnEvent(const SseEvent& event) = 0;
  // An event exceeded the cap and was skipped.
  virtual void OnOversize() = 0;
};

class SseParser {
 public:
  static constexpr size_t kReadPadding = 64;

  explicit SseParser(size_t max_event_bytes);

  // Consumes all of `bytes`, dispatching complete events. Returns kOk when no partial event or
  // line is pending, kNeedMoreData otherwise, kInvalid when an oversize event started here.
  ParseState Feed(std::span<const uint8_t> bytes, SseSink& sink);
  // End of stream: processes an unterminated line and dispatches a pending event.
  void Finish(SseSink& sink);
  // Forget everything (new response); releases large buffers.
  void Reset();

  // Default retry delay announced by the server (ms), if any. Not used for metrics; kept because
  // the field is part of the format and tests check it is parsed, not mistaken for data.
  int64_t retry_ms() const { return retry_ms_; }

 private:
  void ProcessLine(std::string_view line, SseSink& sink);
  void Dispatch(SseSink& sink);
  bool Fits(size_t extra) const;
  void DropOversizeEvent(SseSink& sink);

  size_t max_event_bytes_;
  std::string line_;  // partial line carried over between Feed() calls
  std::string data_;  // data buffer of the pending event (each line followed by LF)
  std::string type_;
  std::string id_;
  bool has_data_ = false;
  bool error_line_ = false;
  bool skipping_ = false;    // inside an oversize event: drop lines until a blank one
  bool pending_cr_ = false;  // last byte seen was CR: an LF right after it is not a new line
  int64_t retry_ms_ = -1;
};

}  // namespace infertap
