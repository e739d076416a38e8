// The faults tier (CTest label `faults`, root + real BPF; docs/faults.md): the agent driven past
// its limits. infertap-sim in the "srv" namespace, `infertap run` in "cli" tracing it (and a raw
// socket server of the test's own on a second traced port), infertap-load and raw sockets as
// clients. Every case asserts values: each record against the load generator's own per-request
// truth (`infertap-load --truth`), metric deltas against sums over that truth, the agent's BPF
// objects (ids from /proc/PID/fdinfo, checked with bpftool), its RSS from /proc, and its
// connection state (`infertap_connections_tracked`, the BPF `conns` map) back to baseline.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/common/require.hpp"
#include "test/e2e/agent_e2e_util.hpp"
#include "test/e2e/e2e_util.hpp"
#include "test/e2e/faults/faults_util.hpp"

namespace infertap::e2e::faults {
namespace {

using std::chrono::milliseconds;

// The tier is scaled to fit CI's time budget; FAULTS_FULL_SCALE=1 runs the full figures
// (docs/faults.md): 60 s streams in the scale case, a 1 GiB response in the hostile-bytes case.
bool FullScale() {
  const char* v = std::getenv("FAULTS_FULL_SCALE");
  return v != nullptr && std::string(v) == "1";
}
using std::chrono::steady_clock;

constexpr int kSimPort = 8000;
constexpr int kSinkPort = 8001;  // the test's own raw server, also traced
constexpr int kMetricsPort = 9090;
constexpr int kInspectPort = 9091;

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

// The JSON summary a finished infertap-load printed. Exited() reaps the child before its output
// thread has necessarily read the last bytes: wait (bounded) until the summary parses.
Json LoadSummary(ChildProcess& load) {
  Json j;
  WaitUntil(milliseconds(5000), [&] {
    j = Json::parse(load.out(), nullptr, false);
    return j.is_object();
  });
  return j.is_object() ? j : Json();
}

double Seconds(steady_clock::time_point since) {
  return std::chrono::duration<double>(steady_clock::now() - since).count();
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

class FaultsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    INFERTAP_REQUIRE_BPF_OR_SKIP();
    INFERTAP_NEED_TOOL("bpftool");
    INFERTAP_NEED_TOOL("curl");
    ASSERT_FALSE(tmp_.path().empty());
    net_ = std::make_unique<NetnsPair>();
    ASSERT_TRUE(net_->ok());
    sim_addr_ = net_->srv_v4() + ":" + std::to_string(kSimPort);
  }

  void TearDown() override {
    records_.reset();
    agent_.reset();
    sim_.reset();
    net_.reset();
  }

  void StartSim(std::vector<std::string> extra) {
    std::vector<std::string> argv = {Bin("infertap-sim"), "--listen", sim_addr_, "--model", "m"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    sim_ = std::make_unique<ChildProcess>(InNetns(net_->srv(), argv));
    std::string error;
    ASSERT_TRUE(sim_->Start(&error)) << error;
    ASSERT_TRUE(sim_->WaitForOutput("listening on", milliseconds(10000))) << sim_->err();
  }

  // `nice_agent`: the agent at nice 10, so that the load (at nice 0) outruns it.
  void StartAgent(std::vector<std::string> extra, bool nice_agent = false) {
    std::vector<std::string> argv;
    if (nice_agent) argv = {"/usr/bin/nice", "-n", "10"};
    std::vector<std::string> run = {
        Bin("infertap"),  "run",
        "--target",       sim_addr_,
        "--target",       net_->srv_v4() + ":" + std::to_string(kSinkPort),
        "--metrics-auth", "none",
        "--metrics-addr", "127.0.0.1:" + std::to_string(kMetricsPort),
        "--inspect-addr", "127.0.0.1:" + std::to_string(kInspectPort)};
    argv.insert(argv.end(), run.begin(), run.end());
    argv.insert(argv.end(), poll_args_.begin(), poll_args_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    agent_ = std::make_unique<ChildProcess>(InNetns(net_->cli(), argv));
    std::string error;
    ASSERT_TRUE(agent_->Start(&error)) << error;
    ASSERT_TRUE(agent_->WaitForOutput("running: tracing", milliseconds(30000)))
        << "agent did not start: " << agent_->err();
    int code = 0;
    ASSERT_TRUE(WaitUntil(milliseconds(5000),
                          [&] {
                            CurlIn(net_->cli(), Url(kMetricsPort, "/readyz"), "", nullptr, &code);
                            return code == 200;
                          }))
        << "/readyz " << code;
    StartRecords();
  }

  void StartRecords() {
    records_.reset();
    records_file_ = tmp_.File("records" + std::to_string(++records_gen_) + ".jsonl");
    records_ = std::make_unique<ChildProcess>(
        InNetns(net_->cli(), {"/usr/bin/curl", "-sN", "-o", records_file_, "-D", "/dev/stderr",
                              Url(kInspectPort, "/v1/records")}));
    std::string error;
    ASSERT_TRUE(records_->Start(&error)) << error;
    ASSERT_TRUE(records_->WaitForOutput("HTTP/1.1 200", milliseconds(5000))) << records_->err();
  }

  static std::string Url(int port, const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }

  std::string Metrics() {
    std::string body;
    int code = 0;
    CurlIn(net_->cli(), Url(kMetricsPort, "/metrics"), "--max-time 10", &body, &code);
    return code == 200 ? body : "";
  }

  double Metric(const std::string& name, const std::string& label = "",
                const std::string& value = "") {
    return SumSamples(Metrics(), name, label, value);
  }

  std::vector<Json> Records(uint64_t* dropped = nullptr) {
    return ReadJsonLines(records_file_, dropped);
  }

  // Waits until at least `want` records with target models starting with `prefix` arrived, or
  // (want 0) until the record count stopped changing for 1.5 s. Bounded by `timeout`.
  std::vector<Json> SettledRecords(const std::string& prefix, size_t want, milliseconds timeout) {
    size_t last = SIZE_MAX;
    auto last_change = steady_clock::now();
    std::vector<Json> recs;
    WaitUntil(
        timeout,
        [&] {
          recs = Records();
          size_t n = 0;
          for (const Json& r : recs) {
            if (r.value("target_model_name", "").compare(0, prefix.size(), prefix) == 0) ++n;
          }
          if (want > 0 && n >= want) return true;
          if (n != last) {
            last = n;
            last_change = steady_clock::now();
          }
          return want == 0 && Seconds(last_change) > 1.5;
        },
        milliseconds(100));
    // Anything still in flight after the wanted ones (a duplicate would show up here).
    std::this_thread::sleep_for(milliseconds(300));
    return Records();
  }

  // infertap-load in the client namespace to the simulator; its summary. `truth` gets the
  // per-request lines.
  Json RunLoad(std::vector<std::string> args, const std::string& truth, int* rc = nullptr) {
    std::vector<std::string> argv = {Bin("infertap-load"), "--url",
                                     "http://" + sim_addr_ + "/v1/chat/completions", "--truth",
                                     truth};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    int status =
        Sh("timeout 120 " + Join(InNetns(net_->cli(), argv)) + " 2>" + truth + ".err", &out);
    if (rc) *rc = status;
    Json j = Json::parse(out, nullptr, false);
    return j.is_object() ? j : Json::object();
  }

  static std::map<std::string, Json> TruthByModel(const std::string& path) {
    std::map<std::string, Json> out;
    for (Json& t : ReadJsonLines(path)) out[t.value("model", "")] = t;
    return out;
  }

  // The agent's connection state is back to `tracked` / `entries` (BPF conns map).
  void ExpectConnectionStateAt(double tracked, long entries, uint32_t conns_map) {
    double now_tracked = -1;
    long now_entries = -1;
    const bool back = WaitUntil(
        milliseconds(8000),
        [&] {
          now_tracked = Metric("infertap_connections_tracked");
          now_entries = MapEntries(conns_map);
          return now_tracked <= tracked && now_entries <= entries;
        },
        milliseconds(200));
    EXPECT_TRUE(back) << "connections_tracked " << now_tracked << " (baseline " << tracked
                      << "), conns map entries " << now_entries << " (baseline " << entries << ")";
  }

  TempDir tmp_;
  std::unique_ptr<NetnsPair> net_;
  std::string sim_addr_;
  std::unique_ptr<ChildProcess> sim_, agent_, records_;
  std::string records_file_;
  int records_gen_ = 0;
  // Traffic cases scrape the pool once (at start) so scrapes do not mix into their numbers.
  std::vector<std::string> poll_args_ = {"--poll-interval", "3600", "--metrics-staleness", "3600"};
};

// Sums over the truth of requests the client saw complete.
struct TruthSums {
  double requests = 0, response_bytes = 0, request_bytes = 0, input_tokens = 0, output_tokens = 0;
};
TruthSums SumTruth(const std::map<std::string, Json>& truth) {
  TruthSums s;
  for (const auto& [model, t] : truth) {
    s.requests += 1;
    s.request_bytes += t.value("request_bytes", 0.0);
    s.response_bytes += t.value("response_bytes", 0.0);
    s.input_tokens += std::max(0.0, t.value("usage_prompt_tokens", 0.0));
    s.output_tokens += std::max(0.0, t.value("usage_completion_tokens", 0.0));
  }
  return s;
}

struct FamilyTotals {
  double requests, errors, request_sizes, response_sizes, input_tokens, output_tokens;
};
FamilyTotals Totals(const std::string& m) {
  return {SumSamples(m, "inference_model_request_total"),
          SumSamples(m, "inference_model_request_error_total"),
          SumSamples(m, "inference_model_request_sizes_sum"),
          SumSamples(m, "inference_model_response_sizes_sum"),
          SumSamples(m, "inference_model_input_tokens_sum"),
          SumSamples(m, "inference_model_output_tokens_sum")};
}

// ---- 1. Overload ------------------------------------------------------------------------------

// A 64 KiB ring at nice 10 under an open-loop 5,000 req/s of streams: events are lost, and every
// record is still exact or an Incomplete that claims nothing of another request; afterwards, on
// new connections, every request is exact again in records and metrics, and the connection
// state is back to its baseline.
TEST_F(FaultsE2E, OverloadLosesEventsButNeverMisattributes) {
  StartSim({"--tokens", "8", "--ttft-ms", "0", "--itl-ms", "0", "--max-running", "0"});
  StartAgent({"--ring-buffer-size", "65536", "--max-models", "16"}, /*nice_agent=*/true);
  const BpfObjects objects = BpfObjectsOf(agent_->pid());
  const uint32_t conns_map = FindMap(objects, "conns");
  ASSERT_NE(conns_map, 0u) << "the agent has no BPF map named conns";
  const double tracked0 = Metric("infertap_connections_tracked");
  const long entries0 = MapEntries(conns_map);
  const double lost0 = Metric("infertap_capture_lost_events_total");

  const std::string truth1 = tmp_.File("overload.truth.jsonl");
  const auto t0 = steady_clock::now();
  ChildProcess load(InNetns(
      net_->cli(), {Bin("infertap-load"), "--url", "http://" + sim_addr_ + "/v1/chat/completions",
                    "--truth", truth1, "-c", "64", "--rate", "5000", "-d", "4", "--unique-models",
                    "--model", "ovl", "--tokens", "4", "--include-usage", "--timeout", "20"}));
  std::string error;
  ASSERT_TRUE(load.Start(&error)) << error;
  // While the ring overflows, the agent still publishes (its loop is not starved by an endless
  // ring-buffer drain): the lost-event counter moves during the load, not only after it.
  std::this_thread::sleep_for(milliseconds(1500));
  const double lost_mid1 = Metric("infertap_capture_lost_events_total");
  std::this_thread::sleep_for(milliseconds(1500));
  const double lost_mid2 = Metric("infertap_capture_lost_events_total");
  const bool load_still_running = !load.Exited();
  EXPECT_TRUE(load_still_running);
  EXPECT_GT(lost_mid2, lost_mid1) << "no loss published between 1.5 s and 3 s into the overload";
  ASSERT_TRUE(WaitUntil(milliseconds(60000), [&] { return load.Exited(); }));
  const double load_s = Seconds(t0);
  Json summary = LoadSummary(load);
  ASSERT_TRUE(summary.is_object()) << load.out() << load.err();
  ASSERT_GT(summary.value("requests", 0), 1000) << summary.dump();
  // Every overload connection has ended (closes lost with the overflow are reconciled within the
  // liveness period, docs/capture.md#loss-accounting) before its records are judged, so none
  // arrives late in the recovery phase's metric deltas.
  ExpectConnectionStateAt(tracked0, entries0, conns_map);
  std::vector<Json> recs = SettledRecords("ovl-", 0, milliseconds(30000));
  const double lost1 = Metric("infertap_capture_lost_events_total");
  EXPECT_GT(lost1, lost0) << "a 64 KiB ring at " << summary.value("requests", 0) / load_s
                          << " req/s lost nothing: the case did not overload";

  const auto truth = TruthByModel(truth1);
  size_t exact = 0, incomplete = 0, unattributed = 0;
  std::vector<std::string> wrong;
  for (const auto& [model, rs] : ByModel(recs, "")) {
    auto t = truth.find(model);
    if (t == truth.end()) {
      // A record whose request bytes (with its model) were lost: it may only be Incomplete.
      for (const Json& r : rs) {
        if (r.value("error_code", "") == "Incomplete" && r.value("status", 0) == 0) {
          ++unattributed;
        } else if (r.value("error_code", "") == "Incomplete" && model.empty()) {
          ++unattributed;  // a response whose request was lost: checked below for sizes
        } else {
          wrong.push_back("record of no request: " + r.dump());
        }
      }
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
  uint64_t dropped = 0;
  Records(&dropped);
  std::printf(
      "[faults] overload: %lld requests in %.1f s (%.0f req/s), %lld ok, lost events "
      "%.0f, records %zu: exact %zu, incomplete %zu, unattributed %zu, wrong %zu, "
      "dropped for the subscriber %llu, agent peak RSS %.1f MiB\n",
      summary.value("requests", 0LL), load_s,
      summary.value("requests", 0) / summary.value("duration_s", load_s), summary.value("ok", 0LL),
      lost1 - lost0, recs.size(), exact, incomplete, unattributed, wrong.size(),
      static_cast<unsigned long long>(dropped), PeakRssBytes(agent_->pid()) / 1048576.0);
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " wrong records, first: " << wrong[0];
  EXPECT_GT(exact, 0u) << "not a single exact record under overload";

  // Recovery: gentle load (100 req/s) on new connections is exact, request by request and in the
  // metrics.
  const FamilyTotals before = Totals(Metrics());
  const std::string truth2 = tmp_.File("after.truth.jsonl");
  int rc = 0;
  summary = RunLoad({"-c", "4", "--rate", "100", "-n", "300", "--unique-models", "--model", "after",
                     "--tokens", "6", "--include-usage"},
                    truth2, &rc);
  ASSERT_EQ(rc, 0) << summary.dump();
  const auto after_truth = TruthByModel(truth2);
  ASSERT_EQ(after_truth.size(), 300u);
  recs = SettledRecords("after-", 300, milliseconds(15000));
  const double lost2 = Metric("infertap_capture_lost_events_total");
  EXPECT_EQ(lost2, lost1) << "events lost under gentle load: the agent did not recover";
  const auto after = ByModel(recs, "after-");
  EXPECT_EQ(after.size(), 300u);
  size_t after_exact = 0;
  for (const auto& [model, rs] : after) {
    ASSERT_EQ(rs.size(), 1u) << model;
    const std::string verdict = JudgeRecord(rs[0], after_truth.at(model));
    EXPECT_EQ(verdict, "") << model << " " << rs[0].dump();
    after_exact += verdict.empty();
  }
  const FamilyTotals got = Totals(Metrics());
  const TruthSums want = SumTruth(after_truth);
  EXPECT_EQ(got.requests - before.requests, want.requests);
  EXPECT_EQ(got.errors - before.errors, 0);
  EXPECT_EQ(got.request_sizes - before.request_sizes, want.request_bytes);
  EXPECT_EQ(got.response_sizes - before.response_sizes, want.response_bytes);
  EXPECT_EQ(got.input_tokens - before.input_tokens, want.input_tokens);
  EXPECT_EQ(got.output_tokens - before.output_tokens, want.output_tokens);
  std::printf(
      "[faults] recovery: 300 requests, %zu exact records, metric deltas requests %.0f "
      "response bytes %.0f output tokens %.0f (truth %.0f / %.0f / %.0f)\n",
      after_exact, got.requests - before.requests, got.response_sizes - before.response_sizes,
      got.output_tokens - before.output_tokens, want.requests, want.response_bytes,
      want.output_tokens);
  EXPECT_EQ(Metric("inference_model_running_requests"), 0);
  ExpectConnectionStateAt(tracked0, entries0, conns_map);
}

// ---- 2. Scale -----------------------------------------------------------------------------------

// user + sys CPU seconds of a process (/proc/PID/stat fields 14 and 15).
double CpuSeconds(pid_t pid) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream in(stat.substr(paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// 10,000 concurrent open streams at one token per second: every request counted exactly (record
// by record against the client's truth, and in the metric sums), the agent's RSS within the
// 128 MiB target of docs/performance.md, CPU per request reported and bounded.
TEST_F(FaultsE2E, TenThousandConcurrentStreamsAreCountedExactly) {
  constexpr int kStreams = 10000;
  // The simulator and the load generator need more than 10,000 descriptors each: raise the soft
  // limit to the hard one (the children inherit it).
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_max < kStreams + 200) {
    INFERTAP_CANNOT_RUN("RLIMIT_NOFILE hard limit " + std::to_string(lim.rlim_max) +
                        " < 10,200: cannot open 10,000 streams");
  }
  lim.rlim_cur = lim.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
  StartSim({"--max-running", "0", "--ttft-ms", "0"});
  StartAgent({"--max-models", "16"});
  const double cpu0 = CpuSeconds(agent_->pid());
  const FamilyTotals before = Totals(Metrics());
  const std::string truth = tmp_.File("scale.truth.jsonl");
  // One token a second: ~12 s streams in the tier, 60 s with FAULTS_FULL_SCALE=1.
  const int stream_tokens = FullScale() ? 60 : 12;
  const auto t0 = steady_clock::now();
  ChildProcess load(InNetns(
      net_->cli(),
      {Bin("infertap-load"), "--url", "http://" + sim_addr_ + "/v1/chat/completions", "--truth",
       truth, "-c", std::to_string(kStreams), "-n", std::to_string(kStreams), "--unique-models",
       "--model", "scale", "--tokens", std::to_string(stream_tokens), "--include-usage", "-H",
       "x-sim-itl-ms: 1000", "--timeout", std::to_string(stream_tokens + 48)}));
  std::string error;
  ASSERT_TRUE(load.Start(&error)) << error;
  // Peak concurrency: the agent counts every stream as running at once.
  double running_peak = 0;
  uint64_t rss_peak = 0;
  const double load_limit_s = stream_tokens + 78;
  while (!load.Exited() && Seconds(t0) < load_limit_s) {
    running_peak = std::max(running_peak, Metric("inference_model_running_requests"));
    rss_peak = std::max(rss_peak, RssBytes(agent_->pid()));
    std::this_thread::sleep_for(milliseconds(500));
  }
  const double load_s = Seconds(t0);
  ASSERT_TRUE(load.Exited()) << "load still running after " << load_limit_s << " s";
  Json summary = LoadSummary(load);
  ASSERT_TRUE(summary.is_object()) << load.out() << load.err();
  EXPECT_EQ(summary.value("ok", 0), kStreams) << summary.dump();
  const auto t = TruthByModel(truth);
  ASSERT_EQ(t.size(), size_t(kStreams));
  const auto recs = ByModel(SettledRecords("scale-", kStreams, milliseconds(20000)), "scale-");
  const double cpu = CpuSeconds(agent_->pid()) - cpu0;
  size_t exact = 0;
  std::vector<std::string> wrong;
  for (const auto& [model, rs] : recs) {
    const std::string v = rs.size() == 1 ? JudgeRecord(rs[0], t.at(model)) : "duplicate";
    if (v.empty()) {
      ++exact;
    } else if (wrong.size() < 5) {
      wrong.push_back(model + ": " + v);
    }
  }
  const FamilyTotals got = Totals(Metrics());
  const TruthSums want = SumTruth(t);
  std::printf(
      "[faults] scale: %d concurrent streams (%d tokens, 1 s apart) in %.1f s; running "
      "peak %.0f; records %zu, exact %zu; agent RSS peak %.1f MiB; agent CPU %.2f s = "
      "%.1f us per request; lost events %.0f\n",
      kStreams, stream_tokens, load_s, running_peak, recs.size(), exact, rss_peak / 1048576.0, cpu,
      cpu * 1e6 / kStreams, Metric("infertap_capture_lost_events_total"));
  EXPECT_EQ(exact, size_t(kStreams)) << (wrong.empty() ? "" : wrong[0]);
  EXPECT_EQ(running_peak, kStreams) << "not all streams were open at once";
  EXPECT_EQ(got.requests - before.requests, want.requests);
  EXPECT_EQ(got.response_sizes - before.response_sizes, want.response_bytes);
  EXPECT_EQ(got.output_tokens - before.output_tokens, want.output_tokens);
  EXPECT_EQ(Metric("inference_model_running_requests"), 0);
  EXPECT_LE(rss_peak, 128u << 20) << "docs/performance.md: 128 MiB with 10,000 connections";
  // Not docs/performance.md's 12 us per 64-token keep-alive request (a known miss, measured by
  // bench/): each of these requests also opens and closes its connection. The bound catches a
  // per-connection cost that grows with the number of open streams (the agent's loop walking
  // every connection after each wake-up was 183 us here; 120-135 us since it walks every 25 ms).
  EXPECT_LT(cpu * 1e6 / kStreams, 250.0);
}

// ---- 3. Model server faults ---------------------------------------------------------------------

// A streaming request on a raw socket: model `model`, `tokens` tokens `itl_ms` apart.
std::string StreamRequest(const std::string& host, const std::string& model, int tokens,
                          int itl_ms) {
  const std::string body = "{\"model\":\"" + model +
                           "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}],"
                           "\"max_tokens\":" +
                           std::to_string(tokens) + ",\"stream\":true}";
  return "POST /v1/chat/completions HTTP/1.1\r\nhost: " + host +
         "\r\ncontent-type: application/json\r\nx-sim-itl-ms: " + std::to_string(itl_ms) +
         "\r\ncontent-length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string PlainRequest(const std::string& host, const std::string& model, int tokens,
                         std::string* body_out) {
  const std::string body = "{\"model\":\"" + model +
                           "\",\"messages\":[{\"role\":\"user\",\"content\":\"one two\"}],"
                           "\"max_tokens\":" +
                           std::to_string(tokens) + "}";
  if (body_out) *body_out = body;
  return "POST /v1/chat/completions HTTP/1.1\r\nhost: " + host +
         "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string Chunk(const std::string& s) {
  char n[32];
  std::snprintf(n, sizeof n, "%zx\r\n", s.size());
  return std::string(n) + s + "\r\n";
}

// Reads from fd until `n` bytes arrived or EOF (the raw server's way to take a request whose
// size it knows).
size_t Discard(int fd, size_t n) {
  char buf[1 << 16];
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf, std::min(sizeof buf, n - got), 0);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// Server RST mid-stream, client RST mid-stream, half-closed clients, a server that stops reading,
// and the server SIGKILLed under 40 open streams: the right error code for each, and the
// tracker and the BPF conns map back to their baseline afterwards.
TEST_F(FaultsE2E, ModelServerFaultsEndRightAndLeakNothing) {
  StartSim({"--tokens", "8", "--ttft-ms", "0", "--itl-ms", "2", "--max-running", "0"});
  StartAgent({});
  const BpfObjects objects = BpfObjectsOf(agent_->pid());
  const uint32_t conns_map = FindMap(objects, "conns");
  ASSERT_NE(conns_map, 0u);
  const double tracked0 = Metric("infertap_connections_tracked");
  const long entries0 = MapEntries(conns_map);
  auto incomplete_errors = [&] {
    return Metric("inference_model_request_error_total", "error_code", "Incomplete");
  };

  // (a) The server resets each stream (SO_LINGER 0) after 3 tokens.
  {
    const double inc0 = incomplete_errors();
    const std::string truth = tmp_.File("rst.truth.jsonl");
    RunLoad({"-c", "8", "-n", "40", "--unique-models", "--model", "srst", "--tokens", "10", "-H",
             "x-sim-abort-after: 3"},
            truth);
    const auto t = TruthByModel(truth);
    ASSERT_EQ(t.size(), 40u);
    const auto recs = ByModel(SettledRecords("srst-", 40, milliseconds(10000)), "srst-");
    EXPECT_EQ(recs.size(), 40u);
    for (const auto& [model, rs] : recs) {
      ASSERT_EQ(rs.size(), 1u) << model;
      const Json& r = rs[0];
      const Json& tr = t.at(model);
      EXPECT_EQ(tr.value("outcome", ""), "io") << tr.dump();
      EXPECT_EQ(r.value("error_code", ""), "Incomplete") << r.dump();
      EXPECT_EQ(r.value("status", 0), 200) << r.dump();
      EXPECT_EQ(r.value("chunks", -1), tr.value("content_events", -2)) << r.dump();
      EXPECT_EQ(r.value("chunks", -1), 3) << r.dump();
      EXPECT_EQ(JudgeRecord(r, tr), "incomplete");
    }
    EXPECT_EQ(incomplete_errors() - inc0, 40);
  }

  // (b) The client resets 10 streams (SO_LINGER 0) after their first bytes.
  {
    const double inc0 = incomplete_errors();
    std::vector<int> fds;
    for (int i = 0; i < 10; ++i) {
      int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSimPort);
      ASSERT_GE(fd, 0);
      ASSERT_TRUE(SendAll(fd, StreamRequest(sim_addr_, "crst-" + std::to_string(i), 200, 20)));
      fds.push_back(fd);
    }
    for (int fd : fds) {
      char buf[4096];
      ASSERT_GT(recv(fd, buf, sizeof buf, 0), 0);  // head and first events
      linger lg{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(fd);
    }
    const auto recs = ByModel(SettledRecords("crst-", 10, milliseconds(10000)), "crst-");
    EXPECT_EQ(recs.size(), 10u);
    for (const auto& [model, rs] : recs) {
      ASSERT_EQ(rs.size(), 1u) << model;
      EXPECT_EQ(rs[0].value("error_code", ""), "Incomplete") << rs[0].dump();
      EXPECT_EQ(rs[0].value("status", 0), 200) << rs[0].dump();
      EXPECT_LT(rs[0].value("chunks", 999), 200) << rs[0].dump();
    }
    EXPECT_EQ(incomplete_errors() - inc0, 10);
  }

  // (c) Half-closed clients (HTTP/1.0 style): request, shutdown(SHUT_WR); the server (the
  // test's raw server) reads to EOF, answers and closes. Exact records.
  RawServer sink(net_->srv(), net_->srv_v4(), kSinkPort);
  ASSERT_TRUE(sink.ok());
  {
    sink.SetHandler([](int fd) {
      const std::string req = ReadAll(fd);
      const size_t at = req.find("\"model\":\"half-");
      const int k = at == std::string::npos ? 1 : 3 + (req[at + 14] - '0');
      const std::string body =
          "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
          "\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],"
          "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":" +
          std::to_string(k) + ",\"total_tokens\":" + std::to_string(k + 2) + "}}";
      SendAll(fd, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " +
                      std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + body);
    });
    for (int i = 0; i < 5; ++i) {
      int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSinkPort);
      ASSERT_GE(fd, 0);
      std::string req_body;
      ASSERT_TRUE(
          SendAll(fd, PlainRequest(sim_addr_, "half-" + std::to_string(i), 3 + i, &req_body)));
      shutdown(fd, SHUT_WR);
      int status = 0;
      std::string body;
      ASSERT_TRUE(ReadContentLengthResponse(fd, &status, &body)) << "half-" << i;
      EXPECT_EQ(ReadAll(fd), "");  // then EOF
      close(fd);
      const std::string model = "half-" + std::to_string(i);
      const auto recs = ByModel(SettledRecords(model, 1, milliseconds(5000)), model);
      ASSERT_EQ(recs.size(), 1u) << model;
      const Json& r = recs.begin()->second.at(0);
      EXPECT_EQ(r.value("error_code", "x"), "") << r.dump();
      EXPECT_EQ(r.value("status", 0), 200) << r.dump();
      EXPECT_EQ(r.value("request_bytes", 0u), req_body.size()) << r.dump();
      EXPECT_EQ(r.value("response_bytes", 0u), body.size()) << r.dump();
      EXPECT_EQ(r.value("output_tokens", 0), 3 + i) << r.dump();
    }
  }

  // (d) A server that stops reading after 256 KiB: the client's 64 MiB body fills both socket
  // buffers; the client gives up after 1 s. Never complete, never answered: no record, counted
  // in infertap_requests_incomplete_total.
  {
    const double incomplete0 = Metric("infertap_requests_incomplete_total");
    std::atomic<bool> client_gone{false};
    // The agent traces the server's syscalls: it sees what the server read (256 KiB), then the
    // server stops reading.
    sink.SetHandler([&](int fd) {
      Discard(fd, 256u << 10);
      while (!client_gone) std::this_thread::sleep_for(milliseconds(20));
    });
    int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSinkPort);
    ASSERT_GE(fd, 0);
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    const std::string body(64u << 20, 'a');
    const std::string head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        "content-length: " +
        std::to_string(body.size() + 20) + "\r\n\r\n{\"model\":\"stall\",\"x\":\"";
    EXPECT_TRUE(SendAll(fd, head));
    EXPECT_FALSE(SendAll(fd, body)) << "64 MiB went into a server that stopped reading";
    close(fd);
    std::this_thread::sleep_for(milliseconds(300));
    client_gone = true;
    EXPECT_TRUE(
        WaitUntil(milliseconds(5000),
                  [&] { return Metric("infertap_requests_incomplete_total") == incomplete0 + 1; }))
        << "requests_incomplete_total " << Metric("infertap_requests_incomplete_total")
        << " (before " << incomplete0 << ")";
    EXPECT_TRUE(ByModel(Records(), "stall").empty());
  }

  // (e) The server is SIGKILLed under 40 open streams.
  {
    const double inc0 = incomplete_errors();
    const std::string truth = tmp_.File("kill.truth.jsonl");
    ChildProcess load(InNetns(
        net_->cli(), {Bin("infertap-load"), "--url", "http://" + sim_addr_ + "/v1/chat/completions",
                      "--truth", truth, "-c", "40", "-n", "40", "--unique-models", "--model",
                      "kill", "--tokens", "2000", "-H", "x-sim-itl-ms: 5", "--timeout", "20"}));
    std::string error;
    ASSERT_TRUE(load.Start(&error)) << error;
    EXPECT_TRUE(WaitUntil(milliseconds(10000),
                          [&] { return Metric("inference_model_running_requests") == 40; }))
        << "running " << Metric("inference_model_running_requests");
    std::this_thread::sleep_for(milliseconds(300));
    sim_->Stop(SIGKILL, milliseconds(1000));
    EXPECT_TRUE(WaitUntil(milliseconds(20000), [&] { return load.Exited(); }));
    const auto t = TruthByModel(truth);
    ASSERT_EQ(t.size(), 40u);
    const auto recs = ByModel(SettledRecords("kill-", 40, milliseconds(10000)), "kill-");
    EXPECT_EQ(recs.size(), 40u);
    for (const auto& [model, rs] : recs) {
      ASSERT_EQ(rs.size(), 1u) << model;
      EXPECT_EQ(rs[0].value("error_code", ""), "Incomplete") << rs[0].dump();
      EXPECT_EQ(rs[0].value("status", 0), 200) << rs[0].dump();
      EXPECT_EQ(JudgeRecord(rs[0], t.at(model)), "incomplete") << rs[0].dump();
    }
    EXPECT_EQ(incomplete_errors() - inc0, 40);
    EXPECT_EQ(Metric("inference_model_running_requests"), 0);
  }
  std::printf(
      "[faults] server faults: server RST 40, client RST 10, SIGKILL 40 streams: every "
      "record Incomplete with status 200; half-close 5 exact; stalled server: no "
      "record, requests_incomplete_total +1; tracked back to %.0f, BPF conns map "
      "entries to %ld\n",
      tracked0, entries0);
  ExpectConnectionStateAt(tracked0, entries0, conns_map);
}

// ---- 4. Hostile bytes ---------------------------------------------------------------------------

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// A TLS 1.2 ClientHello record (RFC 5246 §7.4.1.2 layout): handshake type 1, one cipher suite,
// null compression, no extensions.
std::string TlsClientHello() {
  std::string hello = "\x03\x03" + std::string(32, '\x11') + std::string("\x00", 1) +
                      std::string("\x00\x02\x13\x01", 4) + std::string("\x01\x00", 2);
  std::string hs = "\x01" + std::string("\x00", 1) + static_cast<char>(hello.size() >> 8) +
                   static_cast<char>(hello.size() & 0xff) + hello;
  return "\x16\x03\x01" + std::string(1, static_cast<char>(hs.size() >> 8)) +
         static_cast<char>(hs.size() & 0xff) + hs;
}

std::string JsonAnswer(int completion_tokens, const std::string& model = "m") {
  const std::string body =
      "{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"" + model +
      "\",\"choices\":[{\"index\":0,"
      "\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],"
      "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":" +
      std::to_string(completion_tokens) +
      ",\"total_tokens\":" + std::to_string(completion_tokens + 2) + "}}";
  return "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Floods of random bytes, TLS ClientHellos, HTTP/2 prefaces, 10 MB of headers, a 50 MB request
// body, a 256 MiB chunked response, invalid JSON, invalid UTF-8 and a 10 MB SSE line on a traced
// port: the agent's memory stays bounded (VmHWM from /proc), each is counted under its parse-error
// reason, the exchanges that are inference requests get their records, and exchanges on other
// connections stay exact.
TEST_F(FaultsE2E, HostileBytesAreCountedAndMemoryStaysBounded) {
  StartSim({"--tokens", "8", "--ttft-ms", "0", "--itl-ms", "0", "--max-running", "0"});
  StartAgent({});
  RawServer sink(net_->srv(), net_->srv_v4(), kSinkPort);
  ASSERT_TRUE(sink.ok());
  // Warm up (ring buffer pages, parser pools) so the peak below measures the hostile input only.
  const std::string warm = tmp_.File("warm.truth.jsonl");
  RunLoad({"-c", "8", "-n", "400", "--tokens", "16", "--include-usage"}, warm);
  const uint64_t rss0 = RssBytes(agent_->pid());
  auto reason = [&](const std::string& r) {
    return Metric("infertap_parse_errors_total", "reason", r);
  };
  std::map<std::string, double> before;
  for (const char* r : {"http_invalid", "header_cap", "json_invalid", "sse_oversize", "body_cap"})
    before[r] = reason(r);
  const double lost_before = Metric("infertap_capture_lost_events_total");

  auto client = [&](const std::string& bytes, bool half_close, std::string* reply) {
    int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSinkPort);
    if (fd < 0) return false;
    bool ok = SendAll(fd, bytes);
    if (half_close) shutdown(fd, SHUT_WR);
    std::string got = ReadAll(fd, size_t(1) << 31);
    if (reply) *reply = std::move(got);
    close(fd);
    return ok;
  };
  const int handled0 = sink.handled();
  auto wait_handled = [&](int n) {
    return WaitUntil(milliseconds(20000), [&] { return sink.handled() >= handled0 + n; });
  };

  // Non-HTTP floods: read to EOF, no answer.
  sink.SetHandler([](int fd) { ReadAll(fd, size_t(1) << 31); });
  ASSERT_TRUE(client(RandomBytes(4u << 20, 1), true, nullptr));
  std::string hellos;
  for (int i = 0; i < 1000; ++i) hellos += TlsClientHello();
  ASSERT_TRUE(client(hellos, true, nullptr));
  std::string h2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  h2 += std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);  // empty SETTINGS frame
  h2 += RandomBytes(1u << 20, 2);
  ASSERT_TRUE(client(h2, true, nullptr));
  // 10 MB of headers on a POST to an inference path.
  std::string big_head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
  while (big_head.size() < 10'000'000) big_head += "x-pad: " + std::string(1000, 'h') + "\r\n";
  big_head += "content-length: 2\r\n\r\n{}";
  ASSERT_TRUE(client(big_head, true, nullptr));
  ASSERT_TRUE(wait_handled(4));

  // Requests the raw server answers.
  // A 50 MB request body (model in its first bytes).
  const size_t big_body = 50'000'000;
  {
    std::string head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
        "application/json\r\ncontent-length: " +
        std::to_string(big_body) + "\r\n\r\n";
    std::string body = "{\"model\":\"hostile-bigbody\",\"pad\":\"";
    body += std::string(big_body - body.size() - 2, 'p') + "\"}";
    sink.SetHandler([&](int fd) {
      Discard(fd, head.size() + big_body);
      SendAll(fd, JsonAnswer(5));
    });
    std::string reply;
    ASSERT_TRUE(client(head + body, false, &reply));
    ASSERT_EQ(reply.compare(0, 12, "HTTP/1.1 200"), 0) << reply.substr(0, 100);
  }
  // Invalid JSON and invalid UTF-8 in the request body: the model is unknown from the request,
  // so the record takes the response's (docs/records.md).
  for (const auto& [body, answer_model] : std::vector<std::pair<std::string, std::string>>{
           {"{\"model\":\"hostile-badjson\",\"messages\":[{\"role\":", "hostile-badjson-resp"},
           {"{\"model\":\"hostile-utf8-\xff\xfe\xc3\",\"messages\":[]}", "hostile-utf8-resp"}}) {
    const std::string req =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
        "application/json\r\ncontent-length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    sink.SetHandler([&](int fd) {
      Discard(fd, req.size());
      SendAll(fd, JsonAnswer(3, answer_model));
    });
    std::string reply;
    ASSERT_TRUE(client(req, false, &reply));
    ASSERT_EQ(reply.compare(0, 12, "HTTP/1.1 200"), 0);
  }
  // A 256 MiB chunked JSON response (1 GB is the figure, run with FAULTS_FULL_SCALE=1;
  // 256 MiB keeps the case within the tier's time budget and is still 256 times the JSON cap).
  const size_t big_response = FullScale() ? size_t(1) << 30 : size_t(256) << 20;
  std::string small_req_body;
  const std::string small_req = PlainRequest("x", "hostile-bigresp", 4, &small_req_body);
  {
    sink.SetHandler([&](int fd) {
      Discard(fd, small_req.size());
      SendAll(fd,
              "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
              "transfer-encoding: chunked\r\n\r\n");
      // 256 chunks of 1 MiB: one JSON object whose string value is spaces.
      const size_t piece = 1u << 20, pieces = big_response / piece;
      const std::string prefix = "{\"model\":\"m\",\"pad\":\"";
      for (size_t i = 0; i < pieces; ++i) {
        std::string p(piece, ' ');
        if (i == 0) p.replace(0, prefix.size(), prefix);
        if (i + 1 == pieces) p.replace(piece - 2, 2, "\"}");
        if (!SendAll(fd, Chunk(p), 64u << 10)) return;
      }
      SendAll(fd, "0\r\n\r\n");
    });
    int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSinkPort);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, small_req));
    const std::string reply = ReadAll(fd, 2 * big_response);
    close(fd);
    EXPECT_GT(reply.size(), big_response);
  }
  // A 10 MB SSE line, then a normal event and [DONE].
  const std::string sse_req = StreamRequest("x", "hostile-sse", 3, 0);
  const std::vector<std::string> sse_events = {
      "data: " + std::string(10'000'000, 'z') + "\n\n",
      "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{"
      "\"index\":0,\"delta\":{\"content\":\"tok\"},\"finish_reason\":null}]}\n\n",
      "data: [DONE]\n\n"};
  {
    sink.SetHandler([&](int fd) {
      Discard(fd, sse_req.size());
      SendAll(fd,
              "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
              "transfer-encoding: chunked\r\n\r\n");
      SendAll(fd, Chunk(sse_events[0]), 64u << 10);
      SendAll(fd, Chunk(sse_events[1]));
      SendAll(fd, Chunk(sse_events[2]) + "0\r\n\r\n");
    });
    int fd = ConnectIn(net_->cli(), net_->srv_v4(), kSinkPort);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, sse_req));
    shutdown(fd, SHUT_WR);
    const std::string reply = ReadAll(fd, size_t(1) << 30);
    close(fd);
    EXPECT_GT(reply.size(), 10'000'000u);
  }

  const auto recs = ByModel(SettledRecords("hostile-sse", 1, milliseconds(20000)), "hostile-");
  std::map<std::string, double> delta;
  for (const auto& [r, v] : before) delta[r] = reason(r) - v;
  const uint64_t peak = PeakRssBytes(agent_->pid()), rss1 = RssBytes(agent_->pid());
  std::printf(
      "[faults] hostile: parse errors http_invalid +%.0f header_cap +%.0f json_invalid "
      "+%.0f sse_oversize +%.0f body_cap +%.0f; agent RSS %.1f MiB before, %.1f MiB "
      "after, peak %.1f MiB; records:",
      delta["http_invalid"], delta["header_cap"], delta["json_invalid"], delta["sse_oversize"],
      delta["body_cap"], rss0 / 1048576.0, rss1 / 1048576.0, peak / 1048576.0);
  for (const auto& [m, rs] : recs) std::printf(" %s", rs[0].dump().c_str());
  std::printf("\n");
  EXPECT_GE(delta["http_invalid"], 3) << "random bytes, TLS and HTTP/2 each an http_invalid";
  EXPECT_GE(delta["header_cap"], 1);
  EXPECT_GE(delta["json_invalid"], 1);
  EXPECT_GE(delta["sse_oversize"], 1);
  EXPECT_GE(delta["body_cap"], 1);
  // Bounded: 50 MB bodies, 256 MiB responses and 10 MB lines are streamed through, not kept.
  EXPECT_LT(peak, rss0 + (48u << 20)) << "peak RSS grew by " << (peak - rss0) / 1048576.0 << " MiB";

  // The inference exchanges among them got their records. The 50 MB body crosses the ring at
  // loopback speed: when the agent falls behind, the loss is counted and the exchange may be
  // Incomplete or, when its head was lost, absent — never wrong (docs/capture.md). Without a
  // counted loss the record must be there and exact.
  const double lost = Metric("infertap_capture_lost_events_total") - lost_before;
  std::printf("[faults] hostile: capture events lost during the case: %.0f\n", lost);
  if (lost == 0 || recs.count("hostile-bigbody")) {
    ASSERT_TRUE(recs.count("hostile-bigbody")) << "no record for the 50 MB request, nothing lost";
    const Json& bb = recs.at("hostile-bigbody")[0];
    EXPECT_EQ(bb.value("status", 0), 200) << bb.dump();
    if (lost == 0 || bb.value("error_code", "") == "") {
      EXPECT_EQ(bb.value("error_code", "x"), "") << bb.dump();
      EXPECT_EQ(bb.value("request_bytes", 0u), big_body) << bb.dump();
      EXPECT_EQ(bb.value("output_tokens", 0), 5) << bb.dump();
    } else {
      EXPECT_EQ(bb.value("error_code", ""), "Incomplete") << bb.dump();
      EXPECT_LE(bb.value("request_bytes", 0u), big_body) << bb.dump();
    }
  }
  ASSERT_TRUE(recs.count("hostile-bigresp")) << "no record for the big chunked response";
  const Json& br = recs.at("hostile-bigresp")[0];
  EXPECT_EQ(br.value("status", 0), 200) << br.dump();
  if (br.value("error_code", "") == "") {
    EXPECT_EQ(br.value("response_bytes", 0u), big_response) << br.dump();
  } else {
    EXPECT_EQ(br.value("error_code", ""), "Incomplete") << br.dump();
  }
  ASSERT_TRUE(recs.count("hostile-sse")) << "no record for the 10 MB SSE line";
  // The oversize event is dropped (docs/parsing.md#sse); the rest of the stream is exact.
  const Json& sr = recs.at("hostile-sse")[0];
  EXPECT_EQ(sr.value("status", 0), 200) << sr.dump();
  EXPECT_EQ(sr.value("chunks", 0), 1) << sr.dump();
  EXPECT_EQ(sr.value("response_bytes", 0u),
            sse_events[0].size() + sse_events[1].size() + sse_events[2].size())
      << sr.dump();
  for (const char* m : {"hostile-badjson-resp", "hostile-utf8-resp"}) {
    ASSERT_TRUE(recs.count(m)) << "no record for " << m;
    const Json& r = recs.at(m)[0];
    EXPECT_EQ(r.value("status", 0), 200) << r.dump();
    EXPECT_EQ(r.value("error_code", "x"), "") << r.dump();
    EXPECT_EQ(r.value("output_tokens", 0), 3) << r.dump();
  }
  EXPECT_EQ(delta["json_invalid"], 2) << "the invalid JSON and the invalid UTF-8 body";

  // Other connections are exact afterwards.
  const std::string truth = tmp_.File("after-hostile.truth.jsonl");
  int rc = 0;
  RunLoad({"-c", "4", "-n", "100", "--unique-models", "--model", "calm", "--tokens", "5",
           "--include-usage"},
          truth, &rc);
  ASSERT_EQ(rc, 0);
  const auto t = TruthByModel(truth);
  const auto calm = ByModel(SettledRecords("calm-", 100, milliseconds(10000)), "calm-");
  EXPECT_EQ(calm.size(), 100u);
  for (const auto& [model, rs] : calm) {
    EXPECT_EQ(rs.size(), 1u);
    EXPECT_EQ(JudgeRecord(rs[0], t.at(model)), "") << rs[0].dump();
  }
}

// ---- 7. Pool scrapes ---------------------------------------------------------------------------

// One pool of three pods: the simulator (good /metrics), a raw server answering /metrics with
// 100 MB (later with garbage), and one that accepts and never answers. The bad two go stale and
// are counted, the good one stays fresh with its values, and scraping 100 MB five times a second
// does not grow the agent's memory (the body cap is 8 MiB, docs/pool-gauges.md).
TEST_F(FaultsE2E, BadPoolScrapesStayPerPodAndBounded) {
  StartSim({"--tokens", "8", "--max-running", "0"});
  constexpr int kHangPort = 8002;
  RawServer huge(net_->srv(), net_->srv_v4(), kSinkPort);
  RawServer hang(net_->srv(), net_->srv_v4(), kHangPort);
  ASSERT_TRUE(huge.ok() && hang.ok());
  std::atomic<int> huge_bytes_mode{1};  // 1: 100 MB page, 0: garbage
  huge.SetHandler([&](int fd) {
    char buf[4096];
    if (recv(fd, buf, sizeof buf, 0) <= 0) return;
    if (huge_bytes_mode) {
      const size_t total = 100'000'000;
      SendAll(fd, "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: " +
                      std::to_string(total) + "\r\n\r\n");
      const std::string line = "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 1\n";
      std::string piece;
      while (piece.size() < (1u << 20)) piece += line;
      for (size_t sent = 0; sent < total;) {
        const size_t n = std::min(piece.size(), total - sent);
        if (!SendAll(fd, piece.substr(0, n))) return;  // the agent gave up: expected
        sent += n;
      }
    } else {
      const std::string body = "this is not { prometheus text\n\x01\x02\n";
      SendAll(fd, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: " +
                      std::to_string(body.size()) + "\r\n\r\n" + body);
    }
  });
  std::atomic<bool> stop_hang{false};
  hang.SetHandler([&](int fd) {
    // Never answers; gives up when the agent closes or the test ends.
    for (int i = 0; i < 100 && !stop_hang; ++i) {
      pollfd p{fd, POLLIN | POLLRDHUP, 0};
      if (poll(&p, 1, 50) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return;
    }
  });
  const std::string hang_addr = net_->srv_v4() + ":" + std::to_string(kHangPort);
  const std::string huge_addr = net_->srv_v4() + ":" + std::to_string(kSinkPort);
  poll_args_ = {"--poll-interval", "0.2", "--metrics-staleness", "1"};
  StartAgent({"--target", hang_addr});
  const uint64_t rss0 = RssBytes(agent_->pid());
  auto errors_of = [&](const std::string& pod) {
    return Metric("infertap_pool_scrape_errors_total", "model_server_pod", pod);
  };
  std::this_thread::sleep_for(milliseconds(4000));
  const std::string m = Metrics();
  const double ready = SumSamples(m, "inference_pool_ready_pods");
  const double sim_errors = errors_of(sim_addr_), huge_errors = errors_of(huge_addr),
               hang_errors = errors_of(hang_addr);
  const auto samples = ParsePromText(m);
  const bool sim_queue =
      FindSample(samples, "inference_pool_per_pod_queue_size", {{"model_server_pod", sim_addr_}})
          .has_value();
  const bool huge_queue =
      FindSample(samples, "inference_pool_per_pod_queue_size", {{"model_server_pod", huge_addr}})
          .has_value();
  const bool hang_queue =
      FindSample(samples, "inference_pool_per_pod_queue_size", {{"model_server_pod", hang_addr}})
          .has_value();
  EXPECT_EQ(ready, 1) << "only the simulator's /metrics is good";
  EXPECT_EQ(sim_errors, 0);
  EXPECT_GE(huge_errors, 5) << "100 MB pages every 0.2 s for 4 s";
  EXPECT_GE(hang_errors, 2) << "a 1 s timeout every 0.2 s for 4 s";
  EXPECT_TRUE(sim_queue);
  EXPECT_FALSE(huge_queue);
  EXPECT_FALSE(hang_queue);
  const uint64_t peak = PeakRssBytes(agent_->pid());
  // Garbage instead of 100 MB: still counted, still stale.
  huge_bytes_mode = 0;
  const double before_garbage = errors_of(huge_addr);
  std::this_thread::sleep_for(milliseconds(1500));
  const double garbage_errors = errors_of(huge_addr) - before_garbage;
  EXPECT_GE(garbage_errors, 3);
  EXPECT_EQ(errors_of(sim_addr_), 0);
  EXPECT_EQ(SumSamples(Metrics(), "inference_pool_ready_pods"), 1);
  std::printf(
      "[faults] pool: ready_pods %.0f; scrape errors in 4 s: good pod %.0f, 100 MB pod "
      "%.0f, hanging pod %.0f; garbage pod +%.0f in 1.5 s; agent RSS %.1f MiB at start, "
      "peak %.1f MiB\n",
      ready, sim_errors, huge_errors, hang_errors, garbage_errors, rss0 / 1048576.0,
      peak / 1048576.0);
  EXPECT_LT(peak, rss0 + (32u << 20))
      << "scraping 100 MB pages grew the agent by " << (peak - rss0) / 1048576.0 << " MiB";
  stop_hang = true;
  agent_.reset();
}

// ---- 5. Restarts --------------------------------------------------------------------------------

void ExpectReleased(const BpfObjects& o, const std::string& who) {
  std::vector<std::string> left;
  const bool gone = WaitUntil(
      milliseconds(5000),
      [&] {
        left.clear();
        for (uint32_t id : o.progs) {
          if (BpfProgExists(id)) left.push_back("prog " + std::to_string(id));
        }
        for (uint32_t id : o.maps) {
          if (BpfMapExists(id)) left.push_back("map " + std::to_string(id));
        }
        for (uint32_t id : o.links) {
          if (BpfLinkExists(id)) left.push_back("link " + std::to_string(id));
        }
        return left.empty();
      },
      milliseconds(200));
  EXPECT_TRUE(gone) << who << ": " << left.size() << " BPF objects remain, first " << left[0];
}

// The agent SIGKILLed under load leaves no BPF program, map or link behind; a new agent picks up
// a keep-alive connection opened before it and counts its next requests exactly; SIGTERM under
// heavy load stops the agent within 2 s, releasing everything too.
TEST_F(FaultsE2E, RestartsLeaveNothingBehindAndPickUpOpenConnections) {
  StartSim({"--tokens", "8", "--ttft-ms", "0", "--itl-ms", "0", "--max-running", "0"});
  StartAgent({});
  int keep = ConnectIn(net_->cli(), net_->srv_v4(), kSimPort);
  ASSERT_GE(keep, 0);
  {
    int status = 0;
    std::string body;
    ASSERT_TRUE(SendAll(keep, PlainRequest(sim_addr_, "pre-0", 4, nullptr)));
    ASSERT_TRUE(ReadContentLengthResponse(keep, &status, &body));
    ASSERT_EQ(ByModel(SettledRecords("pre-0", 1, milliseconds(5000)), "pre-0").size(), 1u);
  }
  const BpfObjects first = BpfObjectsOf(agent_->pid());
  ASSERT_GT(first.progs.size(), 0u);
  ASSERT_GT(first.maps.size(), 0u);
  ASSERT_GT(first.links.size(), 0u);

  const std::string truth = tmp_.File("restart-load.truth.jsonl");
  ChildProcess load(InNetns(
      net_->cli(), {Bin("infertap-load"), "--url", "http://" + sim_addr_ + "/v1/chat/completions",
                    "--truth", truth, "-c", "16", "-d", "3", "--tokens", "8"}));
  std::string error;
  ASSERT_TRUE(load.Start(&error)) << error;
  std::this_thread::sleep_for(milliseconds(1000));
  EXPECT_EQ(agent_->Stop(SIGKILL, milliseconds(1000)), 128 + SIGKILL);
  ExpectReleased(first, "after SIGKILL");
  EXPECT_TRUE(WaitUntil(milliseconds(20000), [&] { return load.Exited(); }));

  StartAgent({});
  const BpfObjects second = BpfObjectsOf(agent_->pid());
  EXPECT_EQ(second.progs.size(), first.progs.size());
  EXPECT_EQ(second.maps.size(), first.maps.size());
  EXPECT_EQ(second.links.size(), first.links.size());
  // The connection opened before this agent started: its next requests are counted exactly.
  for (int i = 0; i < 5; ++i) {
    std::string req_body, body;
    int status = 0;
    const std::string model = "post-" + std::to_string(i);
    ASSERT_TRUE(SendAll(keep, PlainRequest(sim_addr_, model, 2 + i, &req_body)));
    ASSERT_TRUE(ReadContentLengthResponse(keep, &status, &body));
    const auto recs = ByModel(SettledRecords(model, 1, milliseconds(5000)), model);
    ASSERT_EQ(recs.size(), 1u) << model;
    const Json& r = recs.begin()->second.at(0);
    EXPECT_EQ(r.value("error_code", "x"), "") << r.dump();
    EXPECT_EQ(r.value("status", 0), status) << r.dump();
    EXPECT_EQ(r.value("request_bytes", 0u), req_body.size()) << r.dump();
    EXPECT_EQ(r.value("response_bytes", 0u), body.size()) << r.dump();
    EXPECT_EQ(r.value("output_tokens", 0), 2 + i) << r.dump();
  }
  close(keep);

  // SIGTERM under heavy load: stopped within 2 s, everything released.
  ChildProcess heavy(InNetns(
      net_->cli(), {Bin("infertap-load"), "--url", "http://" + sim_addr_ + "/v1/chat/completions",
                    "-c", "64", "-d", "4", "--tokens", "16"}));
  ASSERT_TRUE(heavy.Start(&error)) << error;
  std::this_thread::sleep_for(milliseconds(1500));
  const auto t0 = steady_clock::now();
  const int rc = agent_->Stop(SIGTERM, milliseconds(5000));
  const double stop_s = Seconds(t0);
  std::printf(
      "[faults] restart: SIGKILL released %zu progs, %zu maps, %zu links; SIGTERM under "
      "64-connection load stopped in %.3f s (exit %d)\n",
      first.progs.size(), first.maps.size(), first.links.size(), stop_s, rc);
  EXPECT_EQ(rc, 0) << agent_->err();
  // SPEC §11: within 2 s. With the per-syscall tracepoints this took 1.0-2.3 s (each of ~25
  // perf events waited for RCU grace periods under a global mutex when released); the three
  // raw tracepoints detach without waiting (docs/faults.md#agent-restart).
  EXPECT_LT(stop_s, 2.0) << agent_->err();
  ExpectReleased(second, "after SIGTERM");
  EXPECT_TRUE(WaitUntil(milliseconds(20000), [&] { return heavy.Exited(); }));
}

}  // namespace
}  // namespace infertap::e2e::faults
