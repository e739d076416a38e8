// TLS server context from PEM files (--tls-cert, --tls-key), loaded once at startup so a bad
// file is a startup error that names the file, not a failure of every later handshake.
#pragma once

#include <memory>
#include <string>

#include "agent/common/status.hpp"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX, kept out of our headers

namespace infertap::serve {

class TlsContext {
 public:
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Loads the certificate chain and the private key and checks that they belong together.
  // TLS 1.2 is the minimum (what Prometheus and kubelet speak).
  static Status Load(const std::string& cert_file, const std::string& key_file,
                     std::unique_ptr<TlsContext>* out);

  ssl_ctx_st* get() const { return ctx_; }

 private:
  explicit TlsContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

// The queued OpenSSL errors as one line ("error:...: reason; ..."), clearing the queue; `fallback`
// when the queue is empty.
std::string DrainOpenSslErrors(const std::string& fallback);

}  // namespace infertap::serve
