#include "http_request.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace infertap::sim {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// True when a comma-separated header value lists `token` (e.g. "keep-alive, Upgrade").
bool ListHasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (IEquals(Trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

bool HttpRequest::HasHeader(std::string_view lower_name) const {
  for (const auto& h : headers) {
    if (h.first == lower_name) return true;
  }
  return false;
}

std::string_view HttpRequest::Path() const {
  std::string_view t = target;
  return t.substr(0, t.find('?'));
}

void RequestParser::Reset() { *this = RequestParser(); }

ParseState RequestParser::Fail(int status) {
  error_status_ = status;
  return ParseState::kInvalid;
}

ParseState RequestParser::Parse(std::string_view buf) {
  if (error_status_ != 0) return ParseState::kInvalid;
  if (phase_ == Phase::kHead) {
    ParseState s = ParseHead(buf);
    if (s != ParseState::kOk) return s;
  }
  ParseState s = ParseBody(buf);
  if (s == ParseState::kNeedMoreData && !reported_head_) {
    // Report the end of the head once, so the caller can send `100 Continue` exactly once.
    reported_head_ = true;
    return ParseState::kHeadDone;
  }
  return s;
}

ParseState RequestParser::ParseHead(std::string_view buf) {
  // Tolerate stray CRLFs between pipelined requests (RFC 9112 §2.2).
  while (pos_ + 1 < buf.size() && buf[pos_] == '\r' && buf[pos_ + 1] == '\n') pos_ += 2;
  size_t end = buf.find("\r\n\r\n", pos_);
  if (end == std::string_view::npos) {
    if (buf.size() - pos_ > kMaxHeadBytes) return Fail(431);
    return ParseState::kNeedMoreData;
  }
  if (end - pos_ > kMaxHeadBytes) return Fail(431);
  std::string_view head = buf.substr(pos_, end - pos_);
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);

  // Request line: METHOD SP target SP HTTP/1.x
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return Fail(400);
  req_.method = std::string(line.substr(0, sp1));
  req_.target = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    req_.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    req_.version_minor = 0;
  } else {
    return Fail(400);
  }
  if (req_.method.empty() || req_.target.empty()) return Fail(400);

  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view() : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view h = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return Fail(400);
    std::string_view name = h.substr(0, colon);
    // Whitespace before the colon is a smuggling vector (RFC 9112 §5.1): refuse it.
    if (name.back() == ' ' || name.back() == '\t') return Fail(400);
    req_.headers.emplace_back(Lower(name), std::string(Trim(h.substr(colon + 1))));
  }

  std::string_view conn = req_.Header("connection");
  req_.keep_alive =
      req_.version_minor == 1 ? !ListHasToken(conn, "close") : ListHasToken(conn, "keep-alive");
  req_.expect_continue = req_.version_minor == 1 && IEquals(req_.Header("expect"), "100-continue");

  std::string_view te = req_.Header("transfer-encoding");
  std::string_view cl = req_.Header("content-length");
  pos_ = end + 4;
  if (!te.empty()) {
    // Both framings at once is refused (request smuggling); only plain chunked is supported.
    if (!cl.empty()) return Fail(400);
    if (!IEquals(Trim(te), "chunked")) return Fail(501);
    phase_ = Phase::kChunkSize;
  } else if (!cl.empty()) {
    size_t n = 0;
    auto [p, ec] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
    if (ec != std::errc() || p != cl.data() + cl.size()) return Fail(400);
    if (n > kMaxBodyBytes) return Fail(413);
    remaining_ = n;
    phase_ = Phase::kFixedBody;
  } else {
    phase_ = Phase::kDone;
  }
  return ParseState::kOk;
}

ParseState RequestParser::ParseBody(std::string_view buf) {
  for (;;) {
    switch (phase_) {
      case Phase::kHead:
        return ParseState::kNeedMoreData;
      case Phase::kFixedBody:
      case Phase::kChunkData: {
        size_t n = std::min(remaining_, buf.size() - pos_);
        req_.body.append(buf.substr(pos_, n));
        pos_ += n;
        remaining_ -= n;
        if (remaining_ > 0) return ParseState::kNeedMoreData;
        phase_ = phase_ == Phase::kFixedBody ? Phase::kDone : Phase::kChunkDataEnd;
        break;
      }
      case Phase::kChunkSize: {
        size_t eol = buf.find("\r\n", pos_);
        if (eol == std::string_view::npos) {
          if (buf.size() - pos_ > 1024) return Fail(400);
          return ParseState::kNeedMoreData;
        }
        std::string_view line = buf.substr(pos_, eol - pos_);
        line = line.substr(0, line.find(';'));  // chunk extensions are ignored
        line = Trim(line);
        size_t n = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), n, 16);
        if (line.empty() || ec != std::errc() || p != line.data() + line.size()) return Fail(400);
        if (req_.body.size() + n > kMaxBodyBytes) return Fail(413);
        pos_ = eol + 2;
        remaining_ = n;
        phase_ = n == 0 ? Phase::kTrailers : Phase::kChunkData;
        break;
      }
      case Phase::kChunkDataEnd:
        if (buf.size() - pos_ < 2) return ParseState::kNeedMoreData;
        if (buf.substr(pos_, 2) != "\r\n") return Fail(400);
        pos_ += 2;
        phase_ = Phase::kChunkSize;
        break;
      case Phase::kTrailers: {
        // Trailer fields are skipped up to the empty line that ends the message.
        size_t eol = buf.find("\r\n", pos_);
        if (eol == std::string_view::npos) {
          if (buf.size() - pos_ > kMaxHeadBytes) return Fail(431);
          return ParseState::kNeedMoreData;
        }
        bool empty = eol == pos_;
        pos_ = eol + 2;
        if (empty) phase_ = Phase::kDone;
        break;
      }
      case Phase::kDone:
        consumed_ = pos_;
        return ParseState::kOk;
    }
  }
}

}  // namespace infertap::sim
