#include "agent/serve/http_message.hpp"

#include <cctype>

namespace infertap::serve {
namespace {

// RFC 9110 §5.6.2 tchar.
bool IsTokenChar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Field values may hold visible ASCII, obs-text (>= 0x80), space and tab; never other controls.
bool IsFieldValue(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits off one line (without its "\r\n" or "\n"). A bare '\r' inside a line is invalid.
bool NextLine(std::string_view* rest, std::string_view* line) {
  size_t nl = rest->find('\n');
  if (nl == std::string_view::npos) return false;
  *line = rest->substr(0, nl);
  rest->remove_prefix(nl + 1);
  if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  return true;
}

bool ParseRequestLine(std::string_view line, RequestHead* req) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return false;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return false;
  // Origin-form only (RFC 9112 §3.2.1); proxies' absolute-form and OPTIONS '*' are not for us.
  if (target.empty() || target.front() != '/') return false;
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  if (version == "HTTP/1.1") {
    req->minor_version = 1;
  } else if (version == "HTTP/1.0") {
    req->minor_version = 0;
  } else {
    return false;
  }
  req->method = std::string(method);
  req->target = std::string(target);
  size_t q = target.find('?');
  req->path = std::string(target.substr(0, q));
  req->query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
  return true;
}

}  // namespace

const std::string* RequestHead::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return &v;
  }
  return nullptr;
}

size_t RequestHead::HeaderCount(std::string_view name) const {
  size_t n = 0;
  for (const auto& h : headers) n += EqualsIgnoreCase(h.first, name) ? 1 : 0;
  return n;
}

std::string RequestHead::QueryParam(std::string_view key) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == key) {
      return eq == std::string_view::npos ? std::string() : std::string(kv.substr(eq + 1));
    }
  }
  return {};
}

bool RequestHead::KeepAlive() const {
  bool keep = minor_version >= 1;
  // Connection is a comma-separated list of options (RFC 9110 §7.6.1).
  for (const auto& [k, v] : headers) {
    if (!EqualsIgnoreCase(k, "Connection")) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view opt = TrimOws(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (EqualsIgnoreCase(opt, "close")) return false;
      if (EqualsIgnoreCase(opt, "keep-alive")) keep = true;
    }
  }
  return keep;
}

HeadParse ParseRequestHead(std::string_view in, size_t max_head_bytes, RequestHead* req,
                           size_t* consumed) {
  // RFC 9112 §2.2: ignore at least one empty line before the request line (some clients send a
  // stray CRLF after a previous body).
  size_t skip = 0;
  while (skip < in.size() && skip < 4 && (in[skip] == '\r' || in[skip] == '\n')) ++skip;
  std::string_view rest = in.substr(skip);

  // Look for the blank line only inside the allowed window, so a huge buffer is never scanned.
  size_t window = std::min(rest.size(), max_head_bytes);
  std::string_view head = rest.substr(0, window);
  size_t end = std::string_view::npos;
  size_t end_len = 0;
  for (size_t i = 0; i + 1 < head.size(); ++i) {
    if (head[i] != '\n') continue;
    if (head[i + 1] == '\n') {
      end = i + 1;
      end_len = 1;
      break;
    }
    if (head[i + 1] == '\r' && i + 2 < head.size() && head[i + 2] == '\n') {
      end = i + 1;
      end_len = 2;
      break;
    }
  }
  if (end == std::string_view::npos) {
    if (rest.size() >= max_head_bytes) return HeadParse::kTooLarge;
    // A request line that is plainly not HTTP need not wait for more bytes (e.g. a TLS
    // ClientHello sent to a plain port): reject as soon as the first line is complete and bad.
    std::string_view first_rest = rest;
    std::string_view first;
    RequestHead probe;
    if (NextLine(&first_rest, &first) && !ParseRequestLine(first, &probe)) {
      return HeadParse::kInvalid;
    }
    for (unsigned char c : rest) {
      // NUL and most controls never appear in a valid head; don't wait for a timeout.
      if (c == 0) return HeadParse::kInvalid;
    }
    return HeadParse::kNeedMore;
  }

  std::string_view lines = rest.substr(0, end);
  RequestHead r;
  std::string_view line;
  if (!NextLine(&lines, &line) || !ParseRequestLine(line, &r)) return HeadParse::kInvalid;
  while (NextLine(&lines, &line)) {
    if (line.empty()) break;
    if (line.find('\r') != std::string_view::npos) return HeadParse::kInvalid;
    // obs-fold (a continuation line starting with whitespace) is rejected (RFC 9112 §5.2).
    if (line.front() == ' ' || line.front() == '\t') return HeadParse::kInvalid;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return HeadParse::kInvalid;
    std::string_view name = line.substr(0, colon);
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (!IsToken(name) || !IsFieldValue(value)) return HeadParse::kInvalid;
    if (r.headers.size() >= 100) return HeadParse::kTooLarge;
    r.headers.emplace_back(std::string(name), std::string(value));
  }
  *req = std::move(r);
  *consumed = skip + end + end_len;
  return HeadParse::kOk;
}

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  if (!r.body.empty() && r.body.back() != '\n') r.body.push_back('\n');
  return r;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace infertap::serve
