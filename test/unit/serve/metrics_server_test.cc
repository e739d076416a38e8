#include "agent/serve/metrics_server.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <mutex>

#include "test/unit/serve/test_client.hpp"

namespace infertap::serve {
namespace {

using testing::BodyOf;
using testing::Get;
using testing::HasHeader;
using testing::StatusOf;

// Answers by token: "good" → allow, "nope" → 403, "bad" → 401, "down" → 500, "throw" → throws.
class FakeAuthorizer : public Authorizer {
 public:
  AuthDecision Authorize(std::string_view token, std::string_view method,
                         std::string_view path) override {
    std::lock_guard lock(mu_);
    calls_++;
    last_token_ = token;
    last_method_ = method;
    last_path_ = path;
    if (token == "good") return AuthDecision::Allow();
    if (token == "nope") return AuthDecision::Forbidden("user cannot get /metrics");
    if (token == "bad") return AuthDecision::Unauthenticated("token not valid");
    if (token == "throw") throw std::runtime_error("api exploded");
    return AuthDecision::Error("TokenReview failed: connection refused");
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::string last_token() {
    std::lock_guard lock(mu_);
    return last_token_;
  }
  std::string last_path() {
    std::lock_guard lock(mu_);
    return last_path_;
  }
  std::string last_method() {
    std::lock_guard lock(mu_);
    return last_method_;
  }

 private:
  std::mutex mu_;
  int calls_ = 0;
  std::string last_token_, last_method_, last_path_;
};

MetricsServerOptions Options() {
  MetricsServerOptions o;
  o.http.addr = "127.0.0.1:0";
  return o;
}

std::string Gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);
  std::string out(in.size() * 50 + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = inflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return rc == Z_STREAM_END ? out : "<gunzip failed>";
}

TEST(MetricsServer, ServesExpositionWithContentType) {
  Metrics metrics;
  metrics.RecordRequestCounter("m1", "t1");
  MetricsServer server(Options(), metrics);
  ASSERT_TRUE(server.Start().ok());
  std::string r = Get(server.port(), "/metrics");
  ASSERT_EQ(StatusOf(r), 200) << r;
  EXPECT_TRUE(HasHeader(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8")) << r;
  EXPECT_EQ(BodyOf(r), metrics.Serialize());
  EXPECT_NE(
      BodyOf(r).find("inference_model_request_total{model_name=\"m1\",target_model_name=\"t1\"} 1"),
      std::string::npos);
  EXPECT_FALSE(HasHeader(r, "Content-Encoding: gzip"));
}

TEST(MetricsServer, GzipWhenAsked) {
  Metrics metrics;
  for (int i = 0; i < 50; ++i) metrics.RecordRequestCounter("model" + std::to_string(i), "t");
  MetricsServer server(Options(), metrics);
  ASSERT_TRUE(server.Start().ok());
  std::string r = Get(server.port(), "/metrics", "Accept-Encoding: deflate, GZIP;q=0.8\r\n");
  ASSERT_EQ(StatusOf(r), 200);
  EXPECT_TRUE(HasHeader(r, "Content-Encoding: gzip")) << r.substr(0, 300);
  std::string body = BodyOf(r);
  EXPECT_LT(body.size(), metrics.Serialize().size() / 3);
  EXPECT_EQ(Gunzip(body), metrics.Serialize());
  // q=0 refuses gzip.
  r = Get(server.port(), "/metrics", "Accept-Encoding: gzip;q=0\r\n");
  EXPECT_FALSE(HasHeader(r, "Content-Encoding: gzip"));
  EXPECT_EQ(BodyOf(r), metrics.Serialize());
}

TEST(MetricsServer, AcceptsGzipParsing) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("br, gzip"));
  EXPECT_TRUE(AcceptsGzip("gzip;q=0.5"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0.000"));
  EXPECT_FALSE(AcceptsGzip("identity"));
  EXPECT_FALSE(AcceptsGzip("xgzip"));
  EXPECT_FALSE(AcceptsGzip(""));
}

TEST(MetricsServer, HealthzAndReadyzFlip) {
  Metrics metrics;
  std::atomic<bool> ready{false};
  MetricsServerOptions o = Options();
  o.readiness = [&] { return Readiness{ready.load(), "BPF programs not attached"}; };
  o.authorizer = std::make_shared<FakeAuthorizer>();  // health endpoints ignore it
  MetricsServer server(o, metrics);
  ASSERT_TRUE(server.Start().ok());
  std::string h = Get(server.port(), "/healthz");
  EXPECT_EQ(StatusOf(h), 200);
  EXPECT_EQ(BodyOf(h), "ok\n");
  std::string r = Get(server.port(), "/readyz");
  EXPECT_EQ(StatusOf(r), 503);
  EXPECT_EQ(BodyOf(r), "not ready: BPF programs not attached\n");
  ready = true;
  r = Get(server.port(), "/readyz");
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_EQ(BodyOf(r), "ok\n");
  ready = false;
  EXPECT_EQ(StatusOf(Get(server.port(), "/readyz")), 503);
}

class MetricsAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_.RecordRequestCounter("m", "t");
    auth_ = std::make_shared<FakeAuthorizer>();
    MetricsServerOptions o = Options();
    o.authorizer = auth_;
    server_ = std::make_unique<MetricsServer>(o, metrics_);
    ASSERT_TRUE(server_->Start().ok());
  }
  std::string Scrape(const std::string& headers) {
    return Get(server_->port(), "/metrics", headers);
  }

  Metrics metrics_;
  std::shared_ptr<FakeAuthorizer> auth_;
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsAuthTest, MissingOrMalformedHeaderIs401WithChallenge) {
  for (std::string headers :
       {std::string(""), std::string("Authorization: Basic dXNlcjpwYXNz\r\n"),
        std::string("Authorization: Bearer\r\n"), std::string("Authorization: Bearer a b\r\n"),
        std::string("Authorization: Bearertoken\r\n"),
        std::string("Authorization: Bearer good\r\nAuthorization: Bearer good\r\n")}) {
    std::string r = Scrape(headers);
    EXPECT_EQ(StatusOf(r), 401) << headers;
    EXPECT_TRUE(HasHeader(r, "WWW-Authenticate: Bearer")) << r;
    EXPECT_EQ(BodyOf(r).find("inference_model"), std::string::npos);
  }
  EXPECT_EQ(auth_->calls(), 0);  // rejected before asking the authorizer
}

TEST_F(MetricsAuthTest, DecisionsMapToStatus) {
  std::string r = Scrape("Authorization: Bearer good\r\n");
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_EQ(BodyOf(r), metrics_.Serialize());
  EXPECT_EQ(auth_->last_token(), "good");
  EXPECT_EQ(auth_->last_path(), "/metrics");
  EXPECT_EQ(auth_->last_method(), "GET");

  // The scheme is case-insensitive; extra spaces are tolerated.
  EXPECT_EQ(StatusOf(Scrape("authorization: bEaReR   good\r\n")), 200);

  r = Scrape("Authorization: Bearer bad\r\n");
  EXPECT_EQ(StatusOf(r), 401);
  EXPECT_TRUE(HasHeader(r, "WWW-Authenticate: Bearer"));
  EXPECT_EQ(BodyOf(r), "unauthorized: token not valid\n");

  r = Scrape("Authorization: Bearer nope\r\n");
  EXPECT_EQ(StatusOf(r), 403);
  EXPECT_EQ(BodyOf(r), "forbidden: user cannot get /metrics\n");
  EXPECT_FALSE(HasHeader(r, "WWW-Authenticate: Bearer"));

  for (const char* failing : {"down", "throw"}) {
    r = Scrape(std::string("Authorization: Bearer ") + failing + "\r\n");
    EXPECT_EQ(StatusOf(r), 500) << failing;
    EXPECT_EQ(BodyOf(r).find("inference_model"), std::string::npos);
  }
  EXPECT_NE(BodyOf(Scrape("Authorization: Bearer throw\r\n")).find("api exploded"),
            std::string::npos);
  // Health endpoints never ask.
  int before = auth_->calls();
  EXPECT_EQ(StatusOf(Get(server_->port(), "/healthz")), 200);
  EXPECT_EQ(StatusOf(Get(server_->port(), "/readyz")), 200);
  EXPECT_EQ(auth_->calls(), before);
}

TEST(Auth, ParseBearerToken) {
  std::string t;
  EXPECT_TRUE(ParseBearerToken("Bearer abc.DEF-123_~+/==", &t));
  EXPECT_EQ(t, "abc.DEF-123_~+/==");
  EXPECT_TRUE(ParseBearerToken("BEARER x", &t));
  EXPECT_EQ(t, "x");
  for (const char* bad : {"", "Bearer", "Bearer ", "Bearer a b", "Basic x", "Bearer\tx",
                          "Bearer =abc", "Bearer a=b", "Bearer é"}) {
    EXPECT_FALSE(ParseBearerToken(bad, &t)) << bad;
  }
}

TEST(Auth, ValidateAuthMode) {
  std::string eff = "unset";
  EXPECT_TRUE(ValidateAuthMode("none", false, &eff).ok());
  EXPECT_EQ(eff, "none");
  eff = "unset";
  EXPECT_TRUE(ValidateAuthMode("none", true, &eff).ok());
  EXPECT_EQ(eff, "none");
  eff = "unset";
  EXPECT_TRUE(ValidateAuthMode("auto", false, &eff).ok());
  EXPECT_EQ(eff, "none");

  eff = "unset";
  Status s = ValidateAuthMode("kubernetes", false, &eff);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(eff, "kubernetes");
  eff = "unset";
  s = ValidateAuthMode("auto", true, &eff);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(eff, "kubernetes");
  s = ValidateAuthMode("basic", false, &eff);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("invalid --metrics-auth=basic"), std::string::npos);
}

}  // namespace
}  // namespace infertap::serve
