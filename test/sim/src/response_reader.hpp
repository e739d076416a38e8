// Client side of the simulator tools: an incremental HTTP/1.1 response reader that de-chunks the
// body, and an SSE scanner that classifies OpenAI-style stream events. Used by infertap-load and
// by the simulator's tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace infertap::sim {

class ResponseReader {
 public:
  enum class State { kNeedMoreData, kDone, kInvalid };
  using BodySink = std::function<void(std::string_view)>;

  // Consumes bytes from the front of `data`; `*used` says how many. De-chunked body bytes are
  // passed to `sink` as they are decoded. Interim 1xx responses are skipped.
  State Feed(std::string_view data, size_t* used, const BodySink& sink);
  // The peer closed: a body delimited by the close is complete, anything else is not.
  State OnEof();
  void Reset() { *this = ResponseReader(); }

  int status() const { return status_; }
  bool chunked() const { return chunked_; }
  bool keep_alive() const { return keep_alive_; }
  bool head_done() const { return phase_ != Phase::kHead; }
  const std::string& content_type() const { return content_type_; }
  uint64_t body_bytes() const { return body_bytes_; }
  uint64_t wire_bytes() const { return wire_bytes_; }
  // Number of HTTP chunks with data (the simulator promises one SSE event per chunk).
  uint64_t chunks() const { return chunks_; }

 private:
  enum class Phase {
    kHead,
    kFixed,
    kChunkSize,
    kChunkData,
    kChunkEnd,
    kTrailers,
    kUntilClose,
    kDone
  };
  State ParseHead(std::string_view head);

  std::string buf_;  // unconsumed head / chunk-size bytes
  Phase phase_ = Phase::kHead;
  int status_ = 0;
  bool chunked_ = false;
  bool keep_alive_ = true;
  std::string content_type_;
  uint64_t remaining_ = 0;
  uint64_t body_bytes_ = 0;
  uint64_t wire_bytes_ = 0;
  uint64_t chunks_ = 0;
};

// Splits a de-chunked SSE body into events and classifies them (docs/parsing.md rules, simplified:
// LF line ends, `data:` with or without a space, `:` comments, llama.cpp's `error:` line).
class SseScanner {
 public:
  struct Event {
    std::string event;  // `event:` field, if any
    std::string data;   // joined `data:` lines
    bool error_line = false;
  };
  // Called once per complete event.
  using Handler = std::function<void(const Event&)>;
  void Feed(std::string_view bytes, const Handler& on_event);
  // Processes an event left without its final blank line.
  void Finish(const Handler& on_event);

 private:
  void Dispatch(std::string_view block, const Handler& on_event);
  std::string pending_;
};

// What one SSE event or JSON body says, for counting.
struct Classified {
  bool done = false;       // data: [DONE]
  bool content = false;    // carries generated text
  bool error = false;      // top-level "error" key or an error line
  bool has_usage = false;  // a usage object with counts
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool parse_failed = false;
};
Classified ClassifyEvent(const SseScanner::Event& ev);
Classified ClassifyBody(std::string_view json);

}  // namespace infertap::sim
