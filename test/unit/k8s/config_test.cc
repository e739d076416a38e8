#include "k8s/config.hpp"

#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "test/unit/k8s/test_util.hpp"

namespace infertap::k8s {
namespace {

using testing::TempDir;

constexpr char kPem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

std::function<const char*(const char*)> Env(std::map<std::string, std::string> m) {
  auto held = std::make_shared<std::map<std::string, std::string>>(std::move(m));
  return [held](const char* n) -> const char* {
    auto it = held->find(n);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

std::string B64(const std::string& s) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
    for (int k = 3; k >= 0; --k) out.push_back(a[(v >> (6 * k)) & 63]);
  }
  if (i + 1 == s.size()) {
    uint32_t v = uint8_t(s[i]) << 16;
    out += {a[(v >> 18) & 63], a[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == s.size()) {
    uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
    out += {a[(v >> 18) & 63], a[(v >> 12) & 63], a[(v >> 6) & 63], '='};
  }
  return out;
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "hello world\n\x01\xff"}) {
    std::string out;
    ASSERT_TRUE(Base64Decode(B64(s), &out)) << s;
    EXPECT_EQ(out, s);
  }
  std::string out;
  EXPECT_TRUE(Base64Decode("aGVs\nbG8=", &out));
  EXPECT_EQ(out, "hello");
  EXPECT_FALSE(Base64Decode("aGV*", &out));
  EXPECT_FALSE(Base64Decode("aG=Vs", &out));
  EXPECT_FALSE(Base64Decode("a", &out));
}

class InCluster : public ::testing::Test {
 protected:
  std::string sa = "/var/run/secrets/kubernetes.io/serviceaccount/";
  TempDir dir;
};

TEST_F(InCluster, ReadsEnvAndServiceAccountFiles) {
  dir.Write(sa + "token", "tok-1\n");
  dir.Write(sa + "ca.crt", kPem);
  dir.Write(sa + "namespace", "infertap\n");
  ClusterConfig c;
  Status s = LoadInClusterConfig(
      dir.path(), &c,
      Env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}));
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.server, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, dir.path() + sa + "token");
  EXPECT_EQ(c.ca_file, dir.path() + sa + "ca.crt");
  EXPECT_EQ(c.default_namespace, "infertap");
  EXPECT_TRUE(c.token.empty());
  TokenSource ts(c);
  EXPECT_EQ(ts.Get(), "tok-1");
}

TEST_F(InCluster, Ipv6HostIsBracketed) {
  dir.Write(sa + "token", "t");
  dir.Write(sa + "ca.crt", kPem);
  ClusterConfig c;
  ASSERT_TRUE(LoadInClusterConfig(dir.path(), &c,
                                  Env({{"KUBERNETES_SERVICE_HOST", "fd00::1"},
                                       {"KUBERNETES_SERVICE_PORT", "6443"}}))
                  .ok());
  EXPECT_EQ(c.server, "https://[fd00::1]:6443");
  EXPECT_EQ(c.default_namespace, "");
}

TEST_F(InCluster, ClearErrors) {
  ClusterConfig c;
  Status s = LoadInClusterConfig(dir.path(), &c, Env({}));
  EXPECT_NE(s.message().find("KUBERNETES_SERVICE_HOST"), std::string::npos) << s.message();
  auto env = Env({{"KUBERNETES_SERVICE_HOST", "h"}, {"KUBERNETES_SERVICE_PORT", "1"}});
  s = LoadInClusterConfig(dir.path(), &c, env);
  EXPECT_NE(s.message().find("token"), std::string::npos) << s.message();
  dir.Write(sa + "token", "t");
  s = LoadInClusterConfig(dir.path(), &c, env);
  EXPECT_NE(s.message().find("ca.crt"), std::string::npos) << s.message();
  dir.Write(sa + "ca.crt", "not a cert");
  s = LoadInClusterConfig(dir.path(), &c, env);
  EXPECT_NE(s.message().find("no PEM certificate"), std::string::npos) << s.message();
}

TEST(TokenSourceTest, RereadsOnChangeOnAgeAndOnInvalidate) {
  TempDir dir;
  ClusterConfig c;
  c.token_file = dir.Write("token", "one");
  auto now = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  TokenSource ts(c, std::chrono::seconds(60), [&] { return now; });
  EXPECT_EQ(ts.Get(), "one");
  // Content and size change → noticed without waiting for max_age.
  dir.Write("token", "second");
  EXPECT_EQ(ts.Get(), "second");
  // Same size, same second: mtime has ns resolution, so a rewrite is normally seen; the age
  // limit and Invalidate() cover filesystems with coarse timestamps.
  dir.Write("token", "third!");
  now += std::chrono::seconds(61);
  EXPECT_EQ(ts.Get(), "third!");
  dir.Write("token", "fourth");
  ts.Invalidate();
  EXPECT_EQ(ts.Get(), "fourth");
  // A vanished file keeps the last good token and reports the error.
  std::filesystem::remove(c.token_file);
  now += std::chrono::seconds(61);
  std::string err;
  EXPECT_EQ(ts.Get(&err), "fourth");
  EXPECT_NE(err.find("cannot read"), std::string::npos);
}

TEST(TokenSourceTest, InlineTokenWinsAndNeverChanges) {
  ClusterConfig c;
  c.token = "inline";
  c.token_file = "/nonexistent";
  TokenSource ts(c);
  EXPECT_EQ(ts.Get(), "inline");
}

class Kubeconfig : public ::testing::Test {
 protected:
  Status Load(const std::string& yaml, ClusterConfig* c, const std::string& ctx = "") {
    return LoadKubeconfig(dir.Write("kube/config", yaml), ctx, c);
  }
  TempDir dir;
};

TEST_F(Kubeconfig, TokenAndInlineCa) {
  ClusterConfig c;
  Status s = Load(R"(apiVersion: v1
kind: Config
current-context: fake
contexts:
- name: other
  context: {cluster: nope, user: nope}
- name: fake
  context:
    cluster: c1
    user: u1
    namespace: models
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: )" +
                      B64(kPem) + R"(
users:
- name: u1
  user:
    token: abc.def
)",
                  &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.server, "https://127.0.0.1:6443");
  EXPECT_EQ(c.ca_pem, kPem);
  EXPECT_EQ(c.token, "abc.def");
  EXPECT_EQ(c.default_namespace, "models");
  EXPECT_FALSE(c.insecure_skip_tls_verify);
  EXPECT_NE(c.source.find("context fake"), std::string::npos);
}

TEST_F(Kubeconfig, RelativeFilesClientCertInsecureAndExplicitContext) {
  dir.Write("kube/certs/client.crt", kPem);
  dir.Write("kube/certs/client.key", "KEY");
  dir.Write("kube/tok", "from-file");
  ClusterConfig c;
  std::string yaml = R"(current-context: a
contexts:
- name: a
  context: {cluster: c, user: cert}
- name: b
  context: {cluster: c, user: tf}
clusters:
- name: c
  cluster: {server: "https://k:1", insecure-skip-tls-verify: true}
users:
- name: cert
  user: {client-certificate: certs/client.crt, client-key: certs/client.key}
- name: tf
  user: {tokenFile: tok}
)";
  Status s = Load(yaml, &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(c.insecure_skip_tls_verify);
  EXPECT_EQ(c.client_cert_file, dir.path() + "/kube/certs/client.crt");
  EXPECT_EQ(c.client_key_file, dir.path() + "/kube/certs/client.key");
  EXPECT_TRUE(c.token.empty());
  s = Load(yaml, &c, "b");
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.token_file, dir.path() + "/kube/tok");
  EXPECT_EQ(TokenSource(c).Get(), "from-file");
}

TEST_F(Kubeconfig, ClientCertData) {
  ClusterConfig c;
  Status s = Load(
      "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
      "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
      "users: [{name: u, user: {client-certificate-data: " +
          B64(kPem) + ", client-key-data: " + B64("KEY") + "}}]\n",
      &c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.client_cert_pem, kPem);
  EXPECT_EQ(c.client_key_pem, "KEY");
}

TEST_F(Kubeconfig, OneLineErrors) {
  const std::string head =
      "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n";
  const std::string cluster = "clusters: [{name: c, cluster: {server: 'https://k'}}]\n";
  struct Case {
    std::string yaml;
    std::string want;
  } cases[] = {
      {"a: [", "invalid YAML"},
      {"- 1\n", "not a kubeconfig"},
      {"contexts: []\n", "no current-context"},
      {"current-context: zz\ncontexts: []\n", "context \"zz\" not found"},
      {head, "cluster \"c\" not found"},
      {head + "clusters: [{name: c, cluster: {}}]\n", "has no server"},
      {head + "clusters: [{name: c, cluster: {server: 'ftp://x'}}]\n", "not an http(s) URL"},
      {head + "clusters: [{name: c, cluster: {server: 'https://k', certificate-authority-data: "
              "'!!'}}]\n",
       "not valid base64"},
      {head + "clusters: [{name: c, cluster: {server: 'https://k', certificate-authority: "
              "missing.crt}}]\n",
       "certificate-authority: cannot read"},
      {head + cluster, "user \"u\" not found"},
      {head + cluster + "users: [{name: u, user: {exec: {command: aws}}}]\n",
       "exec credential plugin, which is not supported"},
      {head + cluster + "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
       "auth-provider plugin, which is not supported"},
      {head + cluster + "users: [{name: u, user: {client-certificate-data: " + B64(kPem) + "}}]\n",
       "certificate without a key"},
      {head + cluster + "users: [{name: u, user: {tokenFile: nope}}]\n", "tokenFile: cannot read"},
  };
  for (const auto& tc : cases) {
    ClusterConfig c;
    Status s = Load(tc.yaml, &c);
    EXPECT_FALSE(s.ok()) << tc.yaml;
    EXPECT_NE(s.message().find(tc.want), std::string::npos) << "yaml:\n"
                                                            << tc.yaml << "\ngot: " << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  }
  ClusterConfig c;
  Status s = LoadKubeconfig(dir.path() + "/none", "", &c);
  EXPECT_NE(s.message().find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace infertap::k8s
