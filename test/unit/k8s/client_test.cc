// The REST client, reflectors, ClusterWatch and the authorizer against the fake API server
// (test/fake_apiserver), one server per test.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "k8s/authorizer.hpp"
#include "k8s/cluster_watch.hpp"
#include "k8s/reflector.hpp"
#include "k8s/rest_client.hpp"
#include "test/unit/k8s/fake_server.hpp"

namespace infertap::k8s {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakeApiServer;
using testing::PodJson;
using testing::PoolV1Json;
using testing::WaitFor;

class FakeApiTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  void Start(const std::vector<std::string>& args) {
    std::string err;
    ASSERT_TRUE(server.Start(args, &err)) << err;
  }
  ReflectorOptions FastOptions() {
    ReflectorOptions o;
    o.backoff_initial = milliseconds(200);
    o.backoff_cap = milliseconds(1000);
    o.missing_retry = seconds(1);
    return o;
  }
  static std::vector<std::string> PodNames(const Reflector& r) {
    std::vector<std::string> names;
    for (const auto& o : r.Snapshot()) names.push_back(std::get<PodInfo>(o).name);
    return names;
  }
  static ResourceSpec PodSpec(const std::string& node) {
    return {Kind::kPod, "/api/v1", "pods", "", "spec.nodeName=" + node, false};
  }
  FakeApiServer server;
};

TEST_F(FakeApiTest, ListWatchSeesCreateUpdateDeleteOnThisNodeOnly) {
  ASSERT_TRUE(server
                  .Apply({PodJson("ns", "before", "n1", "10.0.0.1", {{"app", "x"}}),
                          PodJson("ns", "elsewhere", "n2", "10.0.0.2", {{"app", "x"}})})
                  .ok());
  RestClient client(server.AdminConfig());
  std::atomic<int> changes{0};
  Reflector r(client, PodSpec("n1"), FastOptions(), [&] { ++changes; });
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced(); }));
  EXPECT_EQ(PodNames(r), std::vector<std::string>{"before"});
  ASSERT_TRUE(server.Apply({PodJson("ns", "new", "n1", "10.0.0.3", {{"app", "x"}})}).ok());
  ASSERT_TRUE(WaitFor([&] { return PodNames(r).size() == 2; }));
  // Update: readiness flips.
  ASSERT_TRUE(server.Apply({PodJson("ns", "new", "n1", "10.0.0.3", {{"app", "x"}}, false)}).ok());
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& o : r.Snapshot()) {
      const auto& p = std::get<PodInfo>(o);
      if (p.name == "new") return !p.ready;
    }
    return false;
  }));
  HttpResult d = client.Request("DELETE", "/api/v1/namespaces/ns/pods/new", nullptr);
  ASSERT_TRUE(d.ok()) << d.Describe();
  ASSERT_TRUE(WaitFor([&] { return PodNames(r) == std::vector<std::string>{"before"}; }));
  ReflectorStats s = r.stats();
  EXPECT_EQ(s.lists, 1u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_FALSE(s.resource_version.empty());
  // The list and the watch carried the field selector, the watch asked for bookmarks.
  bool saw_watch = false;
  for (const auto& q : server.Requests()) {
    if (q.value("path", "") != "/api/v1/pods") continue;
    std::string query = q.value("query", "");
    EXPECT_NE(query.find("fieldSelector=spec.nodeName%3Dn1"), std::string::npos) << query;
    if (q.value("watch", false)) {
      saw_watch = true;
      EXPECT_NE(query.find("allowWatchBookmarks=true"), std::string::npos) << query;
      EXPECT_NE(query.find("timeoutSeconds="), std::string::npos) << query;
      EXPECT_NE(query.find("resourceVersion="), std::string::npos) << query;
    } else {
      EXPECT_NE(query.find("limit=500"), std::string::npos) << query;
    }
  }
  EXPECT_TRUE(saw_watch);
  EXPECT_GE(changes.load(), 4);
}

TEST_F(FakeApiTest, PaginatedList) {
  std::vector<json> pods;
  for (int i = 0; i < 7; ++i) {
    pods.push_back(PodJson("ns", "p" + std::to_string(i), "n1", "10.0.0." + std::to_string(i + 1),
                           {{"app", "x"}}));
  }
  ASSERT_TRUE(server.Apply(pods).ok());
  RestClient client(server.AdminConfig());
  ReflectorOptions o = FastOptions();
  o.page_limit = 3;
  Reflector r(client, PodSpec("n1"), o, {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced(); }));
  EXPECT_EQ(PodNames(r).size(), 7u);
  EXPECT_EQ(r.stats().list_requests, 3u);
}

TEST_F(FakeApiTest, RelistAfterCompactionAndGone) {
  RestClient client(server.AdminConfig());
  Reflector r(client, PodSpec("n1"), FastOptions(), {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced(); }));
  // While the watch is down the history is compacted: resuming from the old resourceVersion
  // gets 410, which must lead to a relist that also picks up what changed in the gap.
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=refuse").ok());
  ASSERT_TRUE(server.Apply({PodJson("ns", "gap", "n1", "10.0.0.9", {{"app", "x"}})}).ok());
  ASSERT_TRUE(server.Control("POST", "/fake/compact").ok());
  ASSERT_TRUE(server.Control("POST", "/fake/start").ok());
  ASSERT_TRUE(
      WaitFor([&] { return PodNames(r) == std::vector<std::string>{"gap"}; }, milliseconds(8000)));
  ReflectorStats s = r.stats();
  EXPECT_GE(s.relists_gone, 1u);
  EXPECT_GE(s.lists, 2u);
}

TEST_F(FakeApiTest, ReconnectAfterDroppedWatchWithoutRelist) {
  RestClient client(server.AdminConfig());
  Reflector r(client, PodSpec("n1"), FastOptions(), {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced() && r.stats().watches >= 1; }));
  ASSERT_TRUE(WaitFor([&] { return r.stats().events >= 1; }));  // a bookmark: the watch is live
  ASSERT_TRUE(server.Control("POST", "/fake/close-watches?mode=abrupt").ok());
  ASSERT_TRUE(server.Apply({PodJson("ns", "after", "n1", "10.0.0.5", {{"app", "x"}})}).ok());
  ASSERT_TRUE(WaitFor([&] { return PodNames(r) == std::vector<std::string>{"after"}; }));
  ASSERT_TRUE(server.Control("POST", "/fake/close-watches?mode=clean").ok());
  HttpResult d = client.Request("DELETE", "/api/v1/namespaces/ns/pods/after", nullptr);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(WaitFor([&] { return PodNames(r).empty(); }));
  ReflectorStats s = r.stats();
  EXPECT_EQ(s.lists, 1u);  // resumed from the resourceVersion, no relist
  EXPECT_GE(s.watches, 3u);
}

TEST_F(FakeApiTest, ApiDownThenBackWithBackoffNotATightLoop) {
  RestClient client(server.AdminConfig());
  Reflector r(client, PodSpec("n1"), FastOptions(), {});  // 200 ms → 1 s
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced() && r.stats().watches >= 1; }));
  // Answer every API request with 500 for 3 s: each is logged by the fake.
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=500").ok());
  server.ClearRequests();
  std::this_thread::sleep_for(seconds(3));
  int during = server.CountRequests("/api/v1/pods");
  // 200+400+800+1000+1000 ms: about 5 attempts in 3 s; a tight loop would be thousands.
  EXPECT_GE(during, 2);
  EXPECT_LE(during, 8);
  EXPECT_GE(r.stats().errors, 2u);
  // Refused connections (not logged by the fake) back off too: count the reflector's errors.
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=refuse").ok());
  uint64_t e0 = r.stats().errors;
  std::this_thread::sleep_for(seconds(2));
  EXPECT_LE(r.stats().errors - e0, 4u);
  ASSERT_TRUE(server.Control("POST", "/fake/start").ok());
  ASSERT_TRUE(server.Apply({PodJson("ns", "back", "n1", "10.0.0.5", {{"app", "x"}})}).ok());
  ASSERT_TRUE(
      WaitFor([&] { return PodNames(r) == std::vector<std::string>{"back"}; }, milliseconds(5000)));
}

TEST_F(FakeApiTest, StopIsPromptDuringAWatch) {
  RestClient client(server.AdminConfig());
  Reflector r(client, PodSpec("n1"), FastOptions(), {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced() && r.stats().watches >= 1; }));
  std::this_thread::sleep_for(milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  r.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(1500));
}

TEST_F(FakeApiTest, OversizedWatchEventIsAnErrorThenRelist) {
  RestOptions ro;
  ro.max_line_bytes = 4096;
  RestClient client(server.AdminConfig(), ro);
  Reflector r(client, PodSpec("n1"), FastOptions(), {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced() && r.stats().watches >= 1; }));
  json big = PodJson("ns", "big", "n1", "10.0.0.7", {{"app", "x"}});
  big["metadata"]["annotations"] = {{"blob", std::string(8192, 'a')}};
  ASSERT_TRUE(server.Apply({big}).ok());
  // The event is too large for a watch line; the relist (a list body may be larger) gets it.
  ASSERT_TRUE(WaitFor([&] { return PodNames(r) == std::vector<std::string>{"big"}; }));
  EXPECT_GE(r.stats().lists, 2u);
  EXPECT_NE(r.stats().last_error.find("larger than"), std::string::npos) << r.stats().last_error;
}

TEST_F(FakeApiTest, KubeconfigVariants) {
  ClusterConfig c;
  // Token.
  Status s = LoadKubeconfig(server.kubeconfig(), "", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  {
    RestClient client(c);
    HttpResult r = client.Get("/api/v1/pods");
    EXPECT_EQ(r.status, 200) << r.Describe();
  }
  // Client certificate.
  s = LoadKubeconfig(server.dir() + "/kubeconfig-cert", "", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  {
    RestClient client(c);
    EXPECT_EQ(client.Get("/api/v1/pods").status, 200);
  }
  bool via_cert = false;
  for (const auto& q : server.Requests()) via_cert |= q.value("via", "") == "cert";
  EXPECT_TRUE(via_cert);
  // insecure-skip-tls-verify without a CA.
  std::string kc = server.tmp().Write(
      "insecure.yaml",
      "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
      "clusters: [{name: c, cluster: {server: '" +
          server.url() +
          "', insecure-skip-tls-verify: true}}]\n"
          "users: [{name: u, user: {token: " +
          server.admin_token() + "}}]\n");
  s = LoadKubeconfig(kc, "", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  {
    RestClient client(c);
    EXPECT_EQ(client.Get("/api/v1/pods").status, 200);
  }
  // A CA that did not sign the server certificate: a clear TLS error, no response.
  std::string other = server.tmp().path() + "/other";
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                         "-subj /CN=other-ca -days 1 -keyout " +
                         other + ".key -out " + other + ".crt 2>/dev/null")
                            .c_str()),
            0);
  kc = server.tmp().Write(
      "badca.yaml",
      "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
      "clusters: [{name: c, cluster: {server: '" +
          server.url() + "', certificate-authority: " + other +
          ".crt}}]\nusers: [{name: u, user: {token: t}}]\n");
  s = LoadKubeconfig(kc, "", &c);
  ASSERT_TRUE(s.ok()) << s.message();
  {
    RestClient client(c);
    HttpResult r = client.Get("/api/v1/pods");
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.Describe().find("certificate"), std::string::npos) << r.Describe();
    EXPECT_EQ(r.Describe().find('\n'), std::string::npos);
  }
}

TEST_F(FakeApiTest, InClusterConfigAgainstTheServer) {
  // A pod's view: service-account files under a test root, env from the fake's URL.
  const std::string sa = "/var/run/secrets/kubernetes.io/serviceaccount/";
  ASSERT_TRUE(
      server.AddToken("sa-token-1", "system:serviceaccount:infertap:agent", {"system:masters"})
          .ok());
  server.tmp().Write("root" + sa + "token", "sa-token-1\n");
  server.tmp().Write("root" + sa + "ca.crt", testing::ReadFile(server.dir() + "/ca.crt") + "\n");
  server.tmp().Write("root" + sa + "namespace", "infertap");
  std::string hostport = server.url().substr(std::string("https://").size());
  std::string host = hostport.substr(0, hostport.rfind(':'));
  std::string port = hostport.substr(hostport.rfind(':') + 1);
  ClusterConfig c;
  Status st = LoadInClusterConfig(server.dir() + "/root", &c, [&](const char* n) -> const char* {
    if (std::string(n) == "KUBERNETES_SERVICE_HOST") return host.c_str();
    if (std::string(n) == "KUBERNETES_SERVICE_PORT") return port.c_str();
    return nullptr;
  });
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(c.default_namespace, "infertap");
  RestClient client(c);
  HttpResult r = client.Get("/api/v1/namespaces/infertap/pods");
  EXPECT_EQ(r.status, 200) << r.Describe();
  bool seen = false;
  for (const auto& q : server.Requests()) {
    seen |= q.value("user", "") == "system:serviceaccount:infertap:agent";
  }
  EXPECT_TRUE(seen);
}

TEST_F(FakeApiTest, NamespaceScopedWatch) {
  ASSERT_TRUE(server
                  .Apply({PodJson("mine", "a", "n1", "10.0.0.1", {{"app", "x"}}),
                          PodJson("theirs", "b", "n1", "10.0.0.2", {{"app", "x"}})})
                  .ok());
  RestClient client(server.AdminConfig());
  ResourceSpec spec = PodSpec("n1");
  spec.ns = "mine";
  Reflector r(client, spec, FastOptions(), {});
  r.Start();
  ASSERT_TRUE(WaitFor([&] { return r.synced(); }));
  EXPECT_EQ(PodNames(r), std::vector<std::string>{"a"});
  ASSERT_TRUE(server
                  .Apply({PodJson("theirs", "c", "n1", "10.0.0.3", {{"app", "x"}}),
                          PodJson("mine", "d", "n1", "10.0.0.4", {{"app", "x"}})})
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return PodNames(r).size() == 2; }));
  EXPECT_EQ(PodNames(r), (std::vector<std::string>{"a", "d"}));
  EXPECT_GE(server.CountRequests("/api/v1/namespaces/mine/pods"), 2);
  EXPECT_EQ(server.CountRequests("/api/v1/pods"), 0);
}

TEST_F(FakeApiTest, TokenFileRotation) {
  ASSERT_TRUE(server.AddToken("tokenAAAA", "alice", {"system:masters"}).ok());
  ASSERT_TRUE(server.AddToken("tokenBBBB", "bob", {"system:masters"}).ok());
  ClusterConfig c = server.AdminConfig();
  c.token.clear();
  c.token_file = server.tmp().Write("sa/token", "tokenAAAA\n");
  RestClient client(c);
  auto last_user = [&] {
    std::string u;
    for (const auto& q : server.Requests()) {
      if (q.value("path", "") == "/api/v1/pods") u = q.value("user", "");
    }
    return u;
  };
  ASSERT_EQ(client.Get("/api/v1/pods").status, 200);
  EXPECT_EQ(last_user(), "alice");
  // The kubelet rewrites the file: the next request uses the new token.
  server.tmp().Write("sa/token", "tokenBBBB\n");
  ASSERT_EQ(client.Get("/api/v1/pods").status, 200);
  EXPECT_EQ(last_user(), "bob");
  // A rotation the stat cannot see (same size, mtime put back): the old token is revoked, the
  // 401 makes the client re-read the file and retry.
  struct stat st {};
  ASSERT_EQ(::stat(c.token_file.c_str(), &st), 0);
  server.tmp().Write("sa/token", "tokenAAAA\n");
  ASSERT_EQ(client.Get("/api/v1/pods").status, 200);
  EXPECT_EQ(last_user(), "alice");
  ASSERT_EQ(::stat(c.token_file.c_str(), &st), 0);
  server.tmp().Write("sa/token", "tokenBBBB\n");
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(::utimensat(AT_FDCWD, c.token_file.c_str(), ts, 0), 0);
  ASSERT_TRUE(server.Control("DELETE", "/fake/tokens?token=tokenAAAA").ok());
  HttpResult r = client.Get("/api/v1/pods");
  EXPECT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(last_user(), "bob");
}

TEST_F(FakeApiTest, ClusterWatchTopologyFollowsObjectsAndMissingGroup) {
  server.Kill();
  Start({"--disable", "inference.networking.x-k8s.io/v1alpha2"});
  ASSERT_TRUE(server
                  .Apply({PodJson("a", "vllm-0", "n1", "10.0.0.1", {{"app", "vllm"}}),
                          PodJson("a", "vllm-1", "n2", "10.0.0.2", {{"app", "vllm"}}),
                          PoolV1Json("a", "llama", {{"app", "vllm"}}, {8000, 8001})})
                  .ok());
  RestClient client(server.AdminConfig());
  ClusterWatchOptions o;
  o.node = "n1";
  o.reflector = FastOptions();
  o.reflector.missing_retry = seconds(60);
  std::atomic<int> published{0};
  ClusterWatch w(client, o, [&](std::shared_ptr<const Topology>) { ++published; });
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(w.WaitSynced(milliseconds(5000)));
  auto t = w.Current();
  ASSERT_EQ(t->pools.size(), 1u);
  EXPECT_EQ(t->pools[0].label, "llama");
  ASSERT_EQ(t->pools[0].endpoints.size(), 2u);
  EXPECT_EQ(t->pools[0].endpoints[0].pod, "vllm-0");
  EXPECT_EQ(t->pools[0].endpoints[1].port, 8001);
  EXPECT_EQ(t->version, 1u);
  // The missing group: one list per resource, then quiet (retried every 60 s).
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(server.CountRequests("/apis/inference.networking.x-k8s.io/v1alpha2/inferencemodels"),
            1);
  for (const auto& [name, st] : w.Stats()) {
    if (name.find("x-k8s.io") != std::string::npos) {
      EXPECT_TRUE(st.missing) << name;
      EXPECT_TRUE(st.synced) << name;
    }
  }
  // A pod on this node is relabelled out of the pool: the endpoints follow.
  ASSERT_TRUE(server.Apply({PodJson("a", "vllm-0", "n1", "10.0.0.1", {{"app", "other"}})}).ok());
  ASSERT_TRUE(WaitFor([&] { return w.Current()->pools[0].endpoints.empty(); }));
  EXPECT_GE(w.Current()->version, 2u);
  // Same pool name in another namespace: both labels qualified.
  ASSERT_TRUE(server.Apply({PoolV1Json("b", "llama", {{"app", "vllm"}}, {8000})}).ok());
  ASSERT_TRUE(WaitFor([&] { return w.Current()->pools.size() == 2; }));
  EXPECT_EQ(w.Current()->pools[0].label, "a/llama");
  EXPECT_EQ(w.Current()->pools[1].label, "b/llama");
  EXPECT_EQ(published.load(), static_cast<int>(w.Current()->version));
  w.Stop();
}

// After an outage long enough that the reflectors' backoff has grown to seconds, the recovery
// probe makes them retry as soon as the server answers again: a change made right at the
// return is seen within about a second (docs/kubernetes.md#api-server-outages). A failure of
// one resource while the server answers keeps that reflector's own backoff (no wake loop).
TEST_F(FakeApiTest, ClusterWatchConvergesWithinASecondOfTheApiComingBack) {
  ASSERT_TRUE(server
                  .Apply({PodJson("a", "vllm-0", "n1", "10.0.0.1", {{"app", "vllm"}}),
                          PoolV1Json("a", "llama", {{"app", "vllm"}}, {8000})})
                  .ok());
  RestClient client(server.AdminConfig());
  ClusterWatchOptions o;
  o.node = "n1";  // production backoff: 0.5 s doubling to 30 s
  ClusterWatch w(client, o);
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(w.WaitSynced(milliseconds(5000)));
  ASSERT_EQ(w.Current()->pools.at(0).endpoints.size(), 1u);

  // 8 s of 500s: failures at ~0, 0.5, 1.5, 3.5, 5.6-7.5 s; the next retry of the backoff alone
  // would come 3.6-7.5 s after the return.
  ASSERT_TRUE(server.Control("POST", "/fake/close-watches?mode=abrupt").ok());
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=500").ok());
  std::this_thread::sleep_for(milliseconds(8000));
  const uint64_t probes_during_outage = w.probes();
  EXPECT_GE(probes_during_outage, 4u);
  EXPECT_LE(probes_during_outage, 25u) << "the probe asks ~2 times a second, no faster";
  ASSERT_TRUE(server.Control("POST", "/fake/start").ok());
  const auto back = std::chrono::steady_clock::now();
  ASSERT_TRUE(server.Apply({PodJson("a", "vllm-0", "n1", "10.0.0.1", {{"app", "other"}})}).ok());
  ASSERT_TRUE(WaitFor([&] { return w.Current()->pools.at(0).endpoints.empty(); }));
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - back);
  EXPECT_LE(took.count(), 1500) << "converged " << took.count() << " ms after the API came back";

  // The server answers, only the pods watch fails: no wake, the pods reflector backs off.
  ASSERT_TRUE(server.Control("POST", "/fake/fail?path=/api/v1/pods&code=500&count=0").ok());
  ASSERT_TRUE(server.Control("POST", "/fake/close-watches?mode=abrupt").ok());
  const int before = server.CountRequests("/api/v1/pods");
  std::this_thread::sleep_for(milliseconds(4000));
  const int pod_requests = server.CountRequests("/api/v1/pods") - before;
  // Backoff alone: ~0.5, 1, 2 s → at most 4-5 requests in 4 s (a wake loop would make 8+).
  EXPECT_LE(pod_requests, 5) << "the pods reflector was woken while the server answered";
  EXPECT_GE(pod_requests, 2) << [&] { auto d = server.Requests().dump(); return d.substr(d.size() > 2500 ? d.size() - 2500 : 0); }();
  w.Stop();
}

TEST_F(FakeApiTest, ClusterWatchModelMappingAndGroupAppearingLater) {
  server.Kill();
  Start({"--disable", "inference.networking.x-k8s.io/v1alpha2"});
  RestClient client(server.AdminConfig());
  ClusterWatchOptions o;
  o.node = "n1";
  o.reflector = FastOptions();  // missing CRDs retried every 1 s here
  ClusterWatch w(client, o);
  ASSERT_TRUE(w.Start().ok());
  ASSERT_TRUE(w.WaitSynced(milliseconds(5000)));
  EXPECT_TRUE(w.Current()->pools.empty());
  ASSERT_TRUE(
      server.Control("POST", "/fake/enable-group?gv=inference.networking.x-k8s.io/v1alpha2").ok());
  json pool = {{"apiVersion", "inference.networking.x-k8s.io/v1alpha2"},
               {"kind", "InferencePool"},
               {"metadata", {{"name", "old"}, {"namespace", "a"}}},
               {"spec", {{"selector", {{"app", "vllm"}}}, {"targetPortNumber", 9000}}}};
  json model = {{"apiVersion", "inference.networking.x-k8s.io/v1alpha2"},
                {"kind", "InferenceModel"},
                {"metadata", {{"name", "chat"}, {"namespace", "a"}}},
                {"spec",
                 {{"modelName", "chat"},
                  {"poolRef", {{"name", "old"}}},
                  {"targetModels", {{{"name", "llama-3-8b"}}}}}}};
  json rewrite = {{"apiVersion", "inference.networking.x-k8s.io/v1alpha2"},
                  {"kind", "InferenceModelRewrite"},
                  {"metadata", {{"name", "rw"}, {"namespace", "a"}}},
                  {"spec",
                   {{"poolRef", {{"name", "old"}}},
                    {"rules",
                     {{{"matches", {{{"model", {{"type", "Exact"}, {"value", "small"}}}}}},
                       {"targets", {{{"modelRewrite", "small-v1"}}}}}}}}}};
  ASSERT_TRUE(server
                  .Apply({pool, model, rewrite,
                          PodJson("a", "p0", "n1", "10.0.0.1",
                                  {{"app", "vllm"}, {kEngineTypeLabel, "vllm"}})})
                  .ok());
  ASSERT_TRUE(WaitFor(
      [&] {
        auto t = w.Current();
        return t->pools.size() == 1 && t->pools[0].endpoints.size() == 1 &&
               t->ModelName("a", "old", "small-v1") == "small" &&
               t->ModelName("a", "old", "llama-3-8b") == "chat";
      },
      milliseconds(6000)));
  auto t = w.Current();
  EXPECT_EQ(t->pools[0].api_version, "inference.networking.x-k8s.io/v1alpha2");
  EXPECT_EQ(t->pools[0].endpoints[0].port, 9000);
  EXPECT_EQ(t->pools[0].endpoints[0].engine, "vllm");
  EXPECT_EQ(t->ModelName("a", "old", "unmapped"), "unmapped");
}

TEST(ClusterWatchTest, NodeNameIsRequired) {
  ClusterConfig c;
  c.server = "https://127.0.0.1:1";
  RestClient client(c);
  ClusterWatch w(client, ClusterWatchOptions{});
  Status s = w.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("node name"), std::string::npos);
}

class AuthFakeApiTest : public FakeApiTest {
 protected:
  void SetUp() override {
    FakeApiTest::SetUp();
    ASSERT_TRUE(server.AddToken("scraper-token", "scraper", {"scrapers"}).ok());
    ASSERT_TRUE(server.AddToken("nobody-token", "nobody", {}).ok());
    json role = {{"apiVersion", "rbac.authorization.k8s.io/v1"},
                 {"kind", "ClusterRole"},
                 {"metadata", {{"name", "infertap-metrics-reader"}}},
                 {"rules", {{{"nonResourceURLs", {"/metrics"}}, {"verbs", {"get"}}}}}};
    json binding = {
        {"apiVersion", "rbac.authorization.k8s.io/v1"},
        {"kind", "ClusterRoleBinding"},
        {"metadata", {{"name", "scraper-metrics"}}},
        {"roleRef",
         {{"apiGroup", "rbac.authorization.k8s.io"},
          {"kind", "ClusterRole"},
          {"name", "infertap-metrics-reader"}}},
        {"subjects",
         {{{"kind", "User"}, {"apiGroup", "rbac.authorization.k8s.io"}, {"name", "scraper"}}}}};
    HttpResult r = server.Apply({role, binding});
    ASSERT_TRUE(r.ok()) << r.Describe();
    client = std::make_unique<RestClient>(server.AdminConfig());
    auth = std::make_unique<KubernetesAuthorizer>(std::make_shared<RestReviewApi>(*client));
    server.ClearRequests();
  }
  std::unique_ptr<RestClient> client;
  std::unique_ptr<KubernetesAuthorizer> auth;
};

using Kind = serve::AuthDecision::Kind;

TEST_F(AuthFakeApiTest, DecisionsAndCacheHits) {
  EXPECT_EQ(auth->Authorize("scraper-token", "GET", "/metrics").kind, Kind::kAllow);
  serve::AuthDecision d = auth->Authorize("nobody-token", "GET", "/metrics");
  EXPECT_EQ(d.kind, Kind::kForbidden) << d.message;
  EXPECT_EQ(auth->Authorize("not-a-token", "GET", "/metrics").kind, Kind::kUnauthenticated);
  EXPECT_EQ(auth->Authorize("scraper-token", "GET", "/other").kind, Kind::kForbidden);
  EXPECT_EQ(server.CountRequests("tokenreviews", "POST"), 3);
  EXPECT_EQ(server.CountRequests("subjectaccessreviews", "POST"), 3);
  // Cached: no new API calls.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(auth->Authorize("scraper-token", "GET", "/metrics").kind, Kind::kAllow);
    EXPECT_EQ(auth->Authorize("nobody-token", "GET", "/metrics").kind, Kind::kForbidden);
  }
  EXPECT_EQ(server.CountRequests("tokenreviews", "POST"), 3);
  EXPECT_EQ(server.CountRequests("subjectaccessreviews", "POST"), 3);
  EXPECT_EQ(auth->stats().token_cache_hits, 11u);  // 1 on the /other call + 10
}

TEST_F(AuthFakeApiTest, ApiStoppedIsA500NeverAnAllow) {
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=refuse").ok());
  serve::AuthDecision d = auth->Authorize("scraper-token", "GET", "/metrics");
  EXPECT_EQ(d.kind, Kind::kError);
  EXPECT_EQ(d.message.find("scraper-token"), std::string::npos);
  ASSERT_TRUE(server.Control("POST", "/fake/start").ok());
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=503").ok());
  EXPECT_EQ(auth->Authorize("scraper-token", "GET", "/metrics").kind, Kind::kError);
  ASSERT_TRUE(server.Control("POST", "/fake/start").ok());
  EXPECT_EQ(auth->Authorize("scraper-token", "GET", "/metrics").kind, Kind::kAllow);
}

TEST_F(AuthFakeApiTest, SingleFlightEightConcurrentScrapesOneTokenReview) {
  ASSERT_TRUE(server.Control("POST", "/fake/latency?ms=400").ok());
  std::vector<std::thread> ts;
  std::atomic<int> allowed{0};
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      if (auth->Authorize("scraper-token", "GET", "/metrics").kind == Kind::kAllow) ++allowed;
    });
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(server.Control("POST", "/fake/latency?ms=0").ok());
  EXPECT_EQ(allowed.load(), 8);
  EXPECT_EQ(server.CountRequests("tokenreviews", "POST"), 1);
  EXPECT_EQ(server.CountRequests("subjectaccessreviews", "POST"), 1);
}

}  // namespace
}  // namespace infertap::k8s
