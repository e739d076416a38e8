// --metrics-auth=kubernetes (docs/kubernetes.md, docs/serving.md): the bearer token of a scrape
// is checked with a TokenReview (authentication.k8s.io/v1), then the identity it names with a
// SubjectAccessReview (authorization.k8s.io/v1, nonResourceAttributes {path, verb}, user,
// groups, uid, extra), as the upstream endpoint picker's metrics filter does, so the upstream
// scrape setup (a ClusterRole with nonResourceURLs ["/metrics"], verbs ["get"]) works unchanged.
//
// Decisions: no/invalid token → 401; valid but not allowed → 403; the API failed or timed out
// (10 s) → 500. Never allow on a failure; failures are not cached.
//
// Caches (bounded, default 4096 entries each; when full, expired entries go first, then the one
// expiring soonest): a successful TokenReview for 1 min, an unauthenticated one for 30 s; an
// allow for 5 min, a deny for 30 s. Token reviews are keyed by the SHA-256 of the token, access
// reviews by a hash of (user, uid, groups, extra, verb, path): the token itself is never stored
// as a key nor logged. Concurrent requests for one key make one API call (single flight); the
// others wait for its answer, failure included.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/serve/auth.hpp"
#include "k8s/rest_client.hpp"

namespace infertap::k8s {

struct UserInfo {
  std::string username, uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;
};

struct TokenReviewResult {
  bool authenticated = false;
  UserInfo user;
  std::string error;  // the server's reason when not authenticated (never contains the token)
};

struct AccessReviewResult {
  bool allowed = false;
  std::string reason;
};

// The two API calls, behind an interface so the caching can be tested with a fake clock.
// Each returns false (with *err) when the API could not answer.
class ReviewApi {
 public:
  virtual ~ReviewApi() = default;
  virtual bool ReviewToken(const std::string& token, TokenReviewResult* out, std::string* err) = 0;
  virtual bool ReviewAccess(const UserInfo& user, const std::string& verb, const std::string& path,
                            AccessReviewResult* out, std::string* err) = 0;
};

// ReviewApi over the REST client (POST tokenreviews / subjectaccessreviews).
class RestReviewApi : public ReviewApi {
 public:
  explicit RestReviewApi(RestClient& client) : client_(client) {}
  bool ReviewToken(const std::string& token, TokenReviewResult* out, std::string* err) override;
  bool ReviewAccess(const UserInfo& user, const std::string& verb, const std::string& path,
                    AccessReviewResult* out, std::string* err) override;

 private:
  RestClient& client_;
};

struct AuthorizerOptions {
  std::chrono::milliseconds token_ttl{60000};
  std::chrono::milliseconds unauthenticated_ttl{30000};
  std::chrono::milliseconds allow_ttl{300000};
  std::chrono::milliseconds deny_ttl{30000};
  size_t max_entries = 4096;
};

struct AuthorizerStats {
  uint64_t token_reviews = 0;   // API calls
  uint64_t access_reviews = 0;  // API calls
  uint64_t token_cache_hits = 0;
  uint64_t access_cache_hits = 0;
  uint64_t shared_flights = 0;  // requests that waited for another request's API call
  uint64_t api_errors = 0;
};

class KubernetesAuthorizer : public serve::Authorizer {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  KubernetesAuthorizer(std::shared_ptr<ReviewApi> api, AuthorizerOptions options = {},
                       Clock clock = {});
  ~KubernetesAuthorizer() override;

  serve::AuthDecision Authorize(std::string_view bearer_token, std::string_view method,
                                std::string_view path) override;
  AuthorizerStats stats() const;
  size_t token_cache_size() const;
  size_t access_cache_size() const;

 private:
  struct Cache;
  std::shared_ptr<ReviewApi> api_;
  const AuthorizerOptions options_;
  Clock clock_;
  std::unique_ptr<Cache> tokens_;
  std::unique_ptr<Cache> access_;
  mutable std::mutex stats_mu_;
  AuthorizerStats stats_;
};

// Hex SHA-256 (cache keys).
std::string Sha256Hex(std::string_view data);

}  // namespace infertap::k8s
