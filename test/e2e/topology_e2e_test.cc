// A topology change applied to a running Agent (agent/core/agent.hpp) while traffic flows, root
// + real BPF: the Agent runs in this process with a PushTopologySource as its test hook; two
// infertap-sim servers on loopback and curl are the traffic (other processes: the agent never
// traces itself).
//
//   v1: pool "a" = sim 1.          A request to sim 1 is traced as pool a; sim 2 is not traced.
//   a slow stream to sim 1 opens.  Still running when the topology changes.
//   v2: pool "b" = sim 2 only.     Applied within 1 s; a new request to sim 2 is traced as pool b;
//                                  a new connection to sim 1 is not traced; the stream opened
//                                  before the change completes, attributed to pool a / sim 1;
//                                  the poller scrapes sim 2 and no longer sim 1.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/core/agent.hpp"
#include "agent/topology/static_source.hpp"
#include "test/common/require.hpp"
#include "test/e2e/agent_e2e_util.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap {
namespace {

using e2e::ChildProcess;
using e2e::WaitUntil;
using std::chrono::milliseconds;

constexpr char kModel[] = "topo-model";

std::string SimBinary() { return std::string(INFERTAP_BINARY_DIR) + "/infertap-sim"; }

class Records : public RecordListener {
 public:
  void OnRecord(const RequestRecord& r) override {
    std::lock_guard lock(mu_);
    records_.push_back(r);
  }
  std::vector<RequestRecord> Get() const {
    std::lock_guard lock(mu_);
    return records_;
  }
  // Records attributed to `pool`.
  size_t CountFor(const std::string& pool) const {
    size_t n = 0;
    for (const auto& r : Get()) n += r.pool == pool;
    return n;
  }

 private:
  mutable std::mutex mu_;
  std::vector<RequestRecord> records_;
};

topology::Topology OnePool(const std::string& name, const std::string& addr) {
  std::string err;
  auto ep = ParseEndpoint(addr, &err);
  EXPECT_TRUE(ep) << err;
  topology::Topology t;
  topology::TopologyPool p;
  p.ns = "test";
  p.name = p.label = name;
  p.origin = "test";
  p.endpoints.push_back(
      {*ep, "pod-" + name, "test", poller::Engine::kAuto, addr, "/metrics", "test"});
  t.pools.push_back(std::move(p));
  return t;
}

class TopologyE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    INFERTAP_REQUIRE_BPF_OR_SKIP();
    INFERTAP_NEED_TOOL("curl");
    for (int i = 0; i < 2; ++i) {
      addr_[i] = "127.0.0.1:" + std::to_string(18961 + i);
      sim_[i] = std::make_unique<ChildProcess>(std::vector<std::string>{
          SimBinary(), "--listen", addr_[i], "--model", kModel, "--tokens", "4"});
      std::string err;
      ASSERT_TRUE(sim_[i]->Start(&err)) << err;
      ASSERT_TRUE(sim_[i]->WaitForOutput("listening on", milliseconds(10000)))
          << sim_[i]->out() << sim_[i]->err();
    }
    AgentOptions o;
    o.metrics_addr = "127.0.0.1:0";
    o.inspect_addr = "127.0.0.1:0";
    o.pipeline.node = "test-node";
    o.poller.poll_interval = milliseconds(200);
    o.poller.staleness = milliseconds(1000);
    auto src = std::make_unique<topology::PushTopologySource>("test");
    source_ = src.get();
    source_->Publish(OnePool("a", addr_[0]));
    agent_ = std::make_unique<Agent>(std::move(o), std::move(src));
    agent_->AddRecordListener(&records_);
    Status st = agent_->Start();
    ASSERT_TRUE(st) << st.message();
    ASSERT_EQ(agent_->applied_version(), 1u);
    runner_ = std::thread([this] {
      Status s = agent_->Run([this] { return stop_.load(); });
      EXPECT_TRUE(s) << s.message();
    });
  }
  void TearDown() override {
    stop_ = true;
    if (runner_.joinable()) runner_.join();
    agent_.reset();
  }

  // One request in its own curl process (a new connection). Returns the HTTP status.
  int Request(int sim, const std::vector<std::string>& headers = {}) {
    std::vector<std::string> argv = {
        "/usr/bin/curl", "-s",         "-o", "/dev/null", "-w",
        "%{http_code}",  "--max-time", "10", "-H",        "content-type: application/json"};
    for (const auto& h : headers) argv.insert(argv.end(), {"-H", h});
    argv.insert(argv.end(), {"--data-binary",
                             std::string("{\"model\":\"") + kModel +
                                 "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                             "http://" + addr_[sim] + "/v1/chat/completions"});
    ChildProcess c(argv);
    std::string err;
    if (!c.Start(&err)) return -1;
    WaitUntil(milliseconds(10000), [&] { return c.Exited(); });
    c.Stop(SIGKILL, milliseconds(100));
    return std::atoi(c.out().c_str());
  }

  std::string addr_[2];
  std::unique_ptr<ChildProcess> sim_[2];
  topology::PushTopologySource* source_ = nullptr;
  std::unique_ptr<Agent> agent_;
  Records records_;
  std::atomic<bool> stop_{false};
  std::thread runner_;
};

TEST_F(TopologyE2E, ChangeWhileTrafficFlows) {
  // ---- v1: sim 1 traced as pool a, sim 2 not traced ----
  ASSERT_EQ(Request(0), 200);
  ASSERT_TRUE(WaitUntil(milliseconds(2000), [&] { return records_.CountFor("a") == 1; }))
      << "request to sim 1 not traced";
  ASSERT_EQ(Request(1), 200);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(records_.Get().size(), 1u) << "sim 2 is not in the topology yet";

  // ---- a slow stream to sim 1 that spans the change ----
  ChildProcess stream({"/usr/bin/curl", "-sN", "--max-time", "15", "-H",
                       "content-type: application/json", "-H", "x-sim-tokens: 20", "-H",
                       "x-sim-itl-ms: 100", "--data-binary",
                       std::string("{\"model\":\"") + kModel +
                           "\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"long\"}]}",
                       "http://" + addr_[0] + "/v1/chat/completions"});
  std::string err;
  ASSERT_TRUE(stream.Start(&err)) << err;
  ASSERT_TRUE(stream.WaitForOutput("data:", milliseconds(3000))) << "stream did not start";

  // ---- v2: pool b = sim 2; sim 1 leaves ----
  const auto published = std::chrono::steady_clock::now();
  source_->Publish(OnePool("b", addr_[1]));
  ASSERT_TRUE(WaitUntil(
      milliseconds(1000), [&] { return agent_->applied_version() == 2; }, milliseconds(5)))
      << "topology not applied within 1 s";
  const auto applied_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - published)
          .count();
  EXPECT_LE(applied_ms, 1000);
  RecordProperty("applied_ms", std::to_string(applied_ms));

  ASSERT_EQ(Request(1), 200);
  EXPECT_TRUE(WaitUntil(milliseconds(1000), [&] { return records_.CountFor("b") == 1; }))
      << "new endpoint not traced within 1 s of the change";
  EXPECT_LE(std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - published)
                .count(),
            2500);

  ASSERT_EQ(Request(0), 200);  // a new connection to the endpoint that left

  // The stream opened before the change completes and keeps pool a.
  ASSERT_TRUE(WaitUntil(milliseconds(8000), [&] { return stream.Exited(); }));
  EXPECT_NE(stream.out().find("[DONE]"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(500));
  const std::vector<RequestRecord> recs = records_.Get();
  size_t a = 0, b = 0, streams = 0;
  for (const RequestRecord& r : recs) {
    if (r.pool == "a") {
      ++a;
      EXPECT_EQ(r.pod, "pod-a");
      EXPECT_EQ(r.ns, "test");
      if (r.stream) {
        ++streams;
        EXPECT_TRUE(r.response_complete) << "the stream was cut when its endpoint left";
        EXPECT_EQ(r.chunks, 20u) << "every token of the stream was seen";
        EXPECT_EQ(r.error, ErrorCode::kNone);
      }
    } else if (r.pool == "b") {
      ++b;
      EXPECT_EQ(r.pod, "pod-b");
    } else {
      ADD_FAILURE() << "record with pool '" << r.pool << "' (pod '" << r.pod << "')";
    }
  }
  EXPECT_EQ(a, 2u) << "the first request and the stream; the new connection to sim 1 is untraced";
  EXPECT_EQ(streams, 1u);
  EXPECT_EQ(b, 1u);

  // /v1/state: the applied topology, and the poller now scrapes sim 2 only.
  nlohmann::json state;
  EXPECT_TRUE(WaitUntil(milliseconds(2000), [&] {
    state = nlohmann::json::parse(agent_->StateJson());
    return state["pools"].size() == 1 && state["pools"][0]["name"] == "b" &&
           state["pools"][0]["pods"].size() == 1 && state["pools"][0]["pods"][0]["fresh"] == true;
  })) << state.dump();
  EXPECT_EQ(state["pools"][0]["pods"][0]["name"], "pod-b");
  EXPECT_EQ(state["pools"][0]["ready_pods"], 1);
  EXPECT_EQ(state["topology"]["version"], 2);
  EXPECT_EQ(state["topology"]["source"], "test");
  EXPECT_EQ(state["topology"]["applied"], true);
  EXPECT_EQ(state["endpoints"], nlohmann::json::array({addr_[1]}));
  EXPECT_EQ(state["topology"]["pools"][0]["endpoints"][0]["origin"], "test");
}

}  // namespace
}  // namespace infertap
