// C++ side of bpf/infertap_abi.h: the same structs, plus endpoint parsing and formatting.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

extern "C" {
#include "bpf/infertap_abi.h"
}

namespace infertap {

enum class Direction : uint8_t { kIngress = IT_DIR_INGRESS, kEgress = IT_DIR_EGRESS };
enum class Role : uint8_t { kUnknown = 0, kServer = IT_ROLE_SERVER, kClient = IT_ROLE_CLIENT };

std::string_view RoleName(Role r);

// "" when `bytes` is a usable BPF ring buffer size (a power of two of at least IT_RING_MIN_BYTES,
// which holds the largest capture event); otherwise a one-line reason
// (docs/capture.md#loss-accounting).
[[nodiscard]] std::string CheckRingBufferSize(uint64_t bytes);

// An IP address (IPv4 stored v4-mapped, as in the ABI) and a port. An all-zero address is the
// wildcard "any local address" of `--target :8000`.
struct Endpoint {
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;

  bool is_wildcard() const;
  bool is_v4() const;  // v4-mapped (::ffff:a.b.c.d)
  // "1.2.3.4:80", "[::1]:80", ":80" for the wildcard.
  std::string ToString() const;
  bool operator==(const Endpoint&) const = default;
};

// Parses "HOST:PORT", "[V6]:PORT", ":PORT" (any address). HOST must be a literal IP address:
// resolving names here would make the kernel filter depend on DNS at startup. Returns nullopt
// and sets *error on bad input.
std::optional<Endpoint> ParseEndpoint(std::string_view text, std::string* error);

Endpoint EndpointFromAbi(const uint8_t addr[16], uint16_t port);

}  // namespace infertap
