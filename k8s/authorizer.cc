#include "k8s/authorizer.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "agent/common/log.hpp"

namespace infertap::k8s {

using nlohmann::json;
using serve::AuthDecision;

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += {hex[md[i] >> 4], hex[md[i] & 15]};
  return out;
}

// ---- REST ----

namespace {

std::vector<std::string> StringList(const json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// POSTs one review object and returns its `status` object; false with *err when the API did not
// answer with one (a failure, never a decision).
bool PostReview(RestClient& client, const char* kind, const std::string& path, const json& req,
                json* status, std::string* err) {
  HttpResult r = client.PostJson(path, req.dump());
  if (r.status != 200 && r.status != 201) {
    *err = std::string(kind) + " failed: " + r.Describe();
    return false;
  }
  json doc = json::parse(r.body, nullptr, false);
  if (!doc.is_object() || !doc.contains("status") || !doc["status"].is_object()) {
    *err = std::string(kind) + " failed: response has no status";
    return false;
  }
  *status = std::move(doc["status"]);
  return true;
}

}  // namespace

bool RestReviewApi::ReviewToken(const std::string& token, TokenReviewResult* out,
                                std::string* err) {
  json req = {{"apiVersion", "authentication.k8s.io/v1"},
              {"kind", "TokenReview"},
              {"spec", {{"token", token}}}};
  json st;
  if (!PostReview(client_, "TokenReview", "/apis/authentication.k8s.io/v1/tokenreviews", req, &st,
                  err))
    return false;
  TokenReviewResult res;
  // The server omits `authenticated` when false.
  res.authenticated = st.value("authenticated", false);
  res.error = st.value("error", std::string());
  if (st.contains("user") && st["user"].is_object()) {
    const json& u = st["user"];
    res.user.username = u.value("username", std::string());
    res.user.uid = u.value("uid", std::string());
    res.user.groups = StringList(u.value("groups", json::array()));
    if (u.contains("extra") && u["extra"].is_object()) {
      for (auto it = u["extra"].begin(); it != u["extra"].end(); ++it) {
        res.user.extra[it.key()] = StringList(*it);
      }
    }
  }
  if (res.authenticated && res.user.username.empty()) {
    *err = "TokenReview failed: authenticated without a username";
    return false;
  }
  *out = std::move(res);
  return true;
}

bool RestReviewApi::ReviewAccess(const UserInfo& user, const std::string& verb,
                                 const std::string& path, AccessReviewResult* out,
                                 std::string* err) {
  json spec = {{"nonResourceAttributes", {{"path", path}, {"verb", verb}}},
               {"user", user.username},
               {"groups", user.groups}};
  if (!user.uid.empty()) spec["uid"] = user.uid;
  if (!user.extra.empty()) spec["extra"] = user.extra;
  json req = {
      {"apiVersion", "authorization.k8s.io/v1"}, {"kind", "SubjectAccessReview"}, {"spec", spec}};
  json st;
  if (!PostReview(client_, "SubjectAccessReview",
                  "/apis/authorization.k8s.io/v1/subjectaccessreviews", req, &st, err))
    return false;
  AccessReviewResult res;
  res.allowed = st.value("allowed", false) && !st.value("denied", false);
  res.reason = st.value("reason", std::string());
  std::string eval = st.value("evaluationError", std::string());
  if (!res.allowed && !eval.empty() && res.reason.empty()) {
    // The authorizer chain could not evaluate: that is a failure, not a deny.
    *err = "SubjectAccessReview evaluation error: " + eval;
    return false;
  }
  *out = std::move(res);
  return true;
}

// ---- cache with single flight ----

// Values are opaque to the cache: a TokenReviewResult or an AccessReviewResult.
struct KubernetesAuthorizer::Cache {
  struct Value {
    TokenReviewResult token;
    AccessReviewResult access;
  };
  struct Flight {
    bool done = false;
    bool ok = false;
    Value value;
    std::string error;
  };
  struct Entry {
    Value value;
    std::chrono::steady_clock::time_point expires;
  };

  size_t max_entries;
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Entry> entries;
  std::map<std::string, std::shared_ptr<Flight>> flights;

  enum class Source { kCache, kCall, kShared };

  // Returns false with *err when the call failed. `call` runs without the lock held; it returns
  // false on failure, else fills the value and its ttl.
  bool Get(const std::string& key, std::chrono::steady_clock::time_point now,
           const std::function<bool(Value*, std::chrono::milliseconds*, std::string*)>& call,
           Value* out, std::string* err, Source* source) {
    std::unique_lock<std::mutex> lock(mu);
    if (auto it = entries.find(key); it != entries.end()) {
      if (it->second.expires > now) {
        *out = it->second.value;
        *source = Source::kCache;
        return true;
      }
      entries.erase(it);
    }
    if (auto f = flights.find(key); f != flights.end()) {
      std::shared_ptr<Flight> flight = f->second;
      cv.wait(lock, [&] { return flight->done; });
      *source = Source::kShared;
      if (!flight->ok) {
        *err = flight->error;
        return false;
      }
      *out = flight->value;
      return true;
    }
    auto flight = std::make_shared<Flight>();
    flights[key] = flight;
    lock.unlock();
    Value v;
    std::chrono::milliseconds ttl{0};
    std::string e;
    bool ok = false;
    try {
      ok = call(&v, &ttl, &e);
    } catch (const std::exception& ex) {
      e = ex.what();
    }
    lock.lock();
    flights.erase(key);
    flight->done = true;
    flight->ok = ok;
    flight->value = v;
    flight->error = e;
    if (ok && ttl.count() > 0) Insert(key, v, now + ttl, now);
    cv.notify_all();
    *source = Source::kCall;
    if (!ok) {
      *err = e;
      return false;
    }
    *out = std::move(v);
    return true;
  }

  void Insert(const std::string& key, const Value& v, std::chrono::steady_clock::time_point expires,
              std::chrono::steady_clock::time_point now) {
    if (entries.size() >= max_entries && !entries.count(key)) {
      for (auto it = entries.begin(); it != entries.end();) {
        it = it->second.expires <= now ? entries.erase(it) : std::next(it);
      }
      if (entries.size() >= max_entries) {
        auto soonest = std::min_element(
            entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; });
        entries.erase(soonest);
      }
    }
    entries[key] = Entry{v, expires};
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return entries.size();
  }
};

KubernetesAuthorizer::KubernetesAuthorizer(std::shared_ptr<ReviewApi> api,
                                           AuthorizerOptions options, Clock clock)
    : api_(std::move(api)),
      options_(options),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      tokens_(std::make_unique<Cache>()),
      access_(std::make_unique<Cache>()) {
  tokens_->max_entries = std::max<size_t>(1, options_.max_entries);
  access_->max_entries = std::max<size_t>(1, options_.max_entries);
}

KubernetesAuthorizer::~KubernetesAuthorizer() = default;

AuthDecision KubernetesAuthorizer::Authorize(std::string_view bearer_token, std::string_view method,
                                             std::string_view path) {
  const std::string token(bearer_token);
  const std::string token_key = Sha256Hex(token);
  auto count = [this](Cache::Source s, uint64_t AuthorizerStats::*calls,
                      uint64_t AuthorizerStats::*hits) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (s == Cache::Source::kCall) ++(stats_.*calls);
    if (s == Cache::Source::kCache) ++(stats_.*hits);
    if (s == Cache::Source::kShared) ++stats_.shared_flights;
  };
  auto api_error = [this](const std::string& e) {
    {
      std::lock_guard<std::mutex> lock(stats_mu_);
      ++stats_.api_errors;
    }
    LOG_WARN("metrics auth: %s", e.c_str());
    return AuthDecision::Error(e);
  };

  Cache::Value tv;
  std::string err;
  Cache::Source src;
  bool ok = tokens_->Get(
      token_key, clock_(),
      [&](Cache::Value* v, std::chrono::milliseconds* ttl, std::string* e) {
        if (!api_->ReviewToken(token, &v->token, e)) return false;
        *ttl = v->token.authenticated ? options_.token_ttl : options_.unauthenticated_ttl;
        return true;
      },
      &tv, &err, &src);
  count(src, &AuthorizerStats::token_reviews, &AuthorizerStats::token_cache_hits);
  if (!ok) return api_error(err);
  if (!tv.token.authenticated) {
    LOG_DEBUG("metrics auth: token %.12s… not authenticated", token_key.c_str());
    return AuthDecision::Unauthenticated("token not valid");
  }
  const UserInfo& user = tv.token.user;
  std::string verb(method);
  for (char& c : verb) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string p(path);
  // The access key covers everything the review depends on.
  std::string material = user.username + '\0' + user.uid + '\0';
  for (const auto& g : user.groups) material += g + '\x01';
  material += '\0';
  for (const auto& [k, vs] : user.extra) {
    material += k + '\x02';
    for (const auto& v : vs) material += v + '\x01';
  }
  material += '\0' + verb + '\0' + p;
  Cache::Value av;
  ok = access_->Get(
      Sha256Hex(material), clock_(),
      [&](Cache::Value* v, std::chrono::milliseconds* ttl, std::string* e) {
        if (!api_->ReviewAccess(user, verb, p, &v->access, e)) return false;
        *ttl = v->access.allowed ? options_.allow_ttl : options_.deny_ttl;
        return true;
      },
      &av, &err, &src);
  count(src, &AuthorizerStats::access_reviews, &AuthorizerStats::access_cache_hits);
  if (!ok) return api_error(err);
  if (!av.access.allowed) {
    return AuthDecision::Forbidden("User \"" + user.username + "\" cannot " + verb + " path \"" +
                                   p + "\"");
  }
  return AuthDecision::Allow();
}

AuthorizerStats KubernetesAuthorizer::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

size_t KubernetesAuthorizer::token_cache_size() const { return tokens_->size(); }
size_t KubernetesAuthorizer::access_cache_size() const { return access_->size(); }

}  // namespace infertap::k8s
