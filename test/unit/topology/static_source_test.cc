// The static topology source (agent/topology/static_source.hpp): flags and --config give the
// topology `infertap run` has always traced (docs/attribution.md, docs/cli.md).
#include "agent/topology/static_source.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "agent/core/agent.hpp"

namespace infertap::topology {
namespace {

std::string WriteTemp(const std::string& content) {
  char path[] = "/tmp/infertap-topo-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, content.data(), content.size()), ssize_t(content.size()));
  close(fd);
  return path;
}

TEST(StaticTopology, DefaultIsPort8000OnEveryAddressInPoolDefault) {
  Topology t;
  ASSERT_TRUE(BuildStaticTopology({}, &t));
  ASSERT_EQ(t.pools.size(), 1u);
  const TopologyPool& p = t.pools[0];
  EXPECT_EQ(p.name, "default");
  EXPECT_EQ(p.label, "default");
  EXPECT_EQ(p.ns, "");
  EXPECT_EQ(p.origin, "flags (default target)");
  ASSERT_EQ(p.endpoints.size(), 1u);
  EXPECT_TRUE(p.endpoints[0].address.is_wildcard());
  EXPECT_EQ(p.endpoints[0].address.port, 8000);
  EXPECT_EQ(p.endpoints[0].pod, "127.0.0.1:8000");
  EXPECT_EQ(p.endpoints[0].metrics_address, "127.0.0.1:8000");
  EXPECT_EQ(p.endpoints[0].metrics_path, "/metrics");
  EXPECT_EQ(p.endpoints[0].engine, poller::Engine::kAuto);
}

TEST(StaticTopology, FlagsAndConfigGiveTheSameTopology) {
  StaticTopologyOptions flags;
  flags.targets = {"10.0.0.5:8000", "[::1]:8001"};
  flags.pool = "p1";
  flags.engine = "vllm";
  flags.metrics_path = "/metrics";
  Topology a;
  ASSERT_TRUE(BuildStaticTopology(flags, &a));

  const std::string cfg = WriteTemp(
      R"({"pools":[{"name":"p1","targets":["10.0.0.5:8000","[::1]:8001"],"engine":"vllm"}]})");
  StaticTopologyOptions file;
  file.config = cfg;
  Topology b;
  ASSERT_TRUE(BuildStaticTopology(file, &b));
  std::remove(cfg.c_str());

  // Equal except for where it came from.
  ASSERT_EQ(a.pools.size(), 1u);
  ASSERT_EQ(b.pools.size(), 1u);
  EXPECT_EQ(a.pools[0].origin, "flags");
  EXPECT_EQ(b.pools[0].origin, "config " + cfg);
  for (Topology* t : {&a, &b}) {
    t->pools[0].origin.clear();
    for (auto& e : t->pools[0].endpoints) e.origin.clear();
  }
  EXPECT_TRUE(a.SameContent(b));
  EXPECT_EQ(a.pools[0].endpoints[1].pod, "[::1]:8001");
  EXPECT_EQ(a.pools[0].endpoints[0].engine, poller::Engine::kVllm);

  // And the agent derives what RunAgent used to: traced endpoints in order, pool index per pool,
  // attribution pod = scrape address, poller targets.
  TopologyTables d = DeriveTables(b, IT_ROLE_SERVER);
  ASSERT_EQ(d.traced.size(), 2u);
  EXPECT_EQ(d.traced[0].endpoint.ToString(), "10.0.0.5:8000");
  EXPECT_EQ(d.traced[1].endpoint.ToString(), "[::1]:8001");
  ASSERT_EQ(d.attribution->endpoints.size(), 2u);
  EXPECT_EQ(d.attribution->endpoints[0].pool, "p1");
  EXPECT_EQ(d.attribution->endpoints[0].pod, "10.0.0.5:8000");
  ASSERT_EQ(d.targets.size(), 2u);
  EXPECT_EQ(d.targets[0], (poller::PoolTarget{"p1", "10.0.0.5:8000", "10.0.0.5:8000", "/metrics",
                                              poller::Engine::kVllm}));
}

TEST(StaticTopology, ConfigWithSeveralPoolsAndAliases) {
  const std::string cfg = WriteTemp(R"({"pools":[
    {"name":"p1","targets":[":8000"],"metrics_path":"/m","model_alias":{"t":"m1"}},
    {"name":"p2","targets":["10.0.0.7:9000"],"engine":"sglang","model_alias":{"t":"m2"}}]})");
  StaticTopologyOptions o;
  o.config = cfg;
  o.model_alias = {"g=global", "t=flag"};
  Topology t;
  ASSERT_TRUE(BuildStaticTopology(o, &t));
  std::remove(cfg.c_str());
  ASSERT_EQ(t.pools.size(), 2u);
  EXPECT_EQ(t.pools[0].endpoints[0].metrics_path, "/m");
  EXPECT_EQ(t.pools[0].endpoints[0].engine, poller::Engine::kAuto);
  EXPECT_EQ(t.pools[1].endpoints[0].engine, poller::Engine::kSglang);
  EXPECT_EQ(t.pools[1].endpoints[0].metrics_path, "/metrics");
  // A pool's own alias wins over the flag; the flag applies where the pool has none.
  EXPECT_EQ(t.ModelNameFor(0, "t"), "m1");
  EXPECT_EQ(t.ModelNameFor(1, "t"), "m2");
  EXPECT_EQ(t.ModelNameFor(0, "g"), "global");
  EXPECT_EQ(t.ModelNameFor(1, "other"), "other");
  EXPECT_EQ(t.models.at("g").origin, "flags");
  EXPECT_EQ(t.pools[0].models.at("t").origin, "config " + cfg);
}

TEST(StaticTopology, AmbiguousAliasMapsTheTargetToItself) {
  StaticTopologyOptions o;
  o.model_alias = {"t=a", "t=b", "u=x", "u=x"};
  Topology t;
  ASSERT_TRUE(BuildStaticTopology(o, &t));
  EXPECT_EQ(t.ModelNameFor(0, "t"), "t");
  EXPECT_TRUE(t.models.at("t").ambiguous);
  EXPECT_EQ(t.ModelNameFor(0, "u"), "x");
  EXPECT_FALSE(t.models.at("u").ambiguous);
}

TEST(StaticTopology, ErrorsAreTheFlagErrorsOfRun) {
  auto err = [](StaticTopologyOptions o) {
    Topology t;
    Status s = BuildStaticTopology(o, &t);
    EXPECT_FALSE(s);
    return s.message();
  };
  StaticTopologyOptions o;
  o.config = "/nonexistent.json";
  EXPECT_EQ(err(o), "cannot read --config /nonexistent.json");
  o.targets = {"1.2.3.4:5"};
  EXPECT_EQ(err(o), "--config and --target are exclusive (put the targets in the config)");
  StaticTopologyOptions e;
  e.engine = "nope";
  EXPECT_EQ(err(e), "unknown --engine 'nope'");
  StaticTopologyOptions p;
  p.pool = "";
  EXPECT_EQ(err(p), "--pool must not be empty");
  StaticTopologyOptions a;
  a.model_alias = {"novalue="};
  EXPECT_EQ(err(a), "invalid --model-alias 'novalue=': expected TARGET=MODEL");
  StaticTopologyOptions bad;
  bad.targets = {"host.example:80"};
  EXPECT_FALSE(err(bad).empty());
  const std::string cfg =
      WriteTemp(R"({"pools":[{"name":"x","targets":["1.2.3.4:1"],"engine":"zz"}]})");
  StaticTopologyOptions c;
  c.config = cfg;
  EXPECT_EQ(err(c), "--config " + cfg + ": pool x: unknown engine");
  std::remove(cfg.c_str());
}

TEST(StaticTopology, SourceDeliversOnceOnStart) {
  Status st;
  auto src = StaticTopologySource::Create({}, &st);
  ASSERT_TRUE(src) << st.message();
  int calls = 0;
  std::shared_ptr<const Topology> got;
  ASSERT_TRUE(src->Start([&](std::shared_ptr<const Topology> t) {
    ++calls;
    got = t;
  }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got, src->Current());
  EXPECT_EQ(got->source, "static");
  src->Stop();
}

TEST(PushTopology, VersionsIncreaseAndStartReplaysTheCurrent) {
  PushTopologySource src("test");
  Topology t;
  src.Publish(t);
  std::vector<uint64_t> versions;
  ASSERT_TRUE(
      src.Start([&](std::shared_ptr<const Topology> x) { versions.push_back(x->version); }));
  src.Publish(t);
  src.Stop();
  src.Publish(t);
  EXPECT_EQ(versions, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(src.Current()->version, 3u);
  EXPECT_EQ(src.Current()->source, "test");
}

}  // namespace
}  // namespace infertap::topology
