// Listen addresses as given on the command line (docs/serving.md): ":9090" (every address, IPv6 and IPv4
// when the host has IPv6), "0.0.0.0:9090", "127.0.0.1:9091", "[::1]:9091", "localhost:9091".
// Only numeric hosts and "localhost" are accepted: a listener must not depend on DNS at startup.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <string_view>

#include "agent/common/status.hpp"

namespace infertap::serve {

struct ListenAddr {
  // True for ":PORT": bind [::] with IPV6_V6ONLY off (dual stack), or 0.0.0.0 without IPv6.
  bool any = false;
  sockaddr_storage addr{};  // unset when `any`
  socklen_t addr_len = 0;
  uint16_t port = 0;
};

// Fills *out or returns an error naming the text ("invalid listen address \"x\": ...").
Status ParseListenAddr(std::string_view text, ListenAddr* out);

// True when every address the listener would bind is a loopback address (127.0.0.0/8, ::1,
// "localhost"). ":PORT", 0.0.0.0 and [::] are not loopback.
bool IsLoopbackListenAddr(const ListenAddr& addr);

}  // namespace infertap::serve
