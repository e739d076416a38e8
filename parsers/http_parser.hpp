// Incremental HTTP/1.1 parser for ONE direction of a connection, built on llhttp.
//
// The parser turns an ordered byte stream (requests for the client→server direction, responses for
// the other one) into message events delivered to an HttpSink. Bytes may arrive in any split, down
// to one byte per Feed(). The parser owns no per-exchange state: pairing requests with responses,
// timing and body interpretation belong to the caller (see exchange.hpp), as Envoy keeps its
// parser apart from its codec.
//
// Malformed input never stops the direction for good: after an llhttp error (or a capture gap
// announced with OnGap()) the parser drops bytes until the next plausible message start at the
// beginning of a line — a method token followed by a space for requests, "HTTP/1." for
// responses — and restarts llhttp there.
//
// Memory is bounded: the request target and the few header values the caller needs are kept, each
// message's header block is capped (max_header_bytes); bodies are only passed through.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "parsers/parse_state.hpp"

namespace infertap {

// What the caller learns about a message once its header block is complete. Header names are
// matched case-insensitively; values are kept verbatim (trimmed) except content_type and
// content_encoding, which are lower-cased for comparison.
struct HttpMessageHead {
  bool is_request = false;
  std::string method;            // requests: "POST", "GET", ...
  std::string target;            // requests: request-target as sent (path + query), capped
  int status = 0;                // responses: status code
  std::string content_type;      // lower-case, parameters kept ("text/event-stream; charset=utf-8")
  std::string content_encoding;  // lower-case ("gzip", "deflate", "" when absent)
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool expect_continue = false;  // request carried "Expect: 100-continue"
};

// Receives the events of one direction. Callbacks run synchronously inside Feed()/Finish(), so
// the caller knows which bytes (and which timestamp) produced each event.
class HttpSink {
 public:
  virtual ~HttpSink() = default;
  // First byte of a message (first byte of the request line / status line).
  virtual void OnMessageBegin() = 0;
  // Header block complete. Return true to declare that the message has no body whatever its
  // headers say (response to HEAD; the parser itself already knows 1xx/204/304).
  virtual bool OnHeadersComplete(const HttpMessageHead& head) = 0;
  // De-chunked body bytes (chunk framing and trailers excluded).
  virtual void OnBody(std::span<const uint8_t> bytes) = 0;
  // Body complete (terminal chunk, Content-Length reached, or — via Finish() — close).
  virtual void OnMessageComplete() = 0;
  // Malformed input; `reason` is a short fixed label ("http_invalid", "header_cap"). Any message
  // that was begun and not completed is abandoned: no OnMessageComplete follows for it.
  virtual void OnError(std::string_view reason) = 0;
};

class HttpParser {
 public:
  enum class Kind { kRequest, kResponse };

  HttpParser(Kind kind, size_t max_header_bytes, HttpSink& sink);
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  // Consumes all of `bytes`. Returns kOk at a message boundary, kNeedMoreData mid-message,
  // kInvalid if an error was found in these bytes (the parser is then resynchronising), kEnd once
  // the connection switched protocols (101 / CONNECT): later bytes are ignored.
  ParseState Feed(std::span<const uint8_t> bytes);
  // Same, with an opaque tag for these bytes (the caller's syscall timestamp): begin_tag() tells
  // which Feed carried the first byte of the current message, also when a message start found
  // while resynchronising spans several Feeds.
  ParseState Feed(std::span<const uint8_t> bytes, uint64_t tag);
  // Tag of the Feed that carried the first byte of the message; valid from OnMessageBegin on.
  uint64_t begin_tag() const { return begin_tag_; }

  // The peer closed its side: completes a close-delimited body (OnMessageComplete). Returns kOk if
  // nothing was left half-parsed, kInvalid if a message was cut (the caller decides what that
  // means; OnError is NOT called for a cut, since it is not malformed input).
  ParseState Finish();

  // Bytes were lost in capture: abandon the current message (no callback) and look for the next
  // message start. The first byte after the gap may itself start a message.
  void OnGap();

  // Stop parsing for good (the other direction saw a protocol switch).
  void SetOpaque() { mode_ = Mode::kOpaque; }

  // True between OnMessageBegin and OnMessageComplete/abandon.
  bool in_message() const { return in_message_; }

 private:
  enum class Mode { kParsing, kResync, kOpaque };

  static int CbMessageBegin(llhttp_t* p);
  static int CbUrl(llhttp_t* p, const char* at, size_t len);
  static int CbStatus(llhttp_t* p, const char* at, size_t len);
  static int CbHeaderField(llhttp_t* p, const char* at, size_t len);
  static int CbHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int CbHeaderValueComplete(llhttp_t* p);
  static int CbHeadersComplete(llhttp_t* p);
  static int CbBody(llhttp_t* p, const char* at, size_t len);
  static int CbMessageComplete(llhttp_t* p);

  bool ChargeHeaderBytes(size_t len);
  void StartLlhttp();
  // Runs llhttp on `data`; on error switches to resync and continues with the remaining bytes.
  ParseState Execute(const char* data, size_t len);
  // Scans for a message start; returns how many bytes were consumed before one was found
  // (== len when none was found). On success the probe bytes were already fed to llhttp.
  size_t Resync(const char* data, size_t len, ParseState* state);
  bool ProbeMatchesPrefix() const;
  bool ProbeIsComplete() const;

  Kind kind_;
  size_t max_header_bytes_;
  HttpSink& sink_;
  llhttp_settings_t settings_;
  llhttp_t parser_;
  Mode mode_ = Mode::kParsing;
  bool in_message_ = false;
  bool user_error_ = false;  // a callback stopped llhttp on purpose (header cap)
  const char* error_reason_ = "http_invalid";

  // Per-message header state.
  HttpMessageHead head_;
  size_t header_bytes_ = 0;
  std::string field_;  // current header name (capped by the header budget)
  std::string value_;  // current header value

  // Resync state: bytes of a candidate message start seen at a line start.
  bool at_line_start_ = false;
  char probe_[8];
  size_t probe_len_ = 0;

  uint64_t tag_ = 0;        // tag of the bytes being parsed
  uint64_t probe_tag_ = 0;  // tag of the probe's first byte
  uint64_t begin_tag_ = 0;
  bool replaying_probe_ = false;
};

}  // namespace infertap
