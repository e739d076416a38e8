#include "agent/serve/http_message.hpp"

namespace infertap::serve {

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

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  if (!r.body.empty() && r.body.back() != '\n') r.body.push_back('\n');
  return r;
}

}  // namespace infertap::serve
