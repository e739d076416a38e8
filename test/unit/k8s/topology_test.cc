#include "k8s/topology.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "k8s/backoff.hpp"

namespace infertap::k8s {
namespace {

using nlohmann::json;

PodInfo Pod(std::string ns, std::string name, std::string ip, Labels labels, bool ready = true) {
  PodInfo p;
  p.ns = std::move(ns);
  p.name = std::move(name);
  p.ip = std::move(ip);
  p.labels = std::move(labels);
  p.ready = ready;
  p.node = "n1";
  return p;
}

PoolInfo PoolV1(std::string ns, std::string name, Labels sel, std::vector<uint16_t> ports) {
  return {std::move(ns), std::move(name), "inference.networking.k8s.io/v1", std::move(sel),
          std::move(ports)};
}

TEST(Selector, MatchesSubsetOnlyAndEmptySelectsNothing) {
  EXPECT_TRUE(SelectorMatches({{"app", "vllm"}}, {{"app", "vllm"}, {"x", "y"}}));
  EXPECT_FALSE(SelectorMatches({{"app", "vllm"}, {"tier", "a"}}, {{"app", "vllm"}}));
  EXPECT_FALSE(SelectorMatches({{"app", "vllm"}}, {{"app", "sglang"}}));
  EXPECT_FALSE(SelectorMatches({}, {{"app", "vllm"}}));
}

TEST(Topology, MembershipRules) {
  TopologyInputs in;
  in.node = "n1";
  Labels l = {{"app", "vllm"}};
  in.pods = {
      Pod("ns1", "ok", "10.0.0.1", l),
      Pod("ns1", "notready", "10.0.0.2", l, false),
      Pod("ns1", "noip", "", l),
      Pod("ns2", "otherns", "10.0.0.4", l),
      Pod("ns1", "otherlabels", "10.0.0.5", {{"app", "tgi"}}),
      Pod("ns1", "terminating", "10.0.0.6", l),
      Pod("ns1", "othernode", "10.0.0.7", l),
  };
  in.pods[5].terminating = true;
  in.pods[6].node = "n2";
  in.pools = {PoolV1("ns1", "p", l, {8000})};
  Topology t = ComputeTopology(in);
  ASSERT_EQ(t.pools.size(), 1u);
  ASSERT_EQ(t.pools[0].endpoints.size(), 1u);
  const Endpoint& e = t.pools[0].endpoints[0];
  EXPECT_EQ(e.pod, "ok");
  EXPECT_EQ(e.ns, "ns1");
  EXPECT_EQ(e.ip, "10.0.0.1");
  EXPECT_EQ(e.port, 8000);
  EXPECT_EQ(e.engine, "auto");
  EXPECT_EQ(e.metrics_port, 8000);
  EXPECT_EQ(e.metrics_path, "/metrics");
  EXPECT_EQ(t.pools[0].label, "p");
  const Endpoint* found = nullptr;
  EXPECT_EQ(t.PoolForEndpoint("10.0.0.1", 8000, &found), &t.pools[0]);
  EXPECT_EQ(found, &e);
  EXPECT_EQ(t.PoolForEndpoint("10.0.0.1", 8001), nullptr);
}

TEST(Topology, SeveralPortsEngineLabelAndSortedEndpoints) {
  TopologyInputs in;
  in.pods = {Pod("ns", "b", "10.0.0.2", {{"app", "x"}, {kEngineTypeLabel, "sglang"}}),
             Pod("ns", "a", "10.0.0.1", {{"app", "x"}})};
  in.pods[0].uid = "uid-b";
  in.pods[1].uid = "uid-a";
  in.pools = {PoolV1("ns", "p", {{"app", "x"}}, {8001, 8000, 8001})};
  Topology t = ComputeTopology(in);
  ASSERT_EQ(t.pools.size(), 1u);
  EXPECT_EQ(t.pools[0].ports, (std::vector<uint16_t>{8000, 8001}));
  const auto& eps = t.pools[0].endpoints;
  ASSERT_EQ(eps.size(), 4u);
  EXPECT_EQ(eps[0].pod, "a");
  EXPECT_EQ(eps[0].port, 8000);
  EXPECT_EQ(eps[1].pod, "a");
  EXPECT_EQ(eps[1].port, 8001);
  EXPECT_EQ(eps[2].pod, "b");
  EXPECT_EQ(eps[2].engine, "sglang");
  EXPECT_EQ(eps[3].metrics_port, 8001);
  // Every endpoint carries its pod's UID (the cgroup backend finds the pod's cgroup by it).
  EXPECT_EQ(eps[1].uid, "uid-a");
  EXPECT_EQ(eps[2].uid, "uid-b");
}

TEST(Topology, SameNameInTwoNamespacesGetsQualifiedLabels) {
  TopologyInputs in;
  in.pods = {Pod("a", "pa", "10.0.0.1", {{"app", "x"}}),
             Pod("b", "pb", "10.0.0.2", {{"app", "x"}})};
  in.pools = {PoolV1("b", "llama", {{"app", "x"}}, {8000}),
              PoolV1("a", "llama", {{"app", "x"}}, {8000}),
              PoolV1("a", "solo", {{"app", "y"}}, {9000})};
  Topology t = ComputeTopology(in);
  ASSERT_EQ(t.pools.size(), 3u);
  EXPECT_EQ(t.pools[0].Key(), "a/llama");
  EXPECT_EQ(t.pools[0].label, "a/llama");
  EXPECT_EQ(t.pools[1].Key(), "a/solo");
  EXPECT_EQ(t.pools[1].label, "solo");
  EXPECT_EQ(t.pools[2].label, "b/llama");
  EXPECT_EQ(t.pools[0].endpoints.at(0).pod, "pa");
  EXPECT_EQ(t.pools[2].endpoints.at(0).pod, "pb");
  // Labels are unique even though names are not.
  EXPECT_NE(t.pools[0].label, t.pools[2].label);
}

TEST(Topology, V1WinsOverV1Alpha2AndOverlappingPoolsCountOnce) {
  TopologyInputs in;
  in.pods = {Pod("ns", "p1", "10.0.0.1", {{"app", "x"}, {"tier", "t"}})};
  PoolInfo alpha{"ns", "p", "inference.networking.x-k8s.io/v1alpha2", {{"app", "x"}}, {9000}};
  in.pools = {alpha, PoolV1("ns", "p", {{"app", "x"}}, {8000}),
              PoolV1("ns", "q", {{"tier", "t"}}, {8000})};
  Topology t = ComputeTopology(in);
  ASSERT_EQ(t.pools.size(), 2u);
  EXPECT_EQ(t.pools[0].api_version, "inference.networking.k8s.io/v1");
  EXPECT_EQ(t.pools[0].endpoints.size(), 1u);
  EXPECT_EQ(t.pools[0].endpoints[0].port, 8000);
  EXPECT_TRUE(t.pools[1].endpoints.empty());  // 10.0.0.1:8000 is already counted in ns/p
  ASSERT_EQ(t.notes.size(), 2u);
  EXPECT_NE(t.notes[0].find("using inference.networking.k8s.io/v1"), std::string::npos);
  EXPECT_NE(t.notes[1].find("counted in ns/p"), std::string::npos);
}

TEST(Topology, ModelMappingFromInferenceModelRewriteAndAliases) {
  TopologyInputs in;
  in.pools = {PoolV1("ns", "p", {{"app", "x"}}, {8000}), PoolV1("ns", "q", {{"app", "y"}}, {8000})};
  in.models = {
      {"ns", "m1", "p", "chat", {"llama-3-8b", "llama-3-8b-lora"}},
      {"ns", "m2", "p", "plain", {}},                    // served under its own name
      {"ns", "m3", "p", "other-chat", {"shared-base"}},  // + m4 → ambiguous
      {"ns", "m4", "p", "chat2", {"shared-base"}},
      {"ns", "m5", "q", "q-only", {"llama-3-8b"}},  // another pool: independent
      {"other", "m6", "p", "wrong-ns", {"zzz"}},    // other namespace's pool p
  };
  RewriteInfo rw;
  rw.ns = "ns";
  rw.name = "r";
  rw.pool = "p";
  rw.rules = {
      {{"small-lora"}, 0, {"small-lora-v1", "small-lora-v2"}},
      {{}, 0, {"fallback"}},           // catch-all: ambiguous
      {{"a", "b"}, 0, {"ab-target"}},  // two names: ambiguous
      {{"chat"}, 0, {"llama-3-8b"}},   // same client name again: still unambiguous
  };
  in.rewrites = {rw};
  in.aliases = {{"aliased", "pretty"}, {"llama-3-8b", "ignored-crd-wins"}};
  Topology t = ComputeTopology(in);
  EXPECT_EQ(t.ModelName("ns", "p", "llama-3-8b"), "chat");
  EXPECT_EQ(t.ModelName("ns", "p", "llama-3-8b-lora"), "chat");
  EXPECT_EQ(t.ModelName("ns", "p", "plain"), "plain");
  EXPECT_EQ(t.ModelName("ns", "p", "shared-base"), "shared-base");
  EXPECT_EQ(t.ModelName("ns", "p", "small-lora-v1"), "small-lora");
  EXPECT_EQ(t.ModelName("ns", "p", "small-lora-v2"), "small-lora");
  EXPECT_EQ(t.ModelName("ns", "p", "fallback"), "fallback");
  EXPECT_EQ(t.ModelName("ns", "p", "ab-target"), "ab-target");
  EXPECT_EQ(t.ModelName("ns", "p", "aliased"), "pretty");
  EXPECT_EQ(t.ModelName("ns", "p", "unknown"), "unknown");
  EXPECT_EQ(t.ModelName("ns", "p", "zzz"), "zzz");
  EXPECT_EQ(t.ModelName("ns", "q", "llama-3-8b"), "q-only");
  EXPECT_EQ(t.ModelName("ns", "q", "aliased"), "pretty");
  EXPECT_EQ(t.ModelName("ns", "nopool", "llama-3-8b"), "llama-3-8b");
  const auto& amb = t.FindPool("ns", "p")->models.ambiguous;
  EXPECT_EQ(amb, (std::set<std::string>{"ab-target", "fallback", "shared-base"}));
}

TEST(Topology, SameContentIgnoresVersion) {
  TopologyInputs in;
  in.pools = {PoolV1("ns", "p", {{"app", "x"}}, {8000})};
  Topology a = ComputeTopology(in), b = ComputeTopology(in);
  b.version = 7;
  EXPECT_TRUE(a.SameContent(b));
  in.pods = {Pod("ns", "x", "10.0.0.1", {{"app", "x"}})};
  EXPECT_FALSE(a.SameContent(ComputeTopology(in)));
}

TEST(Decode, PodKeepsOnlyWhatMatters) {
  json j = json::parse(R"({"metadata":{"name":"p","namespace":"ns","uid":"u1",
    "labels":{"app":"vllm","n":1},"managedFields":[{"big":"x"}]},
    "spec":{"nodeName":"n1","containers":[{"name":"c"}]},
    "status":{"podIP":"10.1.2.3","conditions":[{"type":"PodScheduled","status":"True"},
      {"type":"Ready","status":"True"}]}})");
  Object o;
  std::string err;
  ASSERT_TRUE(DecodeObject(Kind::kPod, j, &o, &err));
  const auto& p = std::get<PodInfo>(o);
  EXPECT_EQ(p.name, "p");
  EXPECT_EQ(p.uid, "u1");
  EXPECT_EQ(p.node, "n1");
  EXPECT_EQ(p.ip, "10.1.2.3");
  EXPECT_EQ(p.labels, (Labels{{"app", "vllm"}}));  // non-string value dropped
  EXPECT_TRUE(p.ready);
  EXPECT_FALSE(p.terminating);
  EXPECT_EQ(ObjectKey(o), "ns/p");
  j["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  j["status"]["conditions"][1]["status"] = "False";
  ASSERT_TRUE(DecodeObject(Kind::kPod, j, &o, &err));
  EXPECT_TRUE(std::get<PodInfo>(o).terminating);
  EXPECT_FALSE(std::get<PodInfo>(o).ready);
  EXPECT_FALSE(DecodeObject(Kind::kPod, json::parse(R"({"metadata":{"name":"x"}})"), &o, &err));
  EXPECT_FALSE(DecodeObject(Kind::kPod, json::parse("[1,2]"), &o, &err));
}

TEST(Decode, PoolsBothVersionsModelsRewrites) {
  Object o;
  std::string err;
  ASSERT_TRUE(DecodeObject(Kind::kPoolV1, json::parse(R"({"metadata":{"name":"p","namespace":"n"},
    "spec":{"selector":{"matchLabels":{"app":"x"}},"targetPorts":[{"number":8000},{"number":8001},
    {"number":70000},{"number":"x"}]}})"),
                           &o, &err));
  auto pool = std::get<PoolInfo>(o);
  EXPECT_EQ(pool.selector, (Labels{{"app", "x"}}));
  EXPECT_EQ(pool.ports, (std::vector<uint16_t>{8000, 8001}));
  ASSERT_TRUE(DecodeObject(Kind::kPoolV1Alpha2,
                           json::parse(R"({"metadata":{"name":"p","namespace":"n"},
    "spec":{"selector":{"app":"y"},"targetPortNumber":9000}})"),
                           &o, &err));
  pool = std::get<PoolInfo>(o);
  EXPECT_EQ(pool.api_version, "inference.networking.x-k8s.io/v1alpha2");
  EXPECT_EQ(pool.selector, (Labels{{"app", "y"}}));
  EXPECT_EQ(pool.ports, (std::vector<uint16_t>{9000}));
  ASSERT_TRUE(DecodeObject(Kind::kModel, json::parse(R"({"metadata":{"name":"m","namespace":"n"},
    "spec":{"modelName":"chat","poolRef":{"name":"p"},"targetModels":[{"name":"t1","weight":50},
    {"name":"t2"}]}})"),
                           &o, &err));
  auto m = std::get<ModelInfo>(o);
  EXPECT_EQ(m.pool, "p");
  EXPECT_EQ(m.model_name, "chat");
  EXPECT_EQ(m.targets, (std::vector<std::string>{"t1", "t2"}));
  ASSERT_TRUE(DecodeObject(Kind::kRewrite, json::parse(R"({"metadata":{"name":"r","namespace":"n"},
    "spec":{"poolRef":{"group":"inference.networking.k8s.io","name":"p"},"rules":[
      {"matches":[{"model":{"type":"Exact","value":"small"}}],"targets":[{"modelRewrite":"small-v1","weight":1}]},
      {"matches":[{"model":{"value":"b"}},{"model":{"type":"Prefix","value":"c"}}],"targets":[]},
      {"targets":[{"modelRewrite":"default"}]}]}})"),
                           &o, &err));
  auto r = std::get<RewriteInfo>(o);
  EXPECT_EQ(r.pool, "p");
  ASSERT_EQ(r.rules.size(), 3u);
  EXPECT_EQ(r.rules[0].exact_matches, (std::vector<std::string>{"small"}));
  EXPECT_EQ(r.rules[0].targets, (std::vector<std::string>{"small-v1"}));
  EXPECT_EQ(r.rules[1].exact_matches, (std::vector<std::string>{"b"}));
  EXPECT_EQ(r.rules[1].non_exact_matches, 1u);
  EXPECT_TRUE(r.rules[2].exact_matches.empty());
  EXPECT_EQ(r.rules[2].targets, (std::vector<std::string>{"default"}));
}

TEST(BackoffTest, GrowsToCapWithJitterAndResets) {
  Backoff b(Backoff::ms(500), Backoff::ms(30000), 0.25, 42);
  double expect = 500;
  for (int i = 0; i < 12; ++i) {
    auto d = b.Next().count();
    double base = std::min(expect, 30000.0);
    EXPECT_GE(d, static_cast<long>(base * 0.75) - 1) << i;
    EXPECT_LE(d, static_cast<long>(base)) << i;
    expect *= 2;
  }
  EXPECT_GE(b.Next().count(), 22499);  // stays at the cap
  b.Reset();
  EXPECT_LE(b.Next().count(), 500);
  // Jitter: two seeds do not give the same sequence.
  Backoff x(Backoff::ms(500), Backoff::ms(30000), 0.25, 1),
      y(Backoff::ms(500), Backoff::ms(30000), 0.25, 2);
  bool differ = false;
  for (int i = 0; i < 5; ++i) differ |= x.Next() != y.Next();
  EXPECT_TRUE(differ);
}

}  // namespace
}  // namespace infertap::k8s
