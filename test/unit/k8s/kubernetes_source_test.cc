// The Kubernetes TopologySource (agent/topology/kubernetes_source.hpp): the translation of a
// k8s::Topology, and the source against the fake API server (test/fake_apiserver) with pods
// created through the REST API, made Ready with a status patch, relabelled out of the pool and
// deleted.
#include "agent/topology/kubernetes_source.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "test/unit/k8s/fake_server.hpp"

namespace infertap::topology {
namespace {

using k8s::testing::FakeApiServer;
using k8s::testing::PoolV1Json;
using k8s::testing::WaitFor;
using nlohmann::json;
using std::chrono::milliseconds;

TEST(FromKubernetesTest, TranslatesPoolsEndpointsAndModels) {
  k8s::Topology k;
  k8s::Pool p;
  p.ns = "a";
  p.name = "llama";
  p.label = "a/llama";
  p.api_version = "inference.networking.k8s.io/v1";
  p.endpoints.push_back({"vllm-0", "a", "10.0.0.1", 8000, "vllm", 0, "/metrics"});
  p.endpoints.push_back({"vllm-0", "a", "10.0.0.1", 8001, "bogus", 9100, "/m"});
  p.endpoints.push_back({"bad", "a", "not-an-ip", 8000, "auto", 0, "/metrics"});
  p.endpoints[0].uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
  p.models.target_to_model = {{"llama-3-8b", "chat"}, {"twice", "twice"}};
  p.models.ambiguous = {"twice"};
  k.pools.push_back(p);
  k.notes = {"a note"};

  Topology t = FromKubernetes(k, {{"raw", "pretty"}});
  EXPECT_EQ(t.source, "kubernetes");
  ASSERT_EQ(t.pools.size(), 1u);
  const TopologyPool& tp = t.pools[0];
  EXPECT_EQ(tp.ns, "a");
  EXPECT_EQ(tp.name, "llama");
  EXPECT_EQ(tp.label, "a/llama");
  EXPECT_EQ(tp.origin, "kubernetes InferencePool a/llama (inference.networking.k8s.io/v1)");
  ASSERT_EQ(tp.endpoints.size(), 2u);  // the bad IP is skipped, with a note
  EXPECT_EQ(tp.endpoints[0].address.ToString(), "10.0.0.1:8000");
  EXPECT_EQ(tp.endpoints[0].pod, "vllm-0");
  EXPECT_EQ(tp.endpoints[0].ns, "a");
  EXPECT_EQ(tp.endpoints[0].pod_uid, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  EXPECT_EQ(tp.endpoints[0].engine, poller::Engine::kVllm);
  EXPECT_EQ(tp.endpoints[0].metrics_address, "10.0.0.1:8000");
  EXPECT_EQ(tp.endpoints[0].origin, "kubernetes pod a/vllm-0");
  EXPECT_EQ(tp.endpoints[1].engine, poller::Engine::kAuto);  // unknown engine-type → auto
  EXPECT_EQ(tp.endpoints[1].metrics_address, "10.0.0.1:9100");
  EXPECT_EQ(tp.endpoints[1].metrics_path, "/m");
  ASSERT_EQ(t.notes.size(), 3u);
  EXPECT_EQ(t.notes[0], "a note");
  EXPECT_NE(t.notes[1].find("bogus"), std::string::npos);
  EXPECT_NE(t.notes[2].find("not-an-ip"), std::string::npos);
  EXPECT_EQ(t.ModelNameFor(0, "llama-3-8b"), "chat");
  EXPECT_EQ(t.ModelNameFor(0, "twice"), "twice");
  EXPECT_TRUE(tp.models.at("twice").ambiguous);
  EXPECT_EQ(t.ModelNameFor(0, "raw"), "pretty");  // --model-alias fallback
  EXPECT_EQ(t.ModelNameFor(0, "other"), "other");
}

TEST(FromKubernetesTest, Ipv6PodIp) {
  k8s::Topology k;
  k8s::Pool p;
  p.ns = "a";
  p.name = "v6";
  p.label = "v6";
  p.endpoints.push_back({"pod", "a", "fd00::5", 8000, "auto", 0, "/metrics"});
  k.pools.push_back(p);
  Topology t = FromKubernetes(k, {});
  ASSERT_EQ(t.pools[0].endpoints.size(), 1u);
  EXPECT_EQ(t.pools[0].endpoints[0].address.ToString(), "[fd00::5]:8000");
  EXPECT_EQ(t.pools[0].endpoints[0].metrics_address, "[fd00::5]:8000");
}

TEST(ParseModelAliasesTest, GoodAndBad) {
  std::map<std::string, std::string> m;
  EXPECT_TRUE(ParseModelAliases({"a=b", "c=d=e"}, &m).ok());
  EXPECT_EQ(m.at("a"), "b");
  EXPECT_EQ(m.at("c"), "d=e");
  EXPECT_FALSE(ParseModelAliases({"=x"}, &m).ok());
  EXPECT_FALSE(ParseModelAliases({"x="}, &m).ok());
  EXPECT_FALSE(ParseModelAliases({"x"}, &m).ok());
}

json PendingPod(const std::string& ns, const std::string& name, const std::string& node,
                const json& labels) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec", {{"nodeName", node}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}}};
}

class Collected {
 public:
  void Add(std::shared_ptr<const Topology> t) {
    std::lock_guard lock(mu_);
    all_.push_back(std::move(t));
  }
  std::shared_ptr<const Topology> Last() const {
    std::lock_guard lock(mu_);
    return all_.empty() ? nullptr : all_.back();
  }
  std::vector<std::shared_ptr<const Topology>> All() const {
    std::lock_guard lock(mu_);
    return all_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const Topology>> all_;
};

// The endpoints of the pool ns/name in `t` as "pod@ip:port", or {"<no pool>"}.
std::vector<std::string> EndpointsOf(const std::shared_ptr<const Topology>& t,
                                     const std::string& ns, const std::string& name) {
  if (!t) return {"<none>"};
  for (const auto& p : t->pools)
    if (p.ns == ns && p.name == name) {
      std::vector<std::string> out;
      for (const auto& e : p.endpoints) out.push_back(e.pod + "@" + e.address.ToString());
      return out;
    }
  return {"<no pool>"};
}

TEST(KubernetesSourceTest, FollowsPodLifecycleOnTheFakeApiServer) {
  FakeApiServer server;
  std::string err;
  ASSERT_TRUE(server.Start({}, &err)) << err;
  k8s::RestClient admin(server.AdminConfig());
  // A pool, an InferenceModel for it, and two pods created Pending through the API: one on this
  // node (n1), one on another node.
  ASSERT_TRUE(server.Apply({PoolV1Json("ml", "llama", {{"app", "vllm"}}, {8000})}).ok());
  json model = {{"apiVersion", "inference.networking.x-k8s.io/v1alpha2"},
                {"kind", "InferenceModel"},
                {"metadata", {{"name", "chat"}, {"namespace", "ml"}}},
                {"spec",
                 {{"modelName", "chat"},
                  {"poolRef", {{"name", "llama"}}},
                  {"targetModels", {{{"name", "llama-3-8b"}}}}}}};
  ASSERT_TRUE(server.Apply({model}).ok());
  for (auto [name, node] : {std::pair{"vllm-0", "n1"}, std::pair{"vllm-9", "n2"}}) {
    std::string body =
        PendingPod("ml", name, node, {{"app", "vllm"}, {k8s::kEngineTypeLabel, "vllm"}}).dump();
    k8s::HttpResult r = admin.PostJson("/api/v1/namespaces/ml/pods", body);
    ASSERT_EQ(r.status, 201) << r.Describe();
  }

  // As `infertap run --kubeconfig FILE --node n1` does.
  k8s::ClusterConfig cfg;
  ASSERT_TRUE(k8s::LoadKubeconfig(server.kubeconfig(), "", &cfg).ok());
  k8s::RestClient client(cfg);
  k8s::ClusterWatchOptions o;
  o.node = "n1";
  o.aliases = {{"raw-model", "pretty"}};
  o.reflector.backoff_initial = milliseconds(200);
  o.reflector.backoff_cap = milliseconds(1000);
  KubernetesTopologySource source(client, o);
  EXPECT_EQ(source.Name(), "kubernetes");
  EXPECT_EQ(source.Current(), nullptr);
  Collected got;
  ASSERT_TRUE(source.Start([&](std::shared_ptr<const Topology> t) { got.Add(t); }).ok());

  // First topology: the pool, no endpoint (the pod is not Ready).
  ASSERT_TRUE(WaitFor([&] { return got.Last() != nullptr; }));
  EXPECT_EQ(got.Last()->source, "kubernetes");
  EXPECT_EQ(got.Last()->version, 1u);
  EXPECT_EQ(EndpointsOf(got.Last(), "ml", "llama"), std::vector<std::string>{});

  // Ready via the status subresource: the endpoint appears, with model mapping and engine.
  auto make_ready = [&](const std::string& name, const std::string& ip) {
    std::string patch = json{{"status",
                              {{"phase", "Running"},
                               {"podIP", ip},
                               {"conditions", {{{"type", "Ready"}, {"status", "True"}}}}}}}
                            .dump();
    k8s::HttpResult r = admin.Request("PATCH", "/api/v1/namespaces/ml/pods/" + name + "/status",
                                      &patch, "application/merge-patch+json");
    ASSERT_TRUE(r.ok()) << r.Describe();
  };
  make_ready("vllm-0", "10.1.0.5");
  make_ready("vllm-9", "10.1.0.9");  // other node: never ours
  ASSERT_TRUE(WaitFor([&] {
    return EndpointsOf(got.Last(), "ml", "llama") ==
           std::vector<std::string>{"vllm-0@10.1.0.5:8000"};
  })) << EndpointsOf(got.Last(), "ml", "llama").size();
  {
    auto t = got.Last();
    const TopologyPool& p = t->pools.at(0);
    EXPECT_EQ(p.label, "llama");
    EXPECT_EQ(p.endpoints[0].ns, "ml");
    EXPECT_EQ(p.endpoints[0].engine, poller::Engine::kVllm);
    EXPECT_EQ(p.endpoints[0].metrics_address, "10.1.0.5:8000");
    EXPECT_EQ(t->ModelNameFor(0, "llama-3-8b"), "chat");
    EXPECT_EQ(t->ModelNameFor(0, "raw-model"), "pretty");
    EXPECT_EQ(t->ModelNameFor(0, "x"), "x");
    EXPECT_EQ(source.Current(), t);
  }

  // Relabelled out of the pool: the endpoint goes.
  std::string relabel = json{{"metadata", {{"labels", {{"app", "other"}}}}}}.dump();
  k8s::HttpResult r = admin.Request("PATCH", "/api/v1/namespaces/ml/pods/vllm-0", &relabel,
                                    "application/merge-patch+json");
  ASSERT_TRUE(r.ok()) << r.Describe();
  ASSERT_TRUE(WaitFor([&] { return EndpointsOf(got.Last(), "ml", "llama").empty(); }));

  // Back into the pool, then deleted: appears, then goes.
  std::string back = json{{"metadata", {{"labels", {{"app", "vllm"}}}}}}.dump();
  r = admin.Request("PATCH", "/api/v1/namespaces/ml/pods/vllm-0", &back,
                    "application/merge-patch+json");
  ASSERT_TRUE(r.ok()) << r.Describe();
  ASSERT_TRUE(WaitFor([&] { return EndpointsOf(got.Last(), "ml", "llama").size() == 1; }));
  r = admin.Request("DELETE", "/api/v1/namespaces/ml/pods/vllm-0", nullptr);
  ASSERT_TRUE(r.ok()) << r.Describe();
  ASSERT_TRUE(WaitFor([&] { return EndpointsOf(got.Last(), "ml", "llama").empty(); }));

  // Versions are increasing and every snapshot differs from the one before.
  auto all = got.All();
  for (size_t i = 1; i < all.size(); ++i) {
    EXPECT_GT(all[i]->version, all[i - 1]->version);
    EXPECT_FALSE(all[i]->SameContent(*all[i - 1])) << i;
  }
  // Pool deleted: the topology has no pool.
  ASSERT_TRUE(
      admin
          .Request("DELETE",
                   "/apis/inference.networking.k8s.io/v1/namespaces/ml/inferencepools/llama",
                   nullptr)
          .ok());
  ASSERT_TRUE(WaitFor([&] { return got.Last()->pools.empty(); }));

  // The API goes away: the last topology stays current.
  const auto last = got.Last();
  ASSERT_TRUE(server.Control("POST", "/fake/stop?mode=refuse").ok());
  std::this_thread::sleep_for(milliseconds(700));
  EXPECT_EQ(source.Current(), last);
  source.Stop();
}

TEST(KubernetesSourceTest, NoNodeNameIsAnError) {
  k8s::ClusterConfig c;
  c.server = "https://127.0.0.1:1";
  k8s::RestClient client(c);
  KubernetesTopologySource source(client, k8s::ClusterWatchOptions{});
  Status s = source.Start([](std::shared_ptr<const Topology>) {});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("node"), std::string::npos);
}

}  // namespace
}  // namespace infertap::topology
