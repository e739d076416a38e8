// Where the Kubernetes API is and how to authenticate to it (docs/kubernetes.md).
//
// Two sources, as client-go has them:
//  - in-cluster: KUBERNETES_SERVICE_HOST/PORT and the service-account files
//    <root>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}. The token is
//    projected and rotated by the kubelet, so it is kept as a file and re-read (TokenSource).
//  - a kubeconfig read as kubectl reads it: current-context (or an explicit context), that
//    context's cluster (server, certificate-authority[-data], insecure-skip-tls-verify) and user
//    (token, tokenFile, client-certificate[-data] + client-key[-data]). Relative file paths are
//    relative to the kubeconfig's directory. exec and auth-provider plugins are refused with a
//    clear error: running a credential plugin from a node agent is not something we do.
//
// Every failure is one line naming the file and the missing/invalid part.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <string>

#include "agent/common/status.hpp"

namespace infertap::k8s {

struct ClusterConfig {
  std::string server;  // "https://10.0.0.1:443" (no trailing slash)
  // Trust: a CA file, or inline PEM (certificate-authority-data), or neither (system store).
  std::string ca_file;
  std::string ca_pem;
  bool insecure_skip_tls_verify = false;
  // Credentials: a bearer token (inline or file), and/or a client certificate + key.
  std::string token;       // inline token (kubeconfig `token`)
  std::string token_file;  // re-read on rotation (in-cluster, kubeconfig `tokenFile`)
  std::string client_cert_file, client_cert_pem;
  std::string client_key_file, client_key_pem;
  std::string default_namespace;  // in-cluster namespace file / context namespace; may be empty
  std::string source;             // "in-cluster" or "kubeconfig FILE (context NAME)", for logs
};

// In-cluster config. `root` prefixes the service-account directory ("" = "/"), so tests can
// provide the files in a temporary directory. `getenv` defaults to std::getenv.
[[nodiscard]] Status LoadInClusterConfig(const std::string& root, ClusterConfig* out,
                                         std::function<const char*(const char*)> getenv = {});

// Kubeconfig `path`; `context` empty = current-context.
[[nodiscard]] Status LoadKubeconfig(const std::string& path, const std::string& context,
                                    ClusterConfig* out);

// Base64 (RFC 4648, standard alphabet, padding optional, whitespace ignored). false on bad input.
bool Base64Decode(std::string_view in, std::string* out);

// The bearer token to send, re-read from its file when the file changed (mtime or size) and at
// least every `max_age`, and at once after Invalidate() (a 401: the kubelet may have rotated it).
// Thread-safe. An inline token never changes.
class TokenSource {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  explicit TokenSource(const ClusterConfig& config,
                       std::chrono::seconds max_age = std::chrono::seconds(60), Clock clock = {});
  // Current token ("" when the config has none). On a read error the last good token is kept
  // and *error (if given) is set.
  std::string Get(std::string* error = nullptr);
  void Invalidate();

 private:
  std::string inline_token_;
  std::string file_;
  std::chrono::seconds max_age_;
  Clock clock_;
  std::mutex mu_;
  std::string token_;
  bool loaded_ = false;
  bool invalid_ = false;
  std::chrono::steady_clock::time_point read_at_{};
  long long mtime_ns_ = -1;
  long long size_ = -1;
};

}  // namespace infertap::k8s
