// Access control for /metrics (docs/kubernetes.md auth, docs/serving.md): the bearer-token hook and
// the choice of mode.
//
// The Kubernetes authorizer (TokenReview + SubjectAccessReview with caching) implements
// Authorizer elsewhere; this file only maps its decisions to HTTP, so the mapping — 401 for a
// missing or invalid token, 403 when not allowed, 500 on an API failure, never 200 on a failure —
// is the same whichever authorizer is plugged in.
#pragma once

#include <string>
#include <string_view>

#include "agent/common/status.hpp"
#include "agent/serve/http_message.hpp"

namespace infertap::serve {

struct AuthDecision {
  enum class Kind {
    kAllow,
    kUnauthenticated,  // no token, or the token is not valid: 401
    kForbidden,        // valid identity, not allowed to GET the path: 403
    kError,            // could not decide (API down, timeout): 500, fail closed
  };
  Kind kind = Kind::kError;
  std::string message;  // shown to the client; never the token

  static AuthDecision Allow() { return {Kind::kAllow, ""}; }
  static AuthDecision Unauthenticated(std::string m) {
    return {Kind::kUnauthenticated, std::move(m)};
  }
  static AuthDecision Forbidden(std::string m) { return {Kind::kForbidden, std::move(m)}; }
  static AuthDecision Error(std::string m) { return {Kind::kError, std::move(m)}; }
};

class Authorizer {
 public:
  virtual ~Authorizer() = default;
  // Called on an HTTP worker thread, possibly several at once; may block on network I/O but
  // should bound it (the worker pool is small). `bearer_token` is never empty. `method` is the
  // request method as received ("GET", "HEAD"); a Kubernetes authorizer asks for the verb
  // strings.ToLower(method), as the upstream endpoint picker's metrics filter does.
  virtual AuthDecision Authorize(std::string_view bearer_token, std::string_view method,
                                 std::string_view path) = 0;
};

// Extracts the token from an Authorization header value: scheme "Bearer" (any case), one or more
// spaces, a token68 (RFC 7235 §2.1). false for any other shape.
bool ParseBearerToken(std::string_view header_value, std::string* token);

// Authorizes one request. Returns false when it may proceed; true with *denied set to the
// 401/403/500 response to send. A missing or malformed Authorization header (or more than one)
// is a 401 without asking the authorizer; 401s carry `WWW-Authenticate: Bearer`; an exception
// from the authorizer is a 500.
bool DenyUnlessAuthorized(Authorizer& authorizer, const RequestHead& req, HttpResponse* denied);

// --metrics-auth: "none" → none; "auto" → "kubernetes" in a cluster, else "none"; "kubernetes"
// → kubernetes. On success *effective is "none" or "kubernetes"; the caller then builds the
// Kubernetes authorizer (k8s/authorizer.hpp) and refuses to start when it cannot, rather than
// serving /metrics unprotected.
Status ValidateAuthMode(std::string mode, bool in_cluster, std::string* effective);

// True when KUBERNETES_SERVICE_HOST is set and non-empty (how in-cluster clients detect a pod).
bool InClusterFromEnv();

}  // namespace infertap::serve
