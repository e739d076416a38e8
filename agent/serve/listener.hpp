// The listening socket of one HTTP server (docs/serving.md#layout). ":port" listens dual-stack on
// IPv6 and falls back to IPv4 on hosts booted without IPv6; a host or literal address listens on
// exactly that address (agent/serve/listen_addr.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "agent/common/status.hpp"

namespace infertap::serve {

class Listener {
 public:
  // Binds and listens (non-blocking, close-on-exec). Errors name the address and the reason:
  // "cannot listen on :9090: Address already in use".
  [[nodiscard]] static Status Open(const std::string& addr, std::unique_ptr<Listener>* out);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  int fd() const { return fd_; }
  uint16_t port() const { return port_; }

  enum class Accepted {
    kConn,      // *fd is a new non-blocking, close-on-exec connection with TCP_NODELAY
    kNone,      // nothing pending (or a connection that failed before accept)
    kOutOfFds,  // EMFILE/ENFILE/ENOBUFS/ENOMEM: the connection stays in the backlog
  };
  [[nodiscard]] Accepted Accept(int* fd);

 private:
  Listener(int fd, uint16_t port) : fd_(fd), port_(port) {}
  int fd_;
  uint16_t port_;
};

}  // namespace infertap::serve
