#include "agent/capture/abi.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace infertap {

std::string CheckRingBufferSize(uint64_t bytes) {
  const bool pow2 = bytes != 0 && (bytes & (bytes - 1)) == 0;
  if (pow2 && bytes >= IT_RING_MIN_BYTES && bytes <= (uint64_t(1) << 31)) return "";
  return "ring buffer size must be a power of two from " + std::to_string(IT_RING_MIN_BYTES) +
         " (the largest capture event is " + std::to_string(IT_MAX_EVENT_BYTES) +
         " bytes) to 2147483648, got " + std::to_string(bytes);
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kServer:
      return "server";
    case Role::kClient:
      return "client";
    default:
      return "unknown";
  }
}

bool Endpoint::is_wildcard() const {
  return std::all_of(addr.begin(), addr.end(), [](uint8_t b) { return b == 0; });
}

bool Endpoint::is_v4() const {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(addr.data(), kPrefix, sizeof(kPrefix)) == 0;
}

std::string Endpoint::ToString() const {
  // Appends rather than `":" + s`: GCC 12 at -O3 raises a false -Wrestrict on the latter.
  std::string out;
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_wildcard()) {
    // ":PORT" — any address.
  } else if (is_v4()) {
    inet_ntop(AF_INET, addr.data() + 12, buf, sizeof(buf));
    out.append(buf);
  } else {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf));
    out.append("[").append(buf).append("]");
  }
  out.append(":").append(std::to_string(port));
  return out;
}

std::optional<Endpoint> ParseEndpoint(std::string_view text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Endpoint> {
    if (error) *error = "invalid endpoint '" + std::string(text) + "': " + why;
    return std::nullopt;
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail("expected HOST:PORT");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_s = text.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_s.data(), port_s.data() + port_s.size(), port);
  if (ec != std::errc() || p != port_s.data() + port_s.size() || port == 0 || port > 65535)
    return fail("port must be 1-65535");
  Endpoint ep;
  ep.port = static_cast<uint16_t>(port);
  if (host.empty() || host == "*") return ep;
  if (host.front() == '[') {
    if (host.size() < 2 || host.back() != ']') return fail("unbalanced brackets");
    host = host.substr(1, host.size() - 2);
  }
  const std::string h(host);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    ep.addr[10] = ep.addr[11] = 0xff;
    std::memcpy(ep.addr.data() + 12, &v4, 4);
  } else if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    std::memcpy(ep.addr.data(), &v6, 16);
    // "::" and "0.0.0.0" mean any address, like a listener bound to them.
  } else {
    return fail("HOST must be an IPv4 or IPv6 address literal");
  }
  if (h == "0.0.0.0") ep.addr.fill(0);
  return ep;
}

Endpoint EndpointFromAbi(const uint8_t addr[16], uint16_t port) {
  Endpoint ep;
  std::memcpy(ep.addr.data(), addr, 16);
  ep.port = port;
  return ep;
}

}  // namespace infertap
