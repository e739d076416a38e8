#include "agent/serve/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace infertap::serve {

std::string DrainOpenSslErrors(const std::string& fallback) {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? fallback : out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Status TlsContext::Load(const std::string& cert_file, const std::string& key_file,
                        std::unique_ptr<TlsContext>* out) {
  if (cert_file.empty() != key_file.empty()) {
    return Status::Error("--tls-cert and --tls-key must be given together");
  }
  // Check readability first: "No such file or directory" says more than OpenSSL's "system lib".
  for (const std::string* f : {&cert_file, &key_file}) {
    std::ifstream probe(*f);
    if (!probe) {
      return Status::Error("cannot read TLS " +
                           std::string(f == &cert_file ? "certificate" : "key") + " " + *f + ": " +
                           std::strerror(errno));
    }
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Status::Error("cannot create TLS context: " + DrainOpenSslErrors("?"));
  std::unique_ptr<TlsContext> holder(new TlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Partial writes let the event loop keep its own output buffer and offset; the moving buffer
  // mode lets that std::string reallocate between retries of the same write.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return Status::Error("cannot load TLS certificate " + cert_file + ": " +
                         DrainOpenSslErrors("not a PEM certificate"));
  }
  // Read the key on its own first, so "not a key" and "not this certificate's key" get
  // different messages (SSL_CTX_use_PrivateKey reports both as one failure).
  FILE* kf = std::fopen(key_file.c_str(), "r");
  EVP_PKEY* key = kf != nullptr ? PEM_read_PrivateKey(kf, nullptr, nullptr, nullptr) : nullptr;
  if (kf != nullptr) std::fclose(kf);
  if (key == nullptr) {
    return Status::Error("cannot load TLS key " + key_file + ": " +
                         DrainOpenSslErrors("not a PEM private key"));
  }
  int used = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return Status::Error("TLS key " + key_file + " does not match certificate " + cert_file + ": " +
                         DrainOpenSslErrors("mismatch"));
  }
  *out = std::move(holder);
  return Status::Ok();
}

}  // namespace infertap::serve
