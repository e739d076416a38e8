// The agent end to end on one machine (root, real BPF): infertap-sim in the "srv" network
// namespace, `infertap run` tracing it, curl in the "cli" namespace as the client. Every record
// on /v1/records and every metric on /metrics is compared with what curl sent and received,
// request by request; promtool lints the exposition and a real Prometheus server scrapes it.
//
// The agent runs inside the cli namespace, not the root one: the veth pair joins only srv and
// cli, so only from there can its pool poller reach the simulator's /metrics. BPF programs see
// every namespace, so capture does not care where the agent process lives. The inspection and
// metrics ports are therefore the cli namespace's loopback, and every client here (curl, the
// /v1/records subscriber, Prometheus) runs in that namespace too.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "test/e2e/agent_e2e_util.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e {
namespace {

using std::chrono::milliseconds;
using Json = nlohmann::json;

constexpr int kSimPort = 8000;
// Fresh namespaces: fixed ports cannot collide with anything else on the machine.
constexpr int kMetricsPort = 9090;
constexpr int kInspectPort = 9091;
constexpr int kPrometheusPort = 9190;
// What the simulator serves (the requests' `model`, so target_model_name) and the client-facing
// name the agent maps it to with --model-alias (model_name).
constexpr char kTarget[] = "tiny-llm";
constexpr char kModel[] = "chat-app";
// Simulator defaults; individual requests override them with x-sim-* headers.
constexpr int kSimTtftMs = 20;
constexpr int kSimItlMs = 2;
constexpr int kKvCapacityTokens = 1000;

// The seed duration buckets (docs/metrics.md#seed-metrics).
const std::vector<double> kDurationBuckets = {0.005, 0.025, 0.05, 0.1, 0.2,  0.4,  0.6,  0.8, 1,
                                              1.25,  1.5,   2,    3,   4,    5,    6,    8,   10,
                                              15,    20,    30,   45,  60,   120,  180,  240, 300,
                                              360,   480,   600,  900, 1200, 1800, 2700, 3600};

std::string Env(const char* name, const std::string& dflt) {
  const char* v = std::getenv(name);
  return v && *v ? v : dflt;
}

std::string SimBinary() { return std::string(INFERTAP_BINARY_DIR) + "/infertap-sim"; }

// `ip netns exec NS argv...`; `ip` execs the program, so the child's pid is the program's.
std::vector<std::string> InNetns(const std::string& ns, std::vector<std::string> argv) {
  std::vector<std::string> full = {"/usr/bin/env", "ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  return full;
}

// Seconds since the epoch from the record's `ts` (RFC 3339, UTC, nanoseconds).
std::optional<double> ParseTs(const std::string& ts) {
  struct tm tm {};
  int frac_digits = 0;
  long long frac = 0;
  if (ts.size() < 20 || ts.back() != 'Z') return std::nullopt;
  const char* rest = strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return std::nullopt;
  if (*rest == '.') {
    ++rest;
    while (*rest >= '0' && *rest <= '9') {
      frac = frac * 10 + (*rest - '0');
      ++frac_digits;
      ++rest;
    }
  }
  if (std::string(rest) != "Z") return std::nullopt;
  return double(timegm(&tm)) + double(frac) / std::pow(10.0, frac_digits);
}

double WallNow() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

// One HTTP exchange driven by curl, and what the agent must report for it.
struct Transfer {
  std::string name;  // for failure messages
  std::string path;  // "" body → GET
  std::string body;
  std::vector<std::string> headers;
  std::string curl_extra;  // per-transfer curl options, e.g. --max-time
  bool inference = true;   // false: the agent must ignore it (no record)

  // Expectations for the record.
  int status = 200;
  bool stream = false;
  std::string error_code;
  std::optional<uint64_t> input_tokens, output_tokens;
  int chunks = 0;         // content events the simulator streams
  double min_ttft_s = 0;  // the simulator's time to first token
  double min_duration_s = 0;
  // Client gone before the end: the server kept writing after curl stopped reading, so the
  // agent legitimately sees more bytes and a later end than curl.
  bool client_abort = false;
};

// What curl measured for one transfer.
struct CurlResult {
  int http_code = 0;
  uint64_t size_download = 0, size_upload = 0;
  double time_total = 0;
  int num_connects = 0;
  int exit_code = 0;
  std::string body;  // as curl wrote it: de-chunked
};

// Counts the simulator's content events in a de-chunked SSE body: token i is the text "tok<i> ".
int CountContentEvents(const std::string& body) {
  int n = 0;
  for (const char* key : {"\"content\":\"tok", "\"text\":\"tok"}) {
    for (size_t at = body.find(key); at != std::string::npos; at = body.find(key, at + 1)) ++n;
  }
  return n;
}

class AgentE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    INFERTAP_REQUIRE_BPF_OR_SKIP();
    test_start_wall_ = WallNow();
    ASSERT_FALSE(tmp_.path().empty()) << "mkdtemp failed";
    net_ = std::make_unique<NetnsPair>();
    ASSERT_TRUE(net_->ok());
    sim_addr_ = net_->srv_v4() + ":" + std::to_string(kSimPort);

    // --max-running 1: requests queue behind each other, which the busy-pool test needs and which
    // one-at-a-time traffic does not notice. --kv-capacity-tokens makes KV usage a visible number.
    sim_ = std::make_unique<ChildProcess>(
        InNetns(net_->srv(),
                {SimBinary(), "--listen", sim_addr_, "--model", kTarget, "--tokens", "8",
                 "--ttft-ms", std::to_string(kSimTtftMs), "--itl-ms", std::to_string(kSimItlMs),
                 "--max-running", "1", "--kv-capacity-tokens", std::to_string(kKvCapacityTokens)}));
    std::string error;
    ASSERT_TRUE(sim_->Start(&error)) << error;
    ASSERT_TRUE(sim_->WaitForOutput("listening on", milliseconds(10000)))
        << "infertap-sim did not start: " << sim_->out() << sim_->err();

    // A short poll interval and staleness window keep the pool phases quick.
    agent_ = std::make_unique<ChildProcess>(InNetns(
        net_->cli(), {InfertapBinary(), "run", "--target", sim_addr_, "--metrics-auth", "none",
                      "--metrics-addr", Loopback(kMetricsPort), "--inspect-addr",
                      Loopback(kInspectPort), "--model-alias", std::string(kTarget) + "=" + kModel,
                      "--poll-interval", "0.2", "--metrics-staleness", "1"}));
    ASSERT_TRUE(agent_->Start(&error)) << error;
    ASSERT_TRUE(agent_->WaitForOutput("running: tracing", milliseconds(30000)))
        << "agent did not start: " << agent_->err();
    int code = 0;
    ASSERT_TRUE(WaitUntil(milliseconds(5000),
                          [&] {
                            CurlIn(net_->cli(), Url(kMetricsPort, "/readyz"), "", nullptr, &code);
                            return code == 200;
                          }))
        << "/readyz never turned 200 (last " << code << ")";

    // -D /dev/stderr: the response head shows up once the server has subscribed us (the
    // subscription starts before the head is written), so no record can be missed after that.
    records_ = std::make_unique<ChildProcess>(
        InNetns(net_->cli(),
                {"/usr/bin/curl", "-sN", "-D", "/dev/stderr", Url(kInspectPort, "/v1/records")}));
    ASSERT_TRUE(records_->Start(&error)) << error;
    ASSERT_TRUE(records_->WaitForOutput("HTTP/1.1 200", milliseconds(5000)))
        << "/v1/records did not answer: " << records_->err();
  }

  void TearDown() override {
    // Children first, namespaces last (members are destroyed in reverse order anyway; this
    // makes the order explicit and independent of declaration order).
    records_.reset();
    agent_.reset();
    sim_.reset();
    net_.reset();
  }

  static std::string Loopback(int port) { return "127.0.0.1:" + std::to_string(port); }
  static std::string Url(int port, const std::string& path) {
    return "http://" + Loopback(port) + path;
  }
  std::string SimUrl(const std::string& path) const { return "http://" + sim_addr_ + path; }

  // The JSON records received so far (heartbeat blank lines skipped).
  std::vector<Json> Records() const {
    std::vector<Json> out;
    std::istringstream in(records_->out());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  bool WaitForRecords(size_t n, milliseconds timeout) {
    return WaitUntil(timeout, [&] { return Records().size() >= n; });
  }

  std::vector<PromSample> Metrics() const {
    std::string body;
    int code = 0;
    CurlIn(net_->cli(), Url(kMetricsPort, "/metrics"), "", &body, &code);
    return code == 200 ? ParsePromText(body) : std::vector<PromSample>{};
  }

  std::vector<PromSample> SimMetrics() const {
    std::string body;
    int code = 0;
    CurlIn(net_->cli(), SimUrl("/metrics"), "", &body, &code);
    return code == 200 ? ParsePromText(body) : std::vector<PromSample>{};
  }

  // Runs the transfers in ONE curl invocation (joined by --next, so curl reuses the
  // connection) from the cli namespace.
  std::vector<CurlResult> RunCurl(const std::vector<Transfer>& transfers) {
    std::string cmd = "ip netns exec " + ShellQuote(net_->cli()) + " curl";
    for (size_t i = 0; i < transfers.size(); ++i) {
      const Transfer& t = transfers[i];
      const std::string base = tmp_.File("t" + std::to_string(seq_) + "-" + std::to_string(i));
      if (i > 0) cmd += " --next";
      cmd += " -s -o " + ShellQuote(base + ".out");
      cmd +=
          " -w '%{http_code} %{size_download} %{size_upload} %{time_total} %{num_connects} "
          "%{exitcode}\\n'";
      for (const auto& h : t.headers) cmd += " -H " + ShellQuote(h);
      if (!t.body.empty()) {
        WriteFile(base + ".in", t.body);
        cmd += " -H 'content-type: application/json' --data-binary @" + ShellQuote(base + ".in");
      }
      if (!t.curl_extra.empty()) cmd += " " + t.curl_extra;
      cmd += " " + ShellQuote(SimUrl(t.path));
    }
    std::string out;
    Sh(cmd, &out);
    std::vector<CurlResult> results;
    std::istringstream in(out);
    for (size_t i = 0; i < transfers.size(); ++i) {
      CurlResult r;
      in >> r.http_code >> r.size_download >> r.size_upload >> r.time_total >> r.num_connects >>
          r.exit_code;
      r.body = ReadFile(tmp_.File("t" + std::to_string(seq_) + "-" + std::to_string(i) + ".out"));
      results.push_back(std::move(r));
    }
    EXPECT_TRUE(bool(in)) << "cannot parse curl's -w output: " << out;
    ++seq_;
    return results;
  }

  // `promtool check metrics` on the agent's /metrics exactly as served: exit 0 and no
  // complaint (the lint covers names, HELP, TYPE and the counter `_total` convention).
  void PromtoolCheck() {
    std::string body;
    int code = 0;
    CurlIn(net_->cli(), Url(kMetricsPort, "/metrics"), "", &body, &code);
    ASSERT_EQ(code, 200);
    const std::string file = tmp_.File("metrics-" + std::to_string(seq_++) + ".txt");
    ASSERT_TRUE(WriteFile(file, body));
    std::string out;
    const int rc =
        Sh(Env("PROMTOOL", "/usr/bin/promtool") + " check metrics < " + ShellQuote(file), &out);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "") << "promtool problems";
  }

  // The agent's graceful exit (docs/cli.md): SIGINT → exit 0, BPF released.
  void StopAgentGracefully() {
    const int rc = agent_->Stop(SIGINT, milliseconds(5000));
    EXPECT_EQ(rc, 0) << "agent exit status; stderr:\n" << agent_->err();
    EXPECT_NE(agent_->err().find("shutting down"), std::string::npos) << agent_->err();
  }

  std::map<std::string, std::string> Pair() const {
    return {{"model_name", kModel}, {"target_model_name", kTarget}};
  }
  std::map<std::string, std::string> Pool() const { return {{"name", "default"}}; }
  std::map<std::string, std::string> Pod() const {
    return {{"name", "default"}, {"model_server_pod", sim_addr_}};
  }

  TempDir tmp_;
  double test_start_wall_ = 0;
  int seq_ = 0;
  std::unique_ptr<NetnsPair> net_;
  std::string sim_addr_;
  std::unique_ptr<ChildProcess> sim_, agent_, records_;
};

// ---------------------------------------------------------------------------------------------
// The request catalogue. Prompt tokens are whitespace-separated words of the message contents
// (test/sim/README.md); completion tokens come from x-sim-tokens or max_tokens.

Json Chat(const std::vector<std::string>& contents, bool stream, bool include_usage) {
  Json msgs = Json::array();
  for (size_t i = 0; i < contents.size(); ++i)
    msgs.push_back(
        {{"role", i == 0 && contents.size() > 1 ? "system" : "user"}, {"content", contents[i]}});
  Json j = {{"model", kTarget}, {"messages", msgs}};
  if (stream) j["stream"] = true;
  if (include_usage) j["stream_options"] = {{"include_usage", true}};
  return j;
}

Transfer StreamWithUsage() {
  Transfer t;
  t.name = "1 chat stream, include_usage, ~0.3 s";
  t.path = "/v1/chat/completions";
  t.body = Chat({"be brief", "tell me a tiny story"}, true, true).dump();  // 2 + 5 words
  // ttft 150 ms + 9 × 15 ms = 285 ms at least: the known-duration request that must land in
  // the le="0.4" duration bucket and not in le="0.2".
  t.headers = {"x-sim-tokens: 10", "x-sim-ttft-ms: 150", "x-sim-itl-ms: 15"};
  t.stream = true;
  t.input_tokens = 7;
  t.output_tokens = 10;
  t.chunks = 10;
  t.min_ttft_s = 0.150;
  t.min_duration_s = 0.150 + 9 * 0.015;
  return t;
}

Transfer StreamWithoutUsage() {
  Transfer t;
  t.name = "2 chat stream, no usage";
  t.path = "/v1/chat/completions";
  t.body = Chat({"hello there"}, true, false).dump();
  t.headers = {"x-sim-tokens: 5"};
  t.stream = true;  // the simulator sent no usage: no tokens in the record
  t.chunks = 5;
  t.min_ttft_s = kSimTtftMs / 1e3;
  t.min_duration_s = (kSimTtftMs + 4 * kSimItlMs) / 1e3;
  return t;
}

Transfer NonStreaming() {
  Transfer t;
  t.name = "3 chat, not streaming";
  t.path = "/v1/chat/completions";
  t.body = Chat({"four words right here"}, false, false).dump();
  t.headers = {"x-sim-tokens: 6"};
  t.input_tokens = 4;
  t.output_tokens = 6;
  t.min_duration_s = (kSimTtftMs + 5 * kSimItlMs) / 1e3;
  return t;
}

Transfer CompletionsStream() {
  Transfer t;
  t.name = "4 completions stream, include_usage";
  t.path = "/v1/completions";
  t.body = Json({{"model", kTarget},
                 {"prompt", "one two three"},
                 {"max_tokens", 4},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}}})
               .dump();
  t.stream = true;
  t.input_tokens = 3;
  t.output_tokens = 4;
  t.chunks = 4;
  t.min_ttft_s = kSimTtftMs / 1e3;
  t.min_duration_s = (kSimTtftMs + 3 * kSimItlMs) / 1e3;
  return t;
}

Transfer Embeddings() {
  Transfer t;
  t.name = "5 embeddings";
  t.path = "/v1/embeddings";
  t.body = Json({{"model", kTarget}, {"input", "a b c d e"}}).dump();
  t.input_tokens = 5;
  t.output_tokens = 0;  // the simulator sends completion_tokens: 0, like vLLM
  return t;
}

Transfer StatusError(int status, const std::string& code) {
  Transfer t;
  t.name = std::to_string(status) + " error";
  t.path = "/v1/chat/completions";
  t.body = Chat({"this will fail"}, false, false).dump();
  t.headers = {"x-sim-status: " + std::to_string(status)};
  t.status = status;
  t.error_code = code;
  return t;
}

Transfer Models() {
  Transfer t;
  t.name = "11 GET /v1/models";
  t.path = "/v1/models";
  t.inference = false;
  return t;
}

Transfer MidstreamError() {
  Transfer t;
  t.name = "9 mid-stream error after 3 tokens";
  t.path = "/v1/chat/completions";
  t.body = Chat({"stream then fail"}, true, true).dump();
  t.headers = {"x-sim-tokens: 6", "x-sim-midstream-error-after: 3"};
  t.stream = true;
  t.error_code = "ModelServerError";
  t.chunks = 3;  // no usage chunk after an error event
  t.min_ttft_s = kSimTtftMs / 1e3;
  t.min_duration_s = (kSimTtftMs + 2 * kSimItlMs) / 1e3;
  return t;
}

Transfer ServerAbort() {
  Transfer t;
  t.name = "10a server abort (RST) after 2 tokens";
  t.path = "/v1/chat/completions";
  t.body = Chat({"stream then reset"}, true, true).dump();
  t.headers = {"x-sim-tokens: 6", "x-sim-abort-after: 2"};
  t.stream = true;
  t.error_code = "Incomplete";
  t.chunks = 2;
  t.min_ttft_s = kSimTtftMs / 1e3;
  t.min_duration_s = (kSimTtftMs + kSimItlMs) / 1e3;
  return t;
}

Transfer ClientAbort() {
  Transfer t;
  t.name = "10b client gives up (curl --max-time 0.5) during a 5 s stream";
  t.path = "/v1/chat/completions";
  t.body = Chat({"a very long answer please"}, true, true).dump();
  t.headers = {"x-sim-tokens: 100", "x-sim-itl-ms: 50"};
  t.curl_extra = "--max-time 0.5";
  t.stream = true;
  t.error_code = "Incomplete";
  t.min_ttft_s = kSimTtftMs / 1e3;
  t.client_abort = true;
  return t;
}

// Checks one record against the transfer that caused it and what curl measured.
void CheckRecord(const Json& r, const Transfer& t, const CurlResult& c, double test_start_wall) {
  SCOPED_TRACE("request \"" + t.name + "\", record " + r.dump());
  EXPECT_EQ(r.value("method", ""), "POST");
  EXPECT_EQ(r.value("path", ""), t.path);
  EXPECT_EQ(r.value("status", -1), t.status);
  EXPECT_EQ(c.http_code, t.client_abort ? 200 : t.status) << "curl's view of the status";
  EXPECT_EQ(r.value("stream", !t.stream), t.stream);
  EXPECT_EQ(r.value("error_code", "?"), t.error_code);
  EXPECT_EQ(r.value("model_name", ""), kModel);
  EXPECT_EQ(r.value("target_model_name", ""), kTarget);
  EXPECT_EQ(r.value("pool", ""), "default");
  EXPECT_EQ(r.value("role", ""), "server");

  // Sizes: request body as curl sent it; response body as curl received it (curl wrote it
  // de-chunked to the -o file).
  EXPECT_EQ(c.size_upload, t.body.size());
  EXPECT_EQ(r.value("request_bytes", uint64_t(0)), t.body.size());
  if (t.client_abort) {
    EXPECT_GE(r.value("response_bytes", uint64_t(0)), c.body.size());
    // At most the one or two events the server wrote before it noticed the client had gone.
    EXPECT_LE(r.value("response_bytes", uint64_t(0)), c.body.size() + 2048);
  } else {
    EXPECT_EQ(c.size_download, c.body.size()) << "curl's own count";
    EXPECT_EQ(r.value("response_bytes", uint64_t(0)), c.body.size());
  }

  // Tokens exactly as the simulator sent them; absent when it sent no usage.
  for (auto [key, want] :
       {std::pair{"input_tokens", t.input_tokens}, std::pair{"output_tokens", t.output_tokens}}) {
    if (want) {
      EXPECT_TRUE(r.contains(key)) << key << " missing";
      EXPECT_EQ(r.value(key, uint64_t(999999)), *want) << key;
    } else {
      EXPECT_FALSE(r.contains(key)) << key << " present although the server sent no usage";
    }
  }

  // Content events: what curl saw equals what the simulator was told to send, and the agent's
  // count matches (the client-abort case only has a lower bound: curl saw fewer). A JSON body
  // is not a stream of events: its one message has no chunks.
  const int seen = t.stream ? CountContentEvents(c.body) : 0;
  if (t.client_abort) {
    EXPECT_GT(seen, 0);
    EXPECT_GE(r.value("chunks", 0), seen);
  } else {
    EXPECT_EQ(seen, t.chunks) << "curl's body";
    EXPECT_EQ(r.value("chunks", -1), t.chunks);
  }

  // Timing: the server-side interval the agent measures lies inside curl's own; the
  // simulator's delays are lower bounds. 1 ms covers curl's µs rounding.
  const double duration = r.value("duration_s", -1.0);
  EXPECT_GT(duration, 0);
  EXPECT_GE(duration, t.min_duration_s);
  if (t.client_abort) {
    EXPECT_GE(duration, 0.3) << "curl gave up after 0.5 s";
    EXPECT_LE(duration, c.time_total + 0.3) << "the server notices within a few token writes";
  } else {
    EXPECT_LE(duration, c.time_total + 0.001) << "curl time_total " << c.time_total;
  }
  if (t.stream && (t.chunks > 0 || t.client_abort)) {
    ASSERT_TRUE(r.contains("ttft_s"));
    const double ttft = r["ttft_s"].get<double>();
    EXPECT_GT(ttft, 0);
    EXPECT_GE(ttft, t.min_ttft_s) << "the simulator waited this long before the first token";
    EXPECT_LT(ttft, duration);
  } else {
    EXPECT_FALSE(r.contains("ttft_s"));
  }
  // tpot = (end − first token) / (output_tokens − 1) (docs/records.md).
  if (t.output_tokens && *t.output_tokens > 1 && r.contains("ttft_s")) {
    ASSERT_TRUE(r.contains("tpot_s"));
    const double want = (duration - r["ttft_s"].get<double>()) / double(*t.output_tokens - 1);
    EXPECT_NEAR(r["tpot_s"].get<double>(), want, 1e-6);
  } else {
    EXPECT_FALSE(r.contains("tpot_s"));
  }

  // ts: wall-clock request start, between the test's start and now.
  auto ts = ParseTs(r.value("ts", ""));
  ASSERT_TRUE(ts.has_value()) << "ts not RFC 3339 UTC";
  EXPECT_GE(*ts, test_start_wall - 1.0);
  EXPECT_LE(*ts, WallNow() + 1.0);
}

// ---------------------------------------------------------------------------------------------

TEST_F(AgentE2E, TrafficRecordsMetricsPromtoolAndPrometheus) {
  // Prometheus starts now so that its startup overlaps the traffic.
  const std::string prom_config = tmp_.File("prometheus.yml");
  ASSERT_TRUE(WriteFile(prom_config,
                        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                        "scrape_configs:\n  - job_name: infertap\n    static_configs:\n"
                        "      - targets: ['" +
                            Loopback(kMetricsPort) + "']\n"));
  ChildProcess prometheus(InNetns(
      net_->cli(), {Env("PROMETHEUS", "/usr/bin/prometheus"), "--config.file=" + prom_config,
                    "--storage.tsdb.path=" + tmp_.File("tsdb"),
                    "--web.listen-address=" + Loopback(kPrometheusPort)}));
  std::string error;
  ASSERT_TRUE(prometheus.Start(&error)) << error;

  // ---- traffic, one exchange at a time; records arrive in completion order ----
  std::vector<std::pair<Transfer, CurlResult>> done;
  auto drive = [&](std::vector<Transfer> group, bool expect_reuse) {
    const size_t before = Records().size();
    std::vector<CurlResult> res = RunCurl(group);
    size_t inference = 0;
    for (size_t i = 0; i < group.size(); ++i) {
      if (expect_reuse) {
        EXPECT_EQ(res[i].num_connects, i == 0 ? 1 : 0)
            << group[i].name << ": curl did not reuse the keep-alive connection";
      }
      if (group[i].inference) {
        ++inference;
        done.emplace_back(group[i], res[i]);
      }
    }
    EXPECT_TRUE(WaitForRecords(before + inference, milliseconds(5000)))
        << "records after \"" << group[0].name << "\": " << Records().size() - before << " of "
        << inference;
  };
  // Keep-alive: several exchanges on one connection.
  drive({StreamWithUsage(), StreamWithoutUsage(), NonStreaming()}, true);
  drive({CompletionsStream(), Embeddings()}, true);
  drive({StatusError(400, "BadRequest"), StatusError(404, "NotFound"),
         StatusError(500, "ModelServerError"), Models()},
        true);
  drive({MidstreamError()}, false);
  drive({ServerAbort()}, false);
  drive({ClientAbort()}, false);

  // ---- records, request by request ----
  const std::vector<Json> records = Records();
  ASSERT_EQ(records.size(), done.size()) << "one record per inference exchange, none for GET";
  for (size_t i = 0; i < done.size(); ++i)
    CheckRecord(records[i], done[i].first, done[i].second, test_start_wall_);
  ASSERT_EQ(done[0].first.name, StreamWithUsage().name);
  const double known_duration = records[0].value("duration_s", 0.0);
  EXPECT_GT(known_duration, 0.2) << "the ~0.3 s request";
  EXPECT_LE(known_duration, 0.4) << "the ~0.3 s request (machine too loaded?)";

  // ---- metrics: expected values from what curl sent/received and the checked records ----
  const double n = double(done.size());
  double req_bytes = 0, resp_bytes = 0, in_sum = 0, out_sum = 0, in_n = 0, out_n = 0, ttft_n = 0,
         dur_sum = 0, ttft_sum = 0;
  std::map<std::string, double> errors;
  for (size_t i = 0; i < done.size(); ++i) {
    const Transfer& t = done[i].first;
    req_bytes += double(t.body.size());
    resp_bytes += double(records[i].value("response_bytes", uint64_t(0)));
    if (t.input_tokens && *t.input_tokens > 0) in_sum += double(*t.input_tokens), ++in_n;
    if (t.output_tokens && *t.output_tokens > 0) out_sum += double(*t.output_tokens), ++out_n;
    if (records[i].contains("ttft_s")) ++ttft_n, ttft_sum += records[i]["ttft_s"].get<double>();
    dur_sum += records[i].value("duration_s", 0.0);
    if (!t.error_code.empty()) errors[t.error_code] += 1;
  }
  EXPECT_EQ(errors,
            (std::map<std::string, double>{
                {"BadRequest", 1}, {"Incomplete", 2}, {"ModelServerError", 2}, {"NotFound", 1}}));
  // Pool gauges are published every poll (0.2 s); the model metrics were updated before the
  // records were published. Wait for the idle pool state, then take one snapshot.
  std::vector<PromSample> m;
  WaitUntil(milliseconds(3000), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_average_queue_size", Pool()) == 0.0 &&
           FindSample(m, "inference_pool_average_running_requests", Pool()) == 0.0;
  });
  const auto pair = Pair();
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(pair.begin(), pair.end());
    return extra;
  };
  EXPECT_EQ(FindSample(m, "inference_model_request_total", pair), n);
  for (const auto& [code, count] : errors)
    EXPECT_EQ(FindSample(m, "inference_model_request_error_total", with({{"error_code", code}})),
              count)
        << code;
  // Every record here had a response (status != 0): all observed in duration and response sizes.
  EXPECT_EQ(FindSample(m, "inference_model_request_duration_seconds_count", pair), n);
  auto dur_metric = FindSample(m, "inference_model_request_duration_seconds_sum", pair);
  ASSERT_TRUE(dur_metric.has_value());
  EXPECT_NEAR(*dur_metric, dur_sum, 1e-3);
  for (double le : kDurationBuckets) {
    std::ostringstream les;
    les << le;
    double want = 0;
    for (const Json& r : records) want += r.value("duration_s", 0.0) <= le ? 1 : 0;
    EXPECT_EQ(
        FindSample(m, "inference_model_request_duration_seconds_bucket", with({{"le", les.str()}})),
        want)
        << "le=" << les.str();
  }
  // The known-duration request sits in le="0.4" and not in le="0.2": the two buckets differ.
  auto b02 =
      FindSample(m, "inference_model_request_duration_seconds_bucket", with({{"le", "0.2"}}));
  auto b04 =
      FindSample(m, "inference_model_request_duration_seconds_bucket", with({{"le", "0.4"}}));
  ASSERT_TRUE(b02 && b04);
  EXPECT_GE(*b04 - *b02, 1) << "the ~0.3 s request is not between 0.2 and 0.4";
  EXPECT_EQ(FindSample(m, "inference_model_request_sizes_count", pair), n);
  EXPECT_EQ(FindSample(m, "inference_model_request_sizes_sum", pair), req_bytes);
  EXPECT_EQ(FindSample(m, "inference_model_response_sizes_count", pair), n);
  EXPECT_EQ(FindSample(m, "inference_model_response_sizes_sum", pair), resp_bytes);
  EXPECT_EQ(in_sum, 7 + 4 + 3 + 5);
  EXPECT_EQ(out_sum, 10 + 6 + 4);
  EXPECT_EQ(FindSample(m, "inference_model_input_tokens_sum", pair), in_sum);
  EXPECT_EQ(FindSample(m, "inference_model_input_tokens_count", pair), in_n);
  EXPECT_EQ(FindSample(m, "inference_model_output_tokens_sum", pair), out_sum);
  EXPECT_EQ(FindSample(m, "inference_model_output_tokens_count", pair), out_n);
  EXPECT_EQ(FindSample(m, "inference_model_request_ttft_seconds_count", pair), ttft_n);
  auto ttft_metric = FindSample(m, "inference_model_request_ttft_seconds_sum", pair);
  ASSERT_TRUE(ttft_metric.has_value());
  EXPECT_NEAR(*ttft_metric, ttft_sum, 1e-3);
  EXPECT_EQ(ttft_n, 6) << "streams that produced a first token";
  EXPECT_EQ(FindSample(m, "inference_model_running_requests", {{"model_name", kModel}}), 0);
  // GET /v1/models, and the agent's own scrapes of the simulator's /metrics.
  auto ignored = FindSample(m, "infertap_http_exchanges_ignored_total");
  ASSERT_TRUE(ignored.has_value());
  EXPECT_GE(*ignored, 1);
  EXPECT_EQ(FindSample(m, "infertap_capture_lost_events_total"), 0);
  // Idle simulator: nothing waiting or running, no KV in use, one fresh pod — and the simulator
  // says the same on its own /metrics.
  auto sim = SimMetrics();
  EXPECT_EQ(FindSample(sim, "vllm:num_requests_waiting"), 0);
  EXPECT_EQ(FindSample(sim, "vllm:num_requests_running"), 0);
  EXPECT_EQ(FindSample(sim, "vllm:kv_cache_usage_perc"), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_ready_pods", Pool()), 1);
  EXPECT_EQ(FindSample(m, "inference_pool_average_queue_size", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_average_running_requests", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_average_kv_cache_utilization", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_queue_size", Pod()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_kv_cache_utilization", Pod()), 0);

  // ---- promtool lints the exposition exactly as served ----
  PromtoolCheck();

  // ---- a real Prometheus scrapes the agent and sees the same counter values ----
  {
    std::string last;
    const bool ok = WaitUntil(
        milliseconds(20000),
        [&] {
          int code = 0;
          CurlIn(net_->cli(),
                 Url(kPrometheusPort, "/api/v1/query?query=inference_model_request_total"), "",
                 &last, &code);
          if (code != 200) return false;
          Json j = Json::parse(last, nullptr, false);
          if (j.is_discarded() || j.value("status", "") != "success") return false;
          for (const Json& s : j["data"]["result"]) {
            const Json& mt = s["metric"];
            if (mt.value("job", "") == "infertap" && mt.value("model_name", "") == kModel &&
                mt.value("target_model_name", "") == kTarget &&
                s["value"][1].get<std::string>() == std::to_string(done.size()))
              return true;
          }
          return false;
        },
        milliseconds(200));
    EXPECT_TRUE(ok) << "Prometheus never returned inference_model_request_total=" << done.size()
                    << " for " << kModel << "/" << kTarget << "; last answer: " << last
                    << "\nprometheus log tail: "
                    << prometheus.err().substr(
                           prometheus.err().size() > 2000 ? prometheus.err().size() - 2000 : 0);
    prometheus.Stop(SIGTERM, milliseconds(5000));
  }

  StopAgentGracefully();
}

// Pool gauges from the simulator's /metrics (docs/pool-gauges.md): a busy simulator, then a broken /metrics
// that makes the pod stale.
TEST_F(AgentE2E, PoolGaugesBusyAndStale) {
  std::vector<PromSample> m;
  ASSERT_TRUE(WaitUntil(milliseconds(3000), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_ready_pods", Pool()) == 1.0;
  })) << "no fresh pod";
  EXPECT_EQ(FindSample(m, "inference_pool_average_queue_size", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_average_running_requests", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_average_kv_cache_utilization", Pool()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_queue_size", Pod()), 0);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_kv_cache_utilization", Pod()), 0);
  EXPECT_FALSE(FindSample(m, "infertap_pool_scrape_errors_total", Pod()).has_value())
      << "no scrape has failed yet";

  // ---- busy: three 2 s streams against --max-running 1 → 1 running, 2 waiting ----
  constexpr int kStreams = 3;
  constexpr int kBusyTokens = 40;
  const std::string body = Chat({"keep the slot busy"}, true, false).dump();  // 4 words
  constexpr double kBusyPrompt = 4;
  std::vector<std::unique_ptr<ChildProcess>> clients;
  for (int i = 0; i < kStreams; ++i) {
    auto c = std::make_unique<ChildProcess>(
        InNetns(net_->cli(),
                {"/usr/bin/curl", "-sN", "--max-time", "10", "-H", "content-type: application/json",
                 "-H", "x-sim-tokens: " + std::to_string(kBusyTokens), "-H", "x-sim-itl-ms: 50",
                 "--data-binary", body, SimUrl("/v1/chat/completions")}));
    std::string error;
    ASSERT_TRUE(c->Start(&error)) << error;
    clients.push_back(std::move(c));
  }
  // The simulator's own view first, so a miss below is the agent's.
  std::vector<PromSample> sim;
  EXPECT_TRUE(WaitUntil(milliseconds(1500),
                        [&] {
                          sim = SimMetrics();
                          return FindSample(sim, "vllm:num_requests_waiting") == kStreams - 1.0;
                        }))
      << "simulator never had " << kStreams - 1 << " waiting";
  const bool busy_seen = WaitUntil(milliseconds(1500), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_average_queue_size", Pool()) == kStreams - 1.0;
  });
  EXPECT_TRUE(busy_seen) << "agent queue gauge: "
                         << FindSample(m, "inference_pool_average_queue_size", Pool()).value_or(-1);
  EXPECT_EQ(FindSample(m, "inference_pool_average_running_requests", Pool()), 1);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_queue_size", Pod()), kStreams - 1.0);
  EXPECT_EQ(FindSample(m, "inference_pool_ready_pods", Pool()), 1);
  // KV = (prompt + generated tokens of the running request) / capacity.
  auto kv = FindSample(m, "inference_pool_average_kv_cache_utilization", Pool());
  ASSERT_TRUE(kv.has_value());
  EXPECT_GE(*kv, kBusyPrompt / kKvCapacityTokens);
  EXPECT_LE(*kv, (kBusyPrompt + kBusyTokens) / kKvCapacityTokens);
  EXPECT_EQ(FindSample(m, "inference_pool_per_pod_kv_cache_utilization", Pod()), *kv);
  EXPECT_EQ(FindSample(m, "inference_model_running_requests", {{"model_name", kModel}}),
            double(kStreams))
      << "every stream is in flight from the agent's point of view (heads are out)";
  // Done: hang up instead of waiting 6 s; the simulator frees the slots on its next writes.
  for (auto& c : clients) c->Stop(SIGKILL, milliseconds(1000));
  EXPECT_TRUE(WaitUntil(milliseconds(3000), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_average_queue_size", Pool()) == 0.0 &&
           FindSample(m, "inference_pool_average_running_requests", Pool()) == 0.0;
  })) << "pool never went idle again";

  // ---- broken /metrics: scrape errors count up, the pod goes stale, the averages go away ----
  int code = 0;
  CurlIn(net_->cli(), SimUrl("/sim/metrics-mode"), "--data-binary garbage", nullptr, &code);
  ASSERT_EQ(code, 200);
  const auto garbage_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitUntil(milliseconds(2000), [&] {
    m = Metrics();
    return FindSample(m, "infertap_pool_scrape_errors_total", Pod()).value_or(0) >= 2;
  })) << "scrape errors not counted";
  // Staleness window 1 s after the last good scrape; allow a few polls on top.
  EXPECT_TRUE(WaitUntil(milliseconds(3000), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_ready_pods", Pool()) == 0.0;
  })) << "pod never went stale";
  EXPECT_GE(std::chrono::steady_clock::now() - garbage_at, milliseconds(700))
      << "stale before the 1 s staleness window could have passed";
  for (const char* gone :
       {"inference_pool_average_queue_size", "inference_pool_average_running_requests",
        "inference_pool_average_kv_cache_utilization"})
    EXPECT_FALSE(FindSample(m, gone, Pool()).has_value()) << gone << " frozen instead of removed";
  for (const char* gone :
       {"inference_pool_per_pod_queue_size", "inference_pool_per_pod_kv_cache_utilization"})
    EXPECT_FALSE(FindSample(m, gone, Pod()).has_value()) << gone << " kept for a stale pod";
  const double errors_then = FindSample(m, "infertap_pool_scrape_errors_total", Pod()).value_or(0);
  PromtoolCheck();  // now with the scrape-error family in the exposition
  // /v1/state says the same, with the reason.
  {
    std::string state;
    CurlIn(net_->cli(), Url(kInspectPort, "/v1/state"), "", &state, &code);
    ASSERT_EQ(code, 200);
    Json j = Json::parse(state, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << state;
    // Which build of the kernel programs runs, and why (docs/capture.md#kernel-requirements).
    ASSERT_TRUE(j["capture"].is_object()) << state;
    const std::string variant = j["capture"].value("variant", "");
    EXPECT_TRUE(variant == "modern" || variant == "compat") << state;
    EXPECT_FALSE(j["capture"].value("reason", "").empty()) << state;
    ASSERT_EQ(j["pools"].size(), 1u) << state;
    const Json& p = j["pools"][0];
    EXPECT_EQ(p.value("name", ""), "default");
    EXPECT_EQ(p.value("ready_pods", -1), 0);
    EXPECT_FALSE(p.contains("average_queue_size"));
    ASSERT_EQ(p["pods"].size(), 1u) << state;
    EXPECT_EQ(p["pods"][0].value("name", ""), sim_addr_);
    EXPECT_EQ(p["pods"][0].value("fresh", true), false);
    EXPECT_GE(p["pods"][0].value("scrape_errors", 0.0), errors_then);
    EXPECT_FALSE(p["pods"][0].value("last_error", "").empty());
  }

  // ---- /metrics good again: the pod is fresh again and the errors stop counting ----
  CurlIn(net_->cli(), SimUrl("/sim/metrics-mode"), "--data-binary ok", nullptr, &code);
  ASSERT_EQ(code, 200);
  EXPECT_TRUE(WaitUntil(milliseconds(3000), [&] {
    m = Metrics();
    return FindSample(m, "inference_pool_ready_pods", Pool()) == 1.0;
  })) << "pod never fresh again";
  EXPECT_EQ(FindSample(m, "inference_pool_average_queue_size", Pool()), 0);
  const double errors_after = FindSample(m, "infertap_pool_scrape_errors_total", Pod()).value_or(0);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(FindSample(Metrics(), "infertap_pool_scrape_errors_total", Pod()), errors_after)
      << "errors still counted while /metrics is good";

  StopAgentGracefully();
}

}  // namespace
}  // namespace infertap::e2e
