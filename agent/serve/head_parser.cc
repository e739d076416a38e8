#include "agent/serve/head_parser.hpp"

#include <llhttp.h>

#include <utility>

namespace infertap::serve {
namespace {

constexpr size_t kMaxHeaders = 100;

// RFC 9110 §5.6.2 tchar. llhttp 8 lets a space before the colon into the name ("A : b"); a name
// that is not a token is refused here (RFC 9112 §5.1 requires the 400).
bool IsToken(std::string_view s) {
  static constexpr std::string_view kPunct = "!#$%&'*+-.^_`|~";
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && kPunct.find(static_cast<char>(c)) == std::string_view::npos) return false;
  }
  return true;
}

// User error codes returned from callbacks (llhttp reports them as HPE_USER).
enum class Why { kNone, kInvalid, kTooLarge };

}  // namespace

struct HeadParser::State {
  llhttp_settings_t settings;
  llhttp_t parser;
  RequestHead req;
  std::string field;
  std::string value;
  bool complete = false;
  Why why = Why::kNone;
};

struct HeadParser::Callbacks {
  static State& S(llhttp_t* p) { return *static_cast<State*>(p->data); }

  // Data callbacks: llhttp hands a span in as many pieces as the bytes arrived in.
  static int Append(std::string& to, const char* at, size_t n) {
    to.append(at, n);
    return 0;
  }
  static int OnUrl(llhttp_t* p, const char* at, size_t n) { return Append(S(p).req.target, at, n); }
  static int OnUrlComplete(llhttp_t* p) {
    State& s = S(p);
    // Origin-form only (RFC 9112 §3.2.1): proxies' absolute-form and OPTIONS '*' are not for us.
    if (s.req.target.empty() || s.req.target.front() != '/') return Fail(s, Why::kInvalid);
    return 0;
  }
  static int OnField(llhttp_t* p, const char* at, size_t n) { return Append(S(p).field, at, n); }
  static int OnFieldComplete(llhttp_t* p) {
    State& s = S(p);
    if (!IsToken(s.field)) return Fail(s, Why::kInvalid);
    if (s.req.headers.size() >= kMaxHeaders) return Fail(s, Why::kTooLarge);
    return 0;
  }
  static int OnValue(llhttp_t* p, const char* at, size_t n) { return Append(S(p).value, at, n); }
  static int OnValueComplete(llhttp_t* p) {
    State& s = S(p);
    s.req.headers.emplace_back(std::move(s.field), std::string(TrimOws(s.value)));
    s.field.clear();
    s.value.clear();
    return 0;
  }
  static int OnHeadersComplete(llhttp_t* p) {
    State& s = S(p);
    if (p->http_major != 1 || p->http_minor > 1) return Fail(s, Why::kInvalid);
    s.req.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    s.req.minor_version = p->http_minor;
    size_t q = s.req.target.find('?');
    s.req.path = s.req.target.substr(0, q);
    s.req.query = q == std::string::npos ? std::string() : s.req.target.substr(q + 1);
    s.complete = true;
    return HPE_PAUSED;  // stop at the end of the head: what follows is not ours to parse
  }
  static int Fail(State& s, Why why) {
    s.why = why;
    return HPE_USER;
  }
};

HeadParser::HeadParser(size_t max_head_bytes)
    : max_head_bytes_(max_head_bytes), st_(std::make_unique<State>()) {
  llhttp_settings_t& cb = st_->settings;
  llhttp_settings_init(&cb);
  cb.on_url = Callbacks::OnUrl;
  cb.on_url_complete = Callbacks::OnUrlComplete;
  cb.on_header_field = Callbacks::OnField;
  cb.on_header_field_complete = Callbacks::OnFieldComplete;
  cb.on_header_value = Callbacks::OnValue;
  cb.on_header_value_complete = Callbacks::OnValueComplete;
  cb.on_headers_complete = Callbacks::OnHeadersComplete;
  Reset();
}

HeadParser::~HeadParser() = default;

void HeadParser::Reset() {
  State& s = *st_;
  llhttp_init(&s.parser, HTTP_REQUEST, &s.settings);
  s.parser.data = &s;
  s.req = RequestHead();
  s.field.clear();
  s.value.clear();
  s.complete = false;
  s.why = Why::kNone;
  head_bytes_ = 0;
}

HeadParse HeadParser::Feed(std::string_view bytes, size_t* consumed) {
  State& s = *st_;
  *consumed = 0;
  if (s.why == Why::kTooLarge) return HeadParse::kTooLarge;
  if (s.why == Why::kInvalid || llhttp_get_errno(&s.parser) != HPE_OK) return HeadParse::kInvalid;
  // Look at no more than the allowed window, so a huge buffer is never scanned.
  size_t room = max_head_bytes_ - std::min(head_bytes_, max_head_bytes_);
  std::string_view window = bytes.substr(0, room);
  llhttp_errno_t err = llhttp_execute(&s.parser, window.data(), window.size());
  if (err == HPE_PAUSED && s.complete) {
    *consumed = static_cast<size_t>(llhttp_get_error_pos(&s.parser) - window.data());
    head_bytes_ += *consumed;
    return HeadParse::kOk;
  }
  if (err != HPE_OK) {
    // HPE_USER from our checks keeps its reason; anything else (including PRI's h2 preface pause)
    // is llhttp rejecting the bytes.
    if (s.why == Why::kNone) s.why = Why::kInvalid;
    return s.why == Why::kTooLarge ? HeadParse::kTooLarge : HeadParse::kInvalid;
  }
  head_bytes_ += window.size();
  *consumed = window.size();
  if (window.size() < bytes.size() || head_bytes_ >= max_head_bytes_) {
    s.why = Why::kTooLarge;
    return HeadParse::kTooLarge;
  }
  return HeadParse::kNeedMore;
}

RequestHead HeadParser::Take() { return std::move(st_->req); }

HeadParse ParseRequestHeadOnce(std::string_view in, size_t max_head_bytes, RequestHead* req,
                               size_t* consumed) {
  HeadParser p(max_head_bytes);
  HeadParse r = p.Feed(in, consumed);
  if (r == HeadParse::kOk) *req = p.Take();
  return r;
}

}  // namespace infertap::serve
