#include "parsers/http_parser.hpp"

#include <algorithm>
#include <cstring>

#include "parsers/ascii.hpp"

namespace infertap {
namespace {

// Message starts accepted while resynchronising. The trailing space (or "HTTP/1.") keeps random
// words in a body from restarting the parser; the list is the methods an inference server or a
// health checker plausibly receives.
constexpr std::string_view kRequestStarts[] = {"POST ",   "GET ",   "PUT ",    "HEAD ",
                                               "DELETE ", "PATCH ", "OPTIONS "};
constexpr std::string_view kResponseStarts[] = {"HTTP/1."};

std::string TrimLower(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  std::string out(v);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

// Bytes after which a message may start while resynchronising: a line end, or the '}' that
// ends the JSON body of the message before (bodies need not end with a newline).
bool StartsAfter(char c) { return c == '\n' || c == '}'; }

HttpParser* Self(llhttp_t* p) { return static_cast<HttpParser*>(p->data); }

}  // namespace

HttpParser::HttpParser(Kind kind, size_t max_header_bytes, HttpSink& sink)
    : kind_(kind), max_header_bytes_(max_header_bytes), sink_(sink) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = &CbMessageBegin;
  settings_.on_url = &CbUrl;
  settings_.on_status = &CbStatus;
  settings_.on_header_field = &CbHeaderField;
  settings_.on_header_value = &CbHeaderValue;
  settings_.on_header_value_complete = &CbHeaderValueComplete;
  settings_.on_headers_complete = &CbHeadersComplete;
  settings_.on_body = &CbBody;
  settings_.on_message_complete = &CbMessageComplete;
  StartLlhttp();
}

void HttpParser::StartLlhttp() {
  llhttp_init(&parser_, kind_ == Kind::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &settings_);
  parser_.data = this;
  // We observe, we do not enforce: a server that keeps talking after "Connection: close" (or an
  // HTTP/1.0 peer using keep-alive) must still be parsed rather than turned into errors.
  llhttp_set_lenient_keep_alive(&parser_, 1);
  user_error_ = false;
  in_message_ = false;
}

bool HttpParser::ChargeHeaderBytes(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= max_header_bytes_) return true;
  user_error_ = true;
  error_reason_ = "header_cap";
  return false;
}

int HttpParser::CbMessageBegin(llhttp_t* p) {
  HttpParser* self = Self(p);
  self->head_ = HttpMessageHead{};
  self->head_.is_request = self->kind_ == Kind::kRequest;
  self->header_bytes_ = 0;
  self->field_.clear();
  self->value_.clear();
  self->in_message_ = true;
  self->begin_tag_ = self->replaying_probe_ ? self->probe_tag_ : self->tag_;
  self->sink_.OnMessageBegin();
  return 0;
}

int HttpParser::CbUrl(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (!self->ChargeHeaderBytes(len)) return HPE_USER;
  self->head_.target.append(at, len);
  return 0;
}

int HttpParser::CbStatus(llhttp_t* p, const char*, size_t len) {
  return Self(p)->ChargeHeaderBytes(len) ? 0 : HPE_USER;
}

int HttpParser::CbHeaderField(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (!self->ChargeHeaderBytes(len)) return HPE_USER;
  self->field_.append(at, len);
  return 0;
}

int HttpParser::CbHeaderValue(llhttp_t* p, const char* at, size_t len) {
  HttpParser* self = Self(p);
  if (!self->ChargeHeaderBytes(len)) return HPE_USER;
  self->value_.append(at, len);
  return 0;
}

int HttpParser::CbHeaderValueComplete(llhttp_t* p) {
  HttpParser* self = Self(p);
  HttpMessageHead& h = self->head_;
  if (EqualsIgnoreCase(self->field_, "content-type")) {
    h.content_type = TrimLower(self->value_);
  } else if (EqualsIgnoreCase(self->field_, "content-encoding")) {
    std::string v = TrimLower(self->value_);
    if (!h.content_encoding.empty() && !v.empty()) h.content_encoding += ", ";
    h.content_encoding += v;
  } else if (EqualsIgnoreCase(self->field_, "expect")) {
    h.expect_continue = TrimLower(self->value_) == "100-continue";
  }
  self->field_.clear();
  self->value_.clear();
  return 0;
}

int HttpParser::CbHeadersComplete(llhttp_t* p) {
  HttpParser* self = Self(p);
  HttpMessageHead& h = self->head_;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  h.has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  h.content_length = h.has_content_length ? p->content_length : 0;
  if (self->kind_ == Kind::kRequest) {
    h.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  } else {
    h.status = p->status_code;
  }
  self->field_.clear();
  self->value_.clear();
  self->field_.shrink_to_fit();
  self->value_.shrink_to_fit();
  bool skip_body = self->sink_.OnHeadersComplete(h);
  // llhttp would read a body for 1xx/204/304 if a Content-Length were present; RFC 9110 says
  // these never have one.
  if (self->kind_ == Kind::kResponse &&
      (h.status / 100 == 1 || h.status == 204 || h.status == 304)) {
    skip_body = true;
  }
  return skip_body ? 1 : 0;
}

int HttpParser::CbBody(llhttp_t* p, const char* at, size_t len) {
  Self(p)->sink_.OnBody({reinterpret_cast<const uint8_t*>(at), len});
  return 0;
}

int HttpParser::CbMessageComplete(llhttp_t* p) {
  HttpParser* self = Self(p);
  self->in_message_ = false;
  self->sink_.OnMessageComplete();
  return 0;
}

ParseState HttpParser::Feed(std::span<const uint8_t> bytes) {
  return Execute(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

ParseState HttpParser::Feed(std::span<const uint8_t> bytes, uint64_t tag) {
  tag_ = tag;
  return Feed(bytes);
}

ParseState HttpParser::Execute(const char* data, size_t len) {
  bool invalid = false;
  // While resynchronising, a message may also start where a syscall's data starts: after a gap
  // the next message rarely follows a line end (JSON bodies end with '}', not '\n').
  if (mode_ == Mode::kResync && probe_len_ == 0) at_line_start_ = true;
  while (len > 0) {
    if (mode_ == Mode::kOpaque) return ParseState::kEnd;
    if (mode_ == Mode::kResync) {
      ParseState st = ParseState::kNeedMoreData;
      size_t used = Resync(data, len, &st);
      if (st == ParseState::kInvalid) invalid = true;
      data += used;
      len -= used;
      continue;
    }
    llhttp_errno_t err = llhttp_execute(&parser_, data, len);
    if (err == HPE_OK) break;
    const char* pos = llhttp_get_error_pos(&parser_);
    if (pos == nullptr || pos < data || pos > data + len) pos = data + len;
    if (err == HPE_PAUSED_UPGRADE) {
      if (kind_ == Kind::kRequest) {
        // A client asking to upgrade keeps speaking HTTP/1.1 unless the server answers 101,
        // which the response direction sees (and then makes both directions opaque).
        llhttp_resume_after_upgrade(&parser_);
        len -= size_t(pos - data);
        data = pos;
        continue;
      }
      mode_ = Mode::kOpaque;
      return ParseState::kEnd;
    }
    const char* reason = user_error_ ? error_reason_ : "http_invalid";
    in_message_ = false;
    sink_.OnError(reason);
    invalid = true;
    mode_ = Mode::kResync;
    at_line_start_ = pos > data && StartsAfter(pos[-1]);
    probe_len_ = 0;
    // The failing byte itself may not restart a message unless it begins a line; either way the
    // scan makes progress because a restart consumes at least the probe.
    len -= size_t(pos - data);
    data = pos;
  }
  if (invalid) return ParseState::kInvalid;
  if (mode_ == Mode::kOpaque) return ParseState::kEnd;
  return in_message_ ? ParseState::kNeedMoreData : ParseState::kOk;
}

bool HttpParser::ProbeMatchesPrefix() const {
  std::string_view probe(probe_, probe_len_);
  auto check = [&](std::string_view cand) { return cand.substr(0, probe.size()) == probe; };
  if (kind_ == Kind::kRequest)
    return std::any_of(std::begin(kRequestStarts), std::end(kRequestStarts), check);
  return std::any_of(std::begin(kResponseStarts), std::end(kResponseStarts), check);
}

bool HttpParser::ProbeIsComplete() const {
  std::string_view probe(probe_, probe_len_);
  auto check = [&](std::string_view cand) { return cand == probe; };
  if (kind_ == Kind::kRequest)
    return std::any_of(std::begin(kRequestStarts), std::end(kRequestStarts), check);
  return std::any_of(std::begin(kResponseStarts), std::end(kResponseStarts), check);
}

size_t HttpParser::Resync(const char* data, size_t len, ParseState* state) {
  for (size_t i = 0; i < len; ++i) {
    char c = data[i];
    if (!at_line_start_) {
      at_line_start_ = StartsAfter(c);
      continue;
    }
    // Leading CR/LF before a message is legal (RFC 9112 §2.2); stay at line start.
    if (probe_len_ == 0 && (c == '\r' || c == '\n')) continue;
    if (probe_len_ == 0) probe_tag_ = tag_;
    probe_[probe_len_++] = c;
    if (!ProbeMatchesPrefix()) {
      probe_len_ = 0;
      at_line_start_ = StartsAfter(c);
      continue;
    }
    if (!ProbeIsComplete()) continue;
    // Found a message start: replay the probe into a fresh llhttp and hand the rest back.
    StartLlhttp();
    mode_ = Mode::kParsing;
    size_t n = probe_len_;
    probe_len_ = 0;
    at_line_start_ = false;
    replaying_probe_ = true;
    llhttp_errno_t err = llhttp_execute(&parser_, probe_, n);
    replaying_probe_ = false;
    if (err != HPE_OK) {
      // Cannot happen for the fixed probes, but never trust it: keep scanning.
      in_message_ = false;
      mode_ = Mode::kResync;
      *state = ParseState::kInvalid;
    }
    return i + 1;
  }
  return len;
}

ParseState HttpParser::Finish() {
  if (mode_ != Mode::kParsing || !in_message_) return ParseState::kOk;
  llhttp_errno_t err = llhttp_finish(&parser_);
  bool cut = err != HPE_OK || in_message_;
  StartLlhttp();
  return cut ? ParseState::kInvalid : ParseState::kOk;
}

void HttpParser::OnGap() {
  if (mode_ == Mode::kOpaque) return;
  in_message_ = false;
  mode_ = Mode::kResync;
  at_line_start_ = true;
  probe_len_ = 0;
}

}  // namespace infertap
