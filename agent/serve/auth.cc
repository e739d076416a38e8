#include "agent/serve/auth.hpp"

#include <cctype>
#include <cstdlib>

namespace infertap::serve {
namespace {

// RFC 7235 token68: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "=" padding.
bool IsToken68(std::string_view t) {
  size_t i = 0;
  while (i < t.size()) {
    unsigned char c = static_cast<unsigned char>(t[i]);
    if (!(std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' ||
          c == '/')) {
      break;
    }
    ++i;
  }
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

HttpResponse Denied(int status, std::string message) {
  HttpResponse r = HttpResponse::Text(status, std::move(message));
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  // A denial must not be served from a cache to someone else.
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace

bool ParseBearerToken(std::string_view v, std::string* token) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  constexpr std::string_view kScheme = "bearer";
  if (v.size() <= kScheme.size() || !EqualsIgnoreCase(v.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  v.remove_prefix(kScheme.size());
  if (v.front() != ' ') return false;
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  if (!IsToken68(v)) return false;
  *token = std::string(v);
  return true;
}

bool DenyUnlessAuthorized(Authorizer& authorizer, const RequestHead& req, HttpResponse* denied) {
  size_t n = req.HeaderCount("Authorization");
  if (n == 0) {
    *denied = Denied(401, "unauthorized: missing bearer token");
    return true;
  }
  std::string token;
  if (n > 1 || !ParseBearerToken(*req.Header("Authorization"), &token)) {
    *denied = Denied(401, "unauthorized: malformed Authorization header (want: Bearer <token>)");
    return true;
  }
  AuthDecision d;
  try {
    d = authorizer.Authorize(token, req.method, req.path);
  } catch (const std::exception& e) {
    d = AuthDecision::Error(e.what());
  } catch (...) {
    d = AuthDecision::Error("authorizer failed");
  }
  switch (d.kind) {
    case AuthDecision::Kind::kAllow:
      return false;
    case AuthDecision::Kind::kUnauthenticated:
      *denied = Denied(401, "unauthorized: " + (d.message.empty() ? "invalid token" : d.message));
      return true;
    case AuthDecision::Kind::kForbidden:
      *denied = Denied(403, "forbidden: " + (d.message.empty() ? "not allowed" : d.message));
      return true;
    case AuthDecision::Kind::kError:
      break;
  }
  // Anything not explicitly allowed fails closed.
  *denied = Denied(500, "authorization failed: " +
                            (d.message.empty() ? std::string("unknown error") : d.message));
  return true;
}

Status ValidateAuthMode(std::string mode, bool in_cluster, std::string* effective) {
  std::string resolved;
  if (mode == "none") {
    resolved = "none";
  } else if (mode == "auto") {
    resolved = in_cluster ? "kubernetes" : "none";
  } else if (mode == "kubernetes") {
    resolved = "kubernetes";
  } else {
    return Status::Error("invalid --metrics-auth=" + mode + " (want kubernetes, none or auto)");
  }
  *effective = resolved;
  return Status::Ok();
}

bool InClusterFromEnv() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  return host != nullptr && host[0] != '\0';
}

}  // namespace infertap::serve
