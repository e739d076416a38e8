#include "agent/serve/listener.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/serve/listen_addr.hpp"

namespace infertap::serve {
namespace {

// A listening socket on `sa`, or -errno.
int OpenOne(const sockaddr* sa, socklen_t len, bool dual) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  // SO_REUSEADDR only skips TIME_WAIT leftovers after a restart; on Linux it does not let two
  // live listeners share a port (that would be SO_REUSEPORT), so "in use" still fails. A failure
  // here only costs that convenience.
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (sa->sa_family == AF_INET6) {
    int v6only = dual ? 0 : 1;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) {
      int err = errno;
      close(fd);
      return -err;
    }
  }
  if (bind(fd, sa, len) < 0 || listen(fd, 128) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

}  // namespace

Status Listener::Open(const std::string& addr, std::unique_ptr<Listener>* out) {
  ListenAddr a;
  if (Status s = ParseListenAddr(addr, &a); !s.ok()) return s;
  int fd;
  if (a.any) {
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_addr = in6addr_any;
    v6.sin6_port = htons(a.port);
    fd = OpenOne(reinterpret_cast<sockaddr*>(&v6), sizeof(v6), true);
    // Hosts booted with ipv6.disable=1 have no AF_INET6 sockets: serve IPv4 only.
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
      sockaddr_in v4{};
      v4.sin_family = AF_INET;
      v4.sin_addr.s_addr = htonl(INADDR_ANY);
      v4.sin_port = htons(a.port);
      fd = OpenOne(reinterpret_cast<sockaddr*>(&v4), sizeof(v4), false);
    }
  } else {
    fd = OpenOne(reinterpret_cast<sockaddr*>(&a.addr), a.addr_len, false);
  }
  if (fd < 0) return Status::Error("cannot listen on " + addr + ": " + std::strerror(-fd));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    int err = errno;
    close(fd);
    return Status::Error("cannot listen on " + addr + ": " + std::strerror(err));
  }
  uint16_t port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  out->reset(new Listener(fd, port));
  return Status::Ok();
}

Listener::~Listener() { close(fd_); }

Listener::Accepted Listener::Accept(int* fd) {
  for (;;) {
    int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
      int on = 1;
      // Responses are written whole; Nagle would only delay the last segment. Best effort.
      (void)setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
      *fd = c;
      return Accepted::kConn;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;  // that one is gone; try the next
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      return Accepted::kOutOfFds;
    }
    return Accepted::kNone;
  }
}

}  // namespace infertap::serve
