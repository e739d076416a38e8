// The pipeline's attribution snapshot (agent/pipeline/pipeline.hpp) and the tables the agent
// derives from a topology (agent/core/agent.hpp): a connection keeps the attribution it had at
// open after the table changes; new connections follow the new table.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/core/agent.hpp"
#include "agent/pipeline/pipeline.hpp"

namespace infertap {
namespace {

Endpoint Ep(const std::string& s) {
  std::string err;
  auto e = ParseEndpoint(s, &err);
  EXPECT_TRUE(e) << err;
  return *e;
}

class Collect : public RecordListener {
 public:
  std::vector<RequestRecord> records;
  void OnRecord(const RequestRecord& r) override { records.push_back(r); }
};

ConnInfo Conn(uint64_t id, const std::string& server) {
  ConnInfo c;
  c.conn_id = id;
  c.tgid = 1;
  c.fd = uint32_t(id);
  c.role = Role::kServer;
  c.family = 2;
  c.local = Ep(server);
  c.remote = Ep("10.9.9.9:40000");
  c.addresses_known = true;
  return c;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The pipeline's consumers held the way a producer (tracker, pcap flows) holds them: one
// Connection per id, opened at first use, gone at close.
class Conns {
 public:
  explicit Conns(Pipeline& p) : p_(p) {}
  void Data(const ConnInfo& c, Direction d, uint64_t ts, std::span<const uint8_t> bytes) {
    Connection& k = Get(c);
    k.Offer(d, k.stream(d).next_pos(), bytes.size(), ts, bytes);
  }
  void Close(const ConnInfo& c, uint64_t ts) {
    Get(c).Close(ts, nullptr);
    conns_.erase(c.conn_id);
  }
  Connection& Get(const ConnInfo& c) {
    auto it = conns_.find(c.conn_id);
    if (it == conns_.end()) {
      it = conns_
               .emplace(c.conn_id,
                        std::make_unique<Connection>(c, StreamReassembler::Limits{}, p_, totals_))
               .first;
      it->second->Opened();
    }
    return *it->second;
  }

 private:
  Pipeline& p_;
  StreamTotals totals_;
  std::map<uint64_t, std::unique_ptr<Connection>> conns_;
};

void Exchange(Conns& p, const ConnInfo& c, uint64_t ts, const std::string& model) {
  const std::string body = "{\"model\":\"" + model + "\",\"prompt\":\"x\",\"max_tokens\":1}";
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: h\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  const std::string rbody = "{\"id\":\"c\",\"object\":\"text_completion\",\"model\":\"" + model +
                            "\",\"choices\":[{\"index\":0,\"text\":\"y\",\"finish_reason\":"
                            "\"length\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
                            "\"total_tokens\":2}}";
  const std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(rbody.size()) + "\r\n\r\n" + rbody;
  p.Data(c, Direction::kIngress, ts, Bytes(req));
  p.Data(c, Direction::kEgress, ts + 1000, Bytes(resp));
}

std::shared_ptr<const AttributionTable> Table(
    std::vector<EndpointAttribution> eps, std::map<std::string, std::string> pool_a_models = {}) {
  auto t = std::make_shared<AttributionTable>();
  t->endpoints = std::move(eps);
  if (!pool_a_models.empty()) t->pool_models["a"] = std::move(pool_a_models);
  return t;
}

TEST(AttributionSnapshot, OpenConnectionKeepsItsAttributionAfterTheEndpointLeaves) {
  Pipeline p(PipelineOptions{}, nullptr);
  Collect out;
  p.AddListener(&out);
  p.SetAttribution(Table({{Ep("10.0.0.1:8000"), "a", "ns1", "pod-1"}}, {{"m", "client-m"}}));
  Conns conns(p);
  const ConnInfo old_conn = Conn(1, "10.0.0.1:8000");
  conns.Get(old_conn);
  Exchange(conns, old_conn, 1000, "m");
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].pool, "a");
  EXPECT_EQ(out.records[0].model_name, "client-m");

  // The endpoint moves to pool b (pod relabelled), a new endpoint joins pool a.
  p.SetAttribution(Table(
      {{Ep("10.0.0.1:8000"), "b", "ns2", "pod-1b"}, {Ep("10.0.0.2:8000"), "a", "ns1", "pod-2"}}));
  Exchange(conns, old_conn, 5000, "m");
  ASSERT_EQ(out.records.size(), 2u);
  EXPECT_EQ(out.records[1].pool, "a");  // kept from open
  EXPECT_EQ(out.records[1].ns, "ns1");
  EXPECT_EQ(out.records[1].pod, "pod-1");
  // The new table has no model mapping for pool a: the table the connection opened with applies.
  EXPECT_EQ(out.records[1].model_name, "client-m");

  const ConnInfo new_conn = Conn(2, "10.0.0.1:8000");
  Exchange(conns, new_conn, 9000, "m");
  ASSERT_EQ(out.records.size(), 3u);
  EXPECT_EQ(out.records[2].pool, "b");
  EXPECT_EQ(out.records[2].pod, "pod-1b");
  EXPECT_EQ(out.records[2].model_name, "m");

  const ConnInfo joined = Conn(3, "10.0.0.2:8000");
  Exchange(conns, joined, 9500, "m");
  ASSERT_EQ(out.records.size(), 4u);
  EXPECT_EQ(out.records[3].pool, "a");
  EXPECT_EQ(out.records[3].pod, "pod-2");

  // After close and reopen under the same id, the connection takes the current table.
  conns.Close(old_conn, 10000);
  Exchange(conns, old_conn, 11000, "m");
  ASSERT_EQ(out.records.size(), 5u);
  EXPECT_EQ(out.records[4].pool, "b");
}

TEST(AttributionSnapshot, ModelMappingFollowsTheCurrentTableForALivePool) {
  Pipeline p(PipelineOptions{}, nullptr);
  Collect out;
  p.AddListener(&out);
  p.SetAttribution(Table({{Ep("10.0.0.1:8000"), "a", "", "p"}}));
  Conns conns(p);
  const ConnInfo c = Conn(1, "10.0.0.1:8000");
  Exchange(conns, c, 1000, "m");
  p.SetAttribution(Table({{Ep("10.0.0.1:8000"), "a", "", "p"}}, {{"m", "new-name"}}));
  Exchange(conns, c, 2000, "m");
  ASSERT_EQ(out.records.size(), 2u);
  EXPECT_EQ(out.records[0].model_name, "m");
  EXPECT_EQ(out.records[1].model_name, "new-name");
}

TEST(AttributionSnapshot, SetEndpointsUsesTheAliasOptions) {
  PipelineOptions o;
  o.model_alias["m"] = "alias";
  Pipeline p(o, nullptr);
  Collect out;
  p.AddListener(&out);
  p.SetEndpoints({{Ep(":8000"), "w", "", "127.0.0.1:8000"}});
  Conns conns(p);
  Exchange(conns, Conn(1, "10.1.1.1:8000"), 1000, "m");
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].pool, "w");  // wildcard entry
  EXPECT_EQ(out.records[0].model_name, "alias");
}

topology::Topology TwoPools() {
  topology::Topology t;
  topology::TopologyPool a;
  a.ns = "ns1";
  a.name = a.label = "a";
  a.endpoints.push_back({Ep("10.0.0.1:8000"), "pod-1", "ns1", poller::Engine::kVllm,
                         "10.0.0.1:8000", "/metrics", "test"});
  a.endpoints.push_back(
      {Ep("10.0.0.1:8001"), "pod-1", "ns1", poller::Engine::kVllm, "10.0.0.1:9000", "/m", "test"});
  topology::AddModelName(a.models, "t1", "m1", "test");
  topology::TopologyPool b;
  b.ns = "ns2";
  b.name = b.label = "b";
  b.endpoints.push_back({Ep("10.0.0.1:8000"), "pod-x", "ns2", poller::Engine::kAuto,
                         "10.0.0.1:8000", "/metrics", "test"});  // overlaps a: a keeps it
  b.endpoints.push_back({Ep("10.0.0.3:8000"), "pod-3", "ns2", poller::Engine::kSglang,
                         "10.0.0.3:8000", "/metrics", "test"});
  t.pools = {a, b};
  topology::AddModelName(t.models, "g", "global", "flags");
  return t;
}

TEST(DeriveTables, KernelPipelineAndPollerGetTheTopology) {
  TopologyTables d = DeriveTables(TwoPools(), IT_ROLE_CLIENT);
  ASSERT_EQ(d.traced.size(), 3u);
  EXPECT_EQ(d.traced[0].endpoint.ToString(), "10.0.0.1:8000");
  EXPECT_EQ(d.traced[0].pool_index, 0u);
  EXPECT_EQ(d.traced[0].roles, uint32_t(IT_ROLE_CLIENT));
  EXPECT_EQ(d.traced[2].endpoint.ToString(), "10.0.0.3:8000");
  EXPECT_EQ(d.traced[2].pool_index, 1u);
  ASSERT_EQ(d.targets.size(), 4u);
  EXPECT_EQ(d.targets[1].address, "10.0.0.1:9000");
  EXPECT_EQ(d.targets[1].path, "/m");
  EXPECT_EQ(d.targets[3].engine, poller::Engine::kSglang);
  EXPECT_EQ(d.attribution->pool_models.at("a").at("t1"), "m1");
  EXPECT_EQ(d.attribution->models.at("g"), "global");
  // The pipeline resolves the overlap like the kernel: the first pool's entry.
  Pipeline p(PipelineOptions{}, nullptr);
  Collect out;
  p.AddListener(&out);
  p.SetAttribution(d.attribution);
  Conns conns(p);
  Exchange(conns, Conn(1, "10.0.0.1:8000"), 1000, "t1");
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].pool, "a");
  EXPECT_EQ(out.records[0].pod, "pod-1");
  EXPECT_EQ(out.records[0].model_name, "m1");
}

TEST(DeriveTables, UnionKeepsOldEndpointsBehindNewOnes) {
  auto next =
      Table({{Ep("10.0.0.2:8000"), "a", "", "new"}, {Ep("10.0.0.1:8000"), "b", "", "moved"}});
  auto prev =
      Table({{Ep("10.0.0.1:8000"), "a", "", "old"}, {Ep("10.0.0.9:8000"), "a", "", "gone"}});
  auto u = UnionTable(*next, *prev);
  ASSERT_EQ(u->endpoints.size(), 3u);
  EXPECT_EQ(u->endpoints[1].pod, "moved");
  EXPECT_EQ(u->endpoints[2].pod, "gone");
}

}  // namespace
}  // namespace infertap
