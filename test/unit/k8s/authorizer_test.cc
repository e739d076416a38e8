// KubernetesAuthorizer against a scripted ReviewApi and a fake clock: decisions, cache TTLs,
// bounds and single flight. (The same authorizer against the fake API server is in
// fake_apiserver_test.cc.)
#include "k8s/authorizer.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace infertap::k8s {
namespace {

using serve::AuthDecision;
using Kind = AuthDecision::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

class ScriptedApi : public ReviewApi {
 public:
  // Tokens: "u-<name>" authenticates as <name>; "bad" is unauthenticated; "down" fails.
  // Users in `allowed` may do anything.
  bool ReviewToken(const std::string& token, TokenReviewResult* out, std::string* err) override {
    ++token_calls;
    if (gate_ms > 0) std::this_thread::sleep_for(milliseconds(gate_ms));
    if (token == "down" || api_down) {
      *err = "TokenReview failed: connection refused";
      return false;
    }
    if (token.rfind("u-", 0) == 0) {
      out->authenticated = true;
      out->user.username = token.substr(2);
      out->user.groups = {"system:authenticated"};
      return true;
    }
    out->authenticated = false;
    out->error = "invalid bearer token";
    return true;
  }
  bool ReviewAccess(const UserInfo& user, const std::string& verb, const std::string& path,
                    AccessReviewResult* out, std::string* err) override {
    ++access_calls;
    last_verb = verb;
    last_path = path;
    if (api_down) {
      *err = "SubjectAccessReview failed: HTTP 503";
      return false;
    }
    out->allowed = allowed.count(user.username) > 0 && verb == "get";
    return true;
  }
  std::atomic<int> token_calls{0}, access_calls{0};
  std::atomic<int> gate_ms{0};
  std::atomic<bool> api_down{false};
  std::set<std::string> allowed;
  std::string last_verb, last_path;
};

class AuthorizerTest : public ::testing::Test {
 protected:
  AuthorizerTest() {
    api = std::make_shared<ScriptedApi>();
    api->allowed = {"scraper"};
  }
  std::unique_ptr<KubernetesAuthorizer> Make(AuthorizerOptions o = {}) {
    return std::make_unique<KubernetesAuthorizer>(api, o, [this] { return now; });
  }
  std::shared_ptr<ScriptedApi> api;
  std::chrono::steady_clock::time_point now =
      std::chrono::steady_clock::time_point{} + seconds(100);
};

TEST_F(AuthorizerTest, Decisions) {
  auto a = Make();
  EXPECT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  EXPECT_EQ(api->last_verb, "get");
  EXPECT_EQ(api->last_path, "/metrics");
  AuthDecision d = a->Authorize("u-other", "GET", "/metrics");
  EXPECT_EQ(d.kind, Kind::kForbidden);
  EXPECT_NE(d.message.find("User \"other\" cannot get path \"/metrics\""), std::string::npos);
  EXPECT_EQ(a->Authorize("bad", "GET", "/metrics").kind, Kind::kUnauthenticated);
  d = a->Authorize("down", "GET", "/metrics");
  EXPECT_EQ(d.kind, Kind::kError);
  EXPECT_EQ(d.message.find("down"), std::string::npos);  // never the token
  // HEAD asks for verb "head", which the scraper role does not grant (as upstream).
  EXPECT_EQ(a->Authorize("u-scraper", "HEAD", "/metrics").kind, Kind::kForbidden);
  EXPECT_EQ(api->last_verb, "head");
  api->api_down = true;
  EXPECT_EQ(a->Authorize("u-fresh", "GET", "/metrics").kind, Kind::kError);
}

TEST_F(AuthorizerTest, CacheTtls) {
  auto a = Make();
  ASSERT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  ASSERT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  EXPECT_EQ(api->token_calls, 1);
  EXPECT_EQ(api->access_calls, 1);
  EXPECT_EQ(a->stats().token_cache_hits, 1u);
  EXPECT_EQ(a->stats().access_cache_hits, 1u);
  // Token review expires after 1 min, the allow after 5 min.
  now += seconds(61);
  ASSERT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  EXPECT_EQ(api->token_calls, 2);
  EXPECT_EQ(api->access_calls, 1);
  now += seconds(240);  // 301 s after the first allow
  ASSERT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  EXPECT_EQ(api->token_calls, 3);
  EXPECT_EQ(api->access_calls, 2);
  // Deny: 30 s.
  ASSERT_EQ(a->Authorize("u-other", "GET", "/metrics").kind, Kind::kForbidden);
  now += seconds(29);
  ASSERT_EQ(a->Authorize("u-other", "GET", "/metrics").kind, Kind::kForbidden);
  EXPECT_EQ(api->access_calls, 3);
  now += seconds(2);
  api->allowed.insert("other");  // RBAC changed: seen once the deny expired
  EXPECT_EQ(a->Authorize("u-other", "GET", "/metrics").kind, Kind::kAllow);
  EXPECT_EQ(api->access_calls, 4);
  // Unauthenticated: 30 s.
  int before = api->token_calls;
  EXPECT_EQ(a->Authorize("bad", "GET", "/metrics").kind, Kind::kUnauthenticated);
  EXPECT_EQ(a->Authorize("bad", "GET", "/metrics").kind, Kind::kUnauthenticated);
  EXPECT_EQ(api->token_calls, before + 1);
  now += seconds(31);
  EXPECT_EQ(a->Authorize("bad", "GET", "/metrics").kind, Kind::kUnauthenticated);
  EXPECT_EQ(api->token_calls, before + 2);
}

TEST_F(AuthorizerTest, FailuresAreNotCachedAndNeverAllow) {
  auto a = Make();
  api->api_down = true;
  EXPECT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kError);
  EXPECT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kError);
  EXPECT_EQ(api->token_calls, 2);
  EXPECT_EQ(a->stats().api_errors, 2u);
  api->api_down = false;
  EXPECT_EQ(a->Authorize("u-scraper", "GET", "/metrics").kind, Kind::kAllow);
  // Token review cached, access review fails → error, not allow.
  api->api_down = true;
  EXPECT_EQ(a->Authorize("u-scraper", "GET", "/other").kind, Kind::kError);
}

TEST_F(AuthorizerTest, CachesAreBounded) {
  AuthorizerOptions o;
  o.max_entries = 16;
  auto a = Make(o);
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(a->Authorize("u-user" + std::to_string(i), "GET", "/metrics").kind, Kind::kForbidden);
    EXPECT_LE(a->token_cache_size(), 16u);
    EXPECT_LE(a->access_cache_size(), 16u);
  }
  // The most recent entries survive.
  int calls = api->token_calls;
  a->Authorize("u-user199", "GET", "/metrics");
  EXPECT_EQ(api->token_calls, calls);
}

TEST_F(AuthorizerTest, SingleFlight) {
  auto a = Make();
  api->gate_ms = 300;  // the first review is slow: the others arrive while it is in flight
  std::vector<std::thread> ts;
  std::atomic<int> allowed{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      if (a->Authorize("u-scraper", "GET", "/metrics").kind == Kind::kAllow) ++allowed;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(allowed, 8);
  EXPECT_EQ(api->token_calls, 1);
  EXPECT_EQ(api->access_calls, 1);
  EXPECT_GE(a->stats().shared_flights, 1u);
}

TEST(Sha256, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace infertap::k8s
