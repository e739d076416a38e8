#include "agent/serve/transport.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "agent/serve/tls.hpp"

namespace infertap::serve {
namespace {

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(int fd) : Transport(fd) {}
  ~PlainTransport() override { close(fd_); }
  Io Handshake() override { return Io::kData; }
  bool handshaking() const override { return false; }
  Io Read(char* buf, size_t max, size_t* n) override {
    ssize_t r = recv(fd_, buf, max, 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    if (r == 0) return Io::kEof;
    return Again(errno) ? Io::kAgain : Io::kError;
  }
  Io Write(const char* buf, size_t len, size_t* n) override {
    ssize_t r = send(fd_, buf, len, MSG_NOSIGNAL);
    if (r >= 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    return Again(errno) ? Io::kAgain : Io::kError;
  }

 private:
  static bool Again(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }
};

class TlsTransport final : public Transport {
 public:
  TlsTransport(int fd, SSL* ssl) : Transport(fd), ssl_(ssl) {}
  ~TlsTransport() override {
    // No close_notify: the peer may be gone, and a non-blocking shutdown would need another round
    // of events for no benefit to a GET endpoint.
    SSL_free(ssl_);
    ERR_clear_error();
    close(fd_);
  }
  Io Handshake() override {
    if (!handshaking_) return Io::kData;
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      handshaking_ = false;
      return Io::kData;
    }
    return Failed(r);
  }
  bool handshaking() const override { return handshaking_; }
  Io Read(char* buf, size_t max, size_t* n) override {
    int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(max, INT_MAX)));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    return Failed(r);
  }
  Io Write(const char* buf, size_t len, size_t* n) override {
    int r = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kData;
    }
    return Failed(r);
  }

 private:
  Io Failed(int r) {
    int err = SSL_get_error(ssl_, r);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_WRITE) wants_write_ = true;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Io::kAgain;
    return err == SSL_ERROR_ZERO_RETURN ? Io::kEof : Io::kError;
  }
  SSL* ssl_;
  bool handshaking_ = true;
};

}  // namespace

std::unique_ptr<Transport> MakePlainTransport(int fd) {
  return std::make_unique<PlainTransport>(fd);
}

std::unique_ptr<Transport> MakeTlsServerTransport(const TlsContext& ctx, int fd) {
  SSL* ssl = SSL_new(ctx.get());
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);  // accepts nullptr
    ERR_clear_error();
    close(fd);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return std::make_unique<TlsTransport>(fd, ssl);
}

}  // namespace infertap::serve
