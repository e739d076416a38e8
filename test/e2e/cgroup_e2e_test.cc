// The cgroup backend end to end (root + real BPF; docs/capture.md "The cgroup backend"):
// `infertap run --capture-backend cgroup` with its cgroup_skb programs attached to a test cgroup
// under the cgroup v2 hierarchy, infertap-sim started INSIDE that cgroup (a socket keeps its
// creator's cgroup) in the "srv" namespace, infertap-load in "cli" over the veth pair — so the
// programs see what a model-server pod's sockets send and receive, GSO/GRO packets included.
//
// Every case asserts values, as the syscall backend's faults tier does: each record against the
// load generator's own per-request truth (`infertap-load --truth`, JudgeRecord: exact), the
// metric sums against sums over that truth, and the capture counters. A second simulator runs
// OUTSIDE the cgroup on another traced endpoint: its traffic must produce nothing at all.
//
// The test cgroup is removed at the end, also when an assertion failed (TestCgroup's destructor
// ends what still runs in it, which is only what the test started there).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/common/require.hpp"
#include "test/e2e/agent_e2e_util.hpp"
#include "test/e2e/e2e_util.hpp"
#include "test/e2e/faults/faults_util.hpp"

namespace infertap::e2e {
namespace {

using faults::Json;
using faults::JudgeRecord;
using faults::ReadJsonLines;
using std::chrono::milliseconds;

constexpr int kInPort = 8000;   // the simulator inside the cgroup
constexpr int kOutPort = 8001;  // the simulator outside it (also a traced endpoint)

std::string Bin(const std::string& name) { return std::string(INFERTAP_BINARY_DIR) + "/" + name; }

std::vector<std::string> InNetns(const std::string& ns, std::vector<std::string> argv) {
  std::vector<std::string> full = {"/usr/bin/env", "ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

std::string Join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + ShellQuote(a);
  return s;
}

// A loopback TCP port that was free a moment ago.
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

// Records whose target model starts with `prefix`, by target model.
std::map<std::string, std::vector<Json>> ByModel(const std::vector<Json>& records,
                                                 const std::string& prefix) {
  std::map<std::string, std::vector<Json>> out;
  for (const Json& r : records) {
    const std::string m = r.value("target_model_name", "");
    if (m.compare(0, prefix.size(), prefix) == 0) out[m].push_back(r);
  }
  return out;
}

// Sum of the samples of `name` whose target_model_name starts with `prefix`.
double SumFor(const std::string& exposition, const std::string& name, const std::string& prefix) {
  double sum = 0;
  for (const PromSample& s : ParsePromText(exposition)) {
    if (s.name != name) continue;
    auto it = s.labels.find("target_model_name");
    if (it != s.labels.end() && it->second.compare(0, prefix.size(), prefix) == 0) sum += s.value;
  }
  return sum;
}

class CgroupE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    INFERTAP_REQUIRE_BPF_OR_SKIP();
    INFERTAP_NEED_TOOL("curl");
    if (Cgroup2Root().empty()) INFERTAP_CANNOT_RUN("no cgroup v2 hierarchy is mounted");
    ASSERT_FALSE(tmp_.path().empty());
    cgroup_ = std::make_unique<TestCgroup>();
    ASSERT_FALSE(cgroup_->path().empty()) << "cannot create a cgroup under " << Cgroup2Root();
    net_ = std::make_unique<NetnsPair>();
    ASSERT_TRUE(net_->ok());
    in_addr_ = net_->srv_v4() + ":" + std::to_string(kInPort);
    in6_addr_ = "[" + net_->srv_v6() + "]:" + std::to_string(kInPort);
    out_addr_ = net_->srv_v4() + ":" + std::to_string(kOutPort);
    StartSims();
    StartAgent();
  }

  // More `infertap run` flags (a fixture for the ring-loss case sets a tiny ring).
  virtual std::vector<std::string> AgentExtraArgs() const { return {}; }

  void TearDown() override {
    records_.reset();
    agent_.reset();
    sim_in_.reset();
    sim_out_.reset();
    net_.reset();
    cgroup_.reset();  // after the processes it held
  }

  // infertap-sim inside the test cgroup (the shell joins it, then execs `ip netns exec`, which
  // execs the simulator: one process, created in the cgroup), and one outside it.
  void StartSims() {
    sim_in_ = std::make_unique<ChildProcess>(
        cgroup_->Wrap(InNetns(net_->srv(), {Bin("infertap-sim"), "--listen", in_addr_, "--listen",
                                            in6_addr_, "--model", "m", "--threads", "2"})));
    sim_out_ = std::make_unique<ChildProcess>(
        InNetns(net_->srv(), {Bin("infertap-sim"), "--listen", out_addr_, "--model", "m"}));
    std::string error;
    ASSERT_TRUE(sim_in_->Start(&error)) << error;
    ASSERT_TRUE(sim_out_->Start(&error)) << error;
    ASSERT_TRUE(sim_in_->WaitForOutput("listening on", milliseconds(10000))) << sim_in_->err();
    ASSERT_TRUE(sim_out_->WaitForOutput("listening on", milliseconds(10000))) << sim_out_->err();
    const std::vector<pid_t> pids = cgroup_->Pids();
    ASSERT_EQ(pids.size(), 1u) << "the simulator is not alone in the test cgroup";
    ASSERT_EQ(pids[0], sim_in_->pid());
  }

  // The agent runs in the test's own namespaces: `ip netns exec` would give it a fresh /sys
  // without the cgroup hierarchy (a DaemonSet mounts the host's /sys/fs/cgroup for the same
  // reason). BPF sees every network namespace anyway.
  void StartAgent() {
    metrics_port_ = FreeLoopbackPort();
    inspect_port_ = FreeLoopbackPort();
    ASSERT_TRUE(metrics_port_ > 0 && inspect_port_ > 0 && metrics_port_ != inspect_port_);
    // No --capture-backend: --capture-cgroup alone selects the cgroup backend (the state check
    // below proves which one ran).
    std::vector<std::string> argv = {Bin("infertap"),
                                     "run",
                                     "--capture-cgroup",
                                     cgroup_->path(),
                                     "--target",
                                     in_addr_,
                                     "--target",
                                     out_addr_,
                                     "--target",
                                     in6_addr_,
                                     "--metrics-auth",
                                     "none",
                                     "--metrics-addr",
                                     "127.0.0.1:" + std::to_string(metrics_port_),
                                     "--inspect-addr",
                                     "127.0.0.1:" + std::to_string(inspect_port_),
                                     "--poll-interval",
                                     "3600",
                                     "--metrics-staleness",
                                     "3600"};
    for (const std::string& a : AgentExtraArgs()) argv.push_back(a);
    agent_ = std::make_unique<ChildProcess>(argv);
    std::string error;
    ASSERT_TRUE(agent_->Start(&error)) << error;
    ASSERT_TRUE(agent_->WaitForOutput("running: tracing", milliseconds(30000)))
        << "agent did not start: " << agent_->err();
    ASSERT_NE(agent_->err().find("(cgroup backend on " + cgroup_->path() + ")"), std::string::npos)
        << agent_->err();
    int code = 0;
    ASSERT_TRUE(WaitUntil(milliseconds(5000),
                          [&] {
                            Get(Url(metrics_port_, "/readyz"), &code);
                            return code == 200;
                          }))
        << "/readyz " << code;
    records_file_ = tmp_.File("records.jsonl");
    records_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/usr/bin/curl", "-sN", "-o", records_file_, "-D", "/dev/stderr",
                                 Url(inspect_port_, "/v1/records")});
    ASSERT_TRUE(records_->Start(&error)) << error;
    ASSERT_TRUE(records_->WaitForOutput("HTTP/1.1 200", milliseconds(5000))) << records_->err();
  }

  static std::string Url(int port, const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  // GET in the test's namespace; the body when the status is 200, else "".
  static std::string Get(const std::string& url, int* code = nullptr) {
    std::string out;
    Sh("curl -s --max-time 10 -w '\\n%{http_code}' " + ShellQuote(url), &out);
    const size_t nl = out.rfind('\n');
    const int status = nl == std::string::npos ? 0 : std::atoi(out.c_str() + nl + 1);
    if (code) *code = status;
    return status == 200 ? out.substr(0, nl) : "";
  }
  std::string Metrics() { return Get(Url(metrics_port_, "/metrics")); }
  std::string State() { return Get(Url(inspect_port_, "/v1/state")); }

  // infertap-load in the client namespace against `addr`; `truth` gets its per-request lines.
  Json RunLoad(const std::string& addr, std::vector<std::string> args, const std::string& truth) {
    std::vector<std::string> argv = {Bin("infertap-load"), "--url",
                                     "http://" + addr + "/v1/chat/completions", "--truth", truth};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    const int rc =
        Sh("timeout 120 " + Join(InNetns(net_->cli(), argv)) + " 2>" + truth + ".err", &out);
    Json j = Json::parse(out, nullptr, false);
    EXPECT_EQ(rc, 0) << "infertap-load " << Join(args) << ": " << out;
    return j.is_object() ? j : Json::object();
  }

  static std::map<std::string, Json> TruthByModel(const std::string& path) {
    std::map<std::string, Json> out;
    for (Json& t : ReadJsonLines(path)) out[t.value("model", "")] = t;
    return out;
  }

  // Waits until `want` records with models starting with `prefix` arrived (bounded), then a
  // little longer so that a duplicate would show up too.
  std::vector<Json> RecordsFor(const std::string& prefix, size_t want) {
    WaitUntil(
        milliseconds(20000),
        [&] { return ByModel(ReadJsonLines(records_file_), prefix).size() >= want; },
        milliseconds(100));
    std::this_thread::sleep_for(milliseconds(300));
    return ReadJsonLines(records_file_);
  }

  // Every request of `truth` has exactly one record, and it is exact; the metric sums of the
  // prefix equal the sums over the truth.
  void ExpectExact(const std::string& prefix, const std::string& truth_file) {
    const auto truth = TruthByModel(truth_file);
    ASSERT_FALSE(truth.empty()) << "no truth in " << truth_file;
    const auto by_model = ByModel(RecordsFor(prefix, truth.size()), prefix);
    std::vector<std::string> wrong;
    double req_bytes = 0, resp_bytes = 0, in_tokens = 0, out_tokens = 0;
    for (const auto& [model, t] : truth) {
      ASSERT_EQ(t.value("outcome", ""), "ok") << "the client saw a failure: " << t.dump();
      req_bytes += t.value("request_bytes", 0.0);
      resp_bytes += t.value("response_bytes", 0.0);
      in_tokens += std::max(0.0, t.value("usage_prompt_tokens", 0.0));
      out_tokens += std::max(0.0, t.value("usage_completion_tokens", 0.0));
      auto it = by_model.find(model);
      if (it == by_model.end()) {
        wrong.push_back(model + ": no record");
        continue;
      }
      if (it->second.size() != 1) {
        wrong.push_back(model + ": " + std::to_string(it->second.size()) + " records");
        continue;
      }
      const std::string verdict = JudgeRecord(it->second[0], t);
      if (!verdict.empty())
        wrong.push_back(model + ": " + verdict + " record " + it->second[0].dump() + " truth " +
                        t.dump());
    }
    EXPECT_EQ(by_model.size(), truth.size()) << "records for models the load never asked for";
    EXPECT_TRUE(wrong.empty()) << wrong.size() << " of " << truth.size()
                               << " wrong, first: " << (wrong.empty() ? "" : wrong[0]);
    const std::string m = Metrics();
    EXPECT_EQ(SumFor(m, "inference_model_request_total", prefix), double(truth.size()));
    EXPECT_EQ(SumFor(m, "inference_model_request_error_total", prefix), 0.0);
    EXPECT_EQ(SumFor(m, "inference_model_request_sizes_sum", prefix), req_bytes);
    EXPECT_EQ(SumFor(m, "inference_model_response_sizes_sum", prefix), resp_bytes);
    EXPECT_EQ(SumFor(m, "inference_model_input_tokens_sum", prefix), in_tokens);
    EXPECT_EQ(SumFor(m, "inference_model_output_tokens_sum", prefix), out_tokens);
  }

  double Metric(const std::string& name) { return faults::SumSamples(Metrics(), name); }

  TempDir tmp_;
  std::unique_ptr<TestCgroup> cgroup_;
  std::unique_ptr<NetnsPair> net_;
  std::string in_addr_, in6_addr_, out_addr_;
  std::unique_ptr<ChildProcess> sim_in_, sim_out_, agent_, records_;
  std::string records_file_;
  int metrics_port_ = 0, inspect_port_ = 0;
};

TEST_F(CgroupE2E, ManyConcurrentStreamsAreExactAgainstTheClientsTruth) {
  const std::string truth = tmp_.File("streams.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "200", "-n", "600", "--stream", "--include-usage", "--unique-models", "--model",
           "cs", "--tokens", "24"},
          truth);
  ExpectExact("cs-", truth);
  EXPECT_EQ(Metric("infertap_capture_lost_events_total"), 0.0);
  // Published once a second.
  EXPECT_TRUE(WaitUntil(milliseconds(3000),
                        [&] { return Metric("infertap_capture_events_total") > 600.0; }));
  // The backend's own counters in /v1/state: packets seen, nothing malformed, unreadable or lost.
  const Json c = Json::parse(State(), nullptr, false)["capture"]["counters"];
  ASSERT_TRUE(c.is_object()) << State();
  EXPECT_GT(c.value("kernel_packets", 0), 600 * 20);
  EXPECT_GT(c.value("pure_acks", 0), 0);
  EXPECT_EQ(c.value("malformed_records", -1), 0);
  EXPECT_EQ(c.value("unreadable_packets", -1), 0);
  EXPECT_EQ(c.value("lost_bytes", -1), 0);
  // One flow per load connection (plus, when it ran by then, the agent's own scrape of the
  // simulator's /metrics).
  EXPECT_GE(c.value("flows", 0), 200);
  EXPECT_LE(c.value("flows", 0), 201);
}

TEST_F(CgroupE2E, NonStreamedAndStreamedWithoutUsageAreExact) {
  const std::string plain = tmp_.File("plain.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "16", "-n", "160", "--no-stream", "--unique-models", "--model", "cn", "--tokens",
           "30"},
          plain);
  ExpectExact("cn-", plain);
  const std::string nousage = tmp_.File("nousage.truth.jsonl");
  RunLoad(
      in_addr_,
      {"-c", "16", "-n", "160", "--stream", "--unique-models", "--model", "cu", "--tokens", "12"},
      nousage);
  ExpectExact("cu-", nousage);
}

// IPv6 packets (the programs' second header parser) of the same simulator.
TEST_F(CgroupE2E, IPv6StreamsAreExact) {
  const std::string truth = tmp_.File("v6.truth.jsonl");
  RunLoad(in6_addr_,
          {"-c", "8", "-n", "80", "--stream", "--include-usage", "--unique-models", "--model", "c6",
           "--tokens", "16"},
          truth);
  ExpectExact("c6-", truth);
  const auto records = ByModel(ReadJsonLines(records_file_), "c6-");
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.begin()->second[0].value("pod", ""), in6_addr_);
}

// Bodies far above one 64 KiB GSO/GRO packet: requests of ~200 KB, responses of ~100 KB in one
// write (non-streamed) and long streams, so the programs copy many pieces per packet.
TEST_F(CgroupE2E, LargeBodiesAreCopiedWholeInPieces) {
  const std::string big = tmp_.File("big.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "4", "-n", "16", "--no-stream", "--unique-models", "--model", "cbig", "--tokens",
           "12000", "--prompt-words", "30000"},
          big);
  ExpectExact("cbig-", big);
  const std::string long_streams = tmp_.File("long.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "4", "-n", "8", "--stream", "--include-usage", "--unique-models", "--model",
           "clong", "--tokens", "3000", "--prompt-words", "20000"},
          long_streams);
  ExpectExact("clong-", long_streams);
  for (const auto& [model, t] : TruthByModel(big)) {
    ASSERT_GT(t.value("request_bytes", 0), 65536) << "the load did not send large bodies";
    ASSERT_GT(t.value("response_bytes", 0), 65536) << "the sim did not send large bodies";
  }
  EXPECT_EQ(Metric("infertap_capture_lost_events_total"), 0.0);
}

// The simulator outside the cgroup serves a traced endpoint: only the cgroup scoping keeps its
// traffic out. Payload bytes are the measure (the agent's own start-up scrape of the inside
// simulator's /metrics, and that idle connection's eventual FIN, are packets of the cgroup too,
// so the event count alone could move; no payload byte may).
TEST_F(CgroupE2E, AServerOutsideTheCgroupProducesNothing) {
  double bytes_before = -1;
  ASSERT_TRUE(WaitUntil(
      milliseconds(10000),
      [&] {
        const double b = Metric("infertap_capture_bytes_total");
        const bool stable = b == bytes_before;
        bytes_before = b;
        return stable;
      },
      milliseconds(1200)))
      << "the capture counters never settled";
  const std::string outside = tmp_.File("outside.truth.jsonl");
  const Json s = RunLoad(out_addr_,
                         {"-c", "8", "-n", "80", "--stream", "--include-usage", "--unique-models",
                          "--model", "out", "--tokens", "10"},
                         outside);
  ASSERT_EQ(s.value("ok", 0), 80) << s.dump();
  // Let anything that was captured reach the records and the published counters.
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(Metric("infertap_capture_bytes_total"), bytes_before)
      << "packets of a socket outside the cgroup were captured";
  EXPECT_TRUE(ByModel(ReadJsonLines(records_file_), "out-").empty());
  // The control: the same traffic to the server inside the cgroup is captured, exactly.
  const std::string inside = tmp_.File("inside.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "8", "-n", "80", "--stream", "--include-usage", "--unique-models", "--model", "in",
           "--tokens", "10"},
          inside);
  ExpectExact("in-", inside);
  // The counters are published once a second.
  double bytes_after = 0;
  EXPECT_TRUE(WaitUntil(milliseconds(3000),
                        [&] {
                          bytes_after = Metric("infertap_capture_bytes_total");
                          return bytes_after > bytes_before + 80 * 100;
                        }))
      << "captured bytes " << bytes_after << ", before " << bytes_before;
}

TEST_F(CgroupE2E, StateNamesTheBackendAndItsCgroup) {
  const Json state = Json::parse(State(), nullptr, false);
  ASSERT_TRUE(state.is_object());
  EXPECT_EQ(state["capture"].value("backend", ""), "cgroup");
  EXPECT_EQ(state["capture"].value("variant", ""), "cgroup_skb");
  EXPECT_EQ(state["capture"]["cgroups"], Json::array({cgroup_->path()}));
  const std::string m = Metrics();
  EXPECT_NE(m.find("infertap_capture_lost_events_total"), std::string::npos);
  EXPECT_NE(m.find("infertap_capture_events_total"), std::string::npos);
}

// Programs attached to the test cgroup, as bpftool lists them ("" when none).
std::string AttachedTo(const std::string& cgroup) {
  std::string out;
  Sh("bpftool cgroup show " + ShellQuote(cgroup), &out);
  return out;
}

// The links are the agent's file descriptors: a graceful stop detaches both programs, and so
// does SIGKILL (nothing pinned, nothing left on the pods' cgroups).
TEST_F(CgroupE2E, StoppingOrKillingTheAgentDetachesFromTheCgroup) {
  INFERTAP_NEED_TOOL("bpftool");
  const std::string attached = AttachedTo(cgroup_->path());
  EXPECT_NE(attached.find("skb_ingress"), std::string::npos) << attached;
  EXPECT_NE(attached.find("skb_egress"), std::string::npos) << attached;
  EXPECT_EQ(agent_->Stop(SIGINT, milliseconds(10000)), 0) << agent_->err();
  EXPECT_TRUE(WaitUntil(milliseconds(5000), [&] { return AttachedTo(cgroup_->path()).empty(); }))
      << AttachedTo(cgroup_->path());
  records_.reset();
  StartAgent();
  ASSERT_NE(AttachedTo(cgroup_->path()).find("skb_ingress"), std::string::npos);
  agent_->Stop(SIGKILL, milliseconds(5000));
  EXPECT_TRUE(WaitUntil(milliseconds(5000), [&] { return AttachedTo(cgroup_->path()).empty(); }))
      << AttachedTo(cgroup_->path());
}

// A ring far smaller than one GSO packet's pieces: each 64 KiB response packet is 16 events of
// 4 KiB, a 16 KiB ring holds three, so pieces are lost whatever the agent's speed.
class CgroupE2ERingLoss : public CgroupE2E {
 protected:
  std::vector<std::string> AgentExtraArgs() const override {
    return {"--ring-buffer-size", "16384"};
  }
};

// What the programs cannot copy is counted and becomes a gap of exact length: every record is
// exact or an Incomplete that claims nothing of another exchange (JudgeRecord), and none is
// made up; gentle traffic afterwards is exact again.
TEST_F(CgroupE2ERingLoss, LostPiecesAreCountedAndNeverMisattributed) {
  const double lost0 = Metric("infertap_capture_lost_events_total");
  const std::string truth_file = tmp_.File("loss.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "4", "-n", "24", "--no-stream", "--unique-models", "--model", "loss", "--tokens",
           "12000"},
          truth_file);
  // Settled: no new record for 1.5 s.
  size_t last = SIZE_MAX;
  auto since = std::chrono::steady_clock::now();
  WaitUntil(
      milliseconds(20000),
      [&] {
        const size_t n = ReadJsonLines(records_file_).size();
        if (n != last) {
          last = n;
          since = std::chrono::steady_clock::now();
        }
        return std::chrono::steady_clock::now() - since > milliseconds(1500);
      },
      milliseconds(100));
  const double lost1 = Metric("infertap_capture_lost_events_total");
  ASSERT_GT(lost1, lost0) << "a 16 KiB ring lost nothing: the case did not overflow";
  const auto truth = TruthByModel(truth_file);
  size_t exact = 0, incomplete = 0;
  std::vector<std::string> wrong;
  for (const auto& [model, rs] : ByModel(ReadJsonLines(records_file_), "")) {
    auto t = truth.find(model);
    if (t == truth.end()) {
      // Its request's model was lost with the ring: it may only be Incomplete.
      for (const Json& r : rs)
        if (r.value("error_code", "") != "Incomplete") wrong.push_back("made up: " + r.dump());
      continue;
    }
    if (rs.size() > 1) wrong.push_back(model + ": " + std::to_string(rs.size()) + " records");
    const std::string verdict = JudgeRecord(rs[0], t->second);
    if (verdict.empty()) {
      ++exact;
    } else if (verdict == "incomplete") {
      ++incomplete;
    } else {
      wrong.push_back(model + ": " + verdict + " record " + rs[0].dump() + " truth " +
                      t->second.dump());
    }
  }
  std::printf("[cgroup] ring loss: %.0f events lost, %zu requests: %zu exact, %zu incomplete\n",
              lost1 - lost0, truth.size(), exact, incomplete);
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " wrong, first: " << wrong[0];
  EXPECT_GT(incomplete, 0u) << "events were lost but every record is complete";

  // Gentle streams on new connections: exact, unless this phase lost events too (a busy
  // machine can starve the agent of a 16 KiB ring even at this rate); then no record is wrong.
  const std::string calm = tmp_.File("calm.truth.jsonl");
  RunLoad(in_addr_,
          {"-c", "2", "-n", "40", "--stream", "--include-usage", "--unique-models", "--model",
           "calm", "--tokens", "8"},
          calm);
  const auto calm_truth = TruthByModel(calm);
  const auto calm_records = ByModel(RecordsFor("calm-", calm_truth.size()), "calm-");
  std::this_thread::sleep_for(milliseconds(1200));  // the counters are published once a second
  const double lost2 = Metric("infertap_capture_lost_events_total");
  for (const auto& [model, t] : calm_truth) {
    auto it = calm_records.find(model);
    if (lost2 == lost1) {
      ASSERT_TRUE(it != calm_records.end() && it->second.size() == 1) << model;
      EXPECT_EQ(JudgeRecord(it->second[0], t), "") << model << " " << it->second[0].dump();
    } else if (it != calm_records.end()) {
      const std::string verdict = JudgeRecord(it->second[0], t);
      EXPECT_TRUE(verdict.empty() || verdict == "incomplete") << verdict;
    }
  }
  if (lost2 != lost1) std::printf("[cgroup] the calm phase lost %.0f events\n", lost2 - lost1);
}

// Without root the agent refuses in one line and exits 1; bad flags are usage errors (exit 2).
TEST(CgroupCli, BadFlagsAreOneLineUsageErrors) {
  const std::string bin = InfertapBinary();
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"--capture-backend cgroup", "--capture-backend cgroup needs --capture-cgroup PATH"},
      {"--capture-backend cgroup --capture-cgroup /nonexistent-cgroup",
       "cgroup directory /nonexistent-cgroup does not exist"},
      {"--capture-backend cgroup --capture-cgroup /proc", "is not on a cgroup v2"},
      {"--capture-backend syscall --capture-cgroup /sys",
       "--capture-cgroup is for the cgroup backend, not --capture-backend syscall"},
      // --capture-cgroup alone selects the cgroup backend (docs/capture-backends.md#decision):
      // its checks apply.
      {"--capture-cgroup /nonexistent-cgroup",
       "cgroup directory /nonexistent-cgroup does not exist"},
      {"--capture-cgroup /sys --capture-side client", "captures the server side only"},
      {"--capture-backend bogus", "--capture-backend must be syscall or cgroup"},
      {"--capture-backend cgroup --capture-cgroup /sys --capture-side client",
       "captures the server side only"},
  };
  for (const Case& c : cases) {
    std::string out;
    const int rc = Sh(bin + " run --metrics-addr 127.0.0.1:0 " + c.args + " 2>&1", &out);
    EXPECT_EQ(rc, 2) << c.args << ": " << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << c.args << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << c.args << ": " << out;
  }
}

// Without root (nobody, no capabilities) the cgroup backend names what it needs and exits 1.
TEST(CgroupCli, WithoutPrivilegesExitsOneNamingTheCapabilities) {
  INFERTAP_REQUIRE_BPF_OR_SKIP();  // root is needed to become nobody
  INFERTAP_NEED_TOOL("setpriv");
  const std::string root = Cgroup2Root();
  if (root.empty()) INFERTAP_CANNOT_RUN("no cgroup v2 hierarchy is mounted");
  const std::string bin = InfertapBinaryForNobody();
  ASSERT_FALSE(bin.empty());
  std::string out;
  EXPECT_EQ(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all " + bin +
                   " run --metrics-auth none --metrics-addr 127.0.0.1:0 --capture-backend cgroup "
                   "--capture-cgroup " +
                   root,
               &out),
            1)
      << out;
  EXPECT_NE(out.find("needs root or CAP_BPF+CAP_NET_ADMIN"), std::string::npos) << out;
}

}  // namespace
}  // namespace infertap::e2e
