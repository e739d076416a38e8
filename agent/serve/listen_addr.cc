#include "agent/serve/listen_addr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace infertap::serve {
namespace {

Status Invalid(std::string_view text, std::string_view why) {
  return Status::Error("invalid listen address \"" + std::string(text) + "\": " + std::string(why) +
                       " (expected :PORT, HOST:PORT or [IPV6]:PORT)");
}

}  // namespace

Status ParseListenAddr(std::string_view text, ListenAddr* out) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Invalid(text, "bad bracketed IPv6 host");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    if (host.empty()) return Invalid(text, "empty IPv6 host");
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return Invalid(text, "missing port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Invalid(text, "IPv6 hosts must be in brackets");
    }
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    return Invalid(text, "port must be a number 0-65535");
  }
  ListenAddr a;
  a.port = static_cast<uint16_t>(value);
  if (host.empty()) {
    a.any = true;
    *out = a;
    return Status::Ok();
  }
  std::string h(host == "localhost" ? std::string_view("127.0.0.1") : host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.addr);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(a.port);
    a.addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(a.port);
    a.addr_len = sizeof(sockaddr_in6);
  } else {
    return Invalid(text, "host must be an IP address or localhost");
  }
  *out = a;
  return Status::Ok();
}

bool IsLoopbackListenAddr(const ListenAddr& a) {
  if (a.any) return false;
  if (a.addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a.addr);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a.addr);
    if (IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) return true;
    // ::ffff:127.x.y.z is loopback too.
    return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace infertap::serve
