// The byte stream under one HTTP connection (docs/serving.md#layout): a plain TCP socket or a TLS
// session over one. Non-blocking; the connection state machine (agent/serve/http_connection.hpp)
// sees the same calls either way. A transport owns its socket and closes it when destroyed.
#pragma once

#include <cstddef>
#include <memory>

namespace infertap::serve {

class TlsContext;

enum class Io {
  kData,   // progress: bytes moved (or the handshake finished)
  kAgain,  // would block: wait for readiness (wants_write() says which)
  kEof,    // the peer closed cleanly
  kError,  // the connection is unusable
};

class Transport {
 public:
  virtual ~Transport() = default;
  // TLS handshake step; kData once it is complete (at once for plain TCP).
  [[nodiscard]] virtual Io Handshake() = 0;
  virtual bool handshaking() const = 0;
  // Up to `max` bytes into `buf`; *n is set on kData.
  [[nodiscard]] virtual Io Read(char* buf, size_t max, size_t* n) = 0;
  // Up to `len` bytes from `buf`; *n is set on kData.
  [[nodiscard]] virtual Io Write(const char* buf, size_t len, size_t* n) = 0;
  // Since the last ClearWantsWrite(), a call returned kAgain because a TLS record could not go out:
  // wait for the socket to be writable, whatever the call was.
  bool wants_write() const { return wants_write_; }
  void ClearWantsWrite() { wants_write_ = false; }
  int fd() const { return fd_; }

 protected:
  explicit Transport(int fd) : fd_(fd) {}
  int fd_;
  bool wants_write_ = false;
};

// Takes ownership of `fd`.
std::unique_ptr<Transport> MakePlainTransport(int fd);
// A TLS server session on `fd` (ownership taken; closed on failure too); nullptr when OpenSSL
// cannot create the session.
[[nodiscard]] std::unique_ptr<Transport> MakeTlsServerTransport(const TlsContext& ctx, int fd);

}  // namespace infertap::serve
