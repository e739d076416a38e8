// Raw-socket HTTP client helpers for the serve tests: exact bytes in, exact bytes out, with
// deadlines so a server bug shows up as a failed assertion, never a hung test.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>

namespace infertap::serve::testing {

// Connected blocking socket to 127.0.0.1:port (or ::1 when v6), or -1. A non-zero `rcvbuf` is
// set before connecting (setting it later does not shrink the advertised window reliably).
inline int Connect(uint16_t port, bool v6 = false, int rcvbuf = 0) {
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  int rc;
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(port);
    rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  if (rc != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads into *buf until `done(*buf)` is true, the peer closes (returns true either way) or the
// deadline passes (returns false).
inline bool ReadUntil(int fd, std::string* buf, const std::function<bool(const std::string&)>& done,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000),
                      bool* closed = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (closed) *closed = false;
  while (!done(*buf)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char tmp[65536];
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      if (closed) *closed = true;
      return true;
    }
    buf->append(tmp, static_cast<size_t>(n));
  }
  return true;
}

// Sends `raw` on a new connection and returns everything until the server closes it.
inline std::string Exchange(uint16_t port, const std::string& raw,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
  int fd = Connect(port);
  if (fd < 0) return "<connect failed>";
  SendAll(fd, raw);
  std::string out;
  bool closed = false;
  ReadUntil(
      fd, &out, [](const std::string&) { return false; }, timeout, &closed);
  close(fd);
  return closed ? out : out + "<timeout>";
}

// "GET <path>" with Connection: close and extra header lines ("Name: value\r\n" each).
inline std::string Get(uint16_t port, const std::string& path, const std::string& headers = "") {
  return Exchange(
      port, "GET " + path + " HTTP/1.1\r\nHost: t\r\n" + headers + "Connection: close\r\n\r\n");
}

inline int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return -1;
  return std::stoi(response.substr(9, 3));
}

inline std::string BodyOf(const std::string& response) {
  size_t p = response.find("\r\n\r\n");
  return p == std::string::npos ? "" : response.substr(p + 4);
}

// Case-sensitive header line check, e.g. HasHeader(r, "Content-Type: text/plain").
inline bool HasHeader(const std::string& response, const std::string& line) {
  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  return response.substr(0, end + 2).find("\r\n" + line + "\r\n") != std::string::npos;
}

}  // namespace infertap::serve::testing
