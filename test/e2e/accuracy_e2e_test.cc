// Accuracy end to end (docs/testing.md, issue 5 item 4): what infertap reports equals what real
// clients sent and received, request by request.
//
// Topology (one fresh set per test, all removed on exit, also on failure):
//
//   cli netns                                      │ veth │  srv netns
//   curl, node (openai npm) → nginx 127.0.0.1:8080 ─────────→ infertap-sim SRV_IP:ephemeral
//
// nginx runs in the client namespace, so its upstream connections cross the veth the way a
// gateway on another node reaches a model server. The agent runs in the test's namespace (BPF sees
// every namespace) with --target SRV_IP:PORT, once with the default server side (the sim's own
// sockets, role "server"), once with --capture-side client (nginx's upstream sockets, role
// "client"), and once with the cgroup backend (--capture-backend cgroup, the sim started inside
// a test cgroup: its packets, role "server"); all must yield the same records.
//
// Matching: records never carry payload text, so every request carries a distinct `model`
// ("curl-…", "node-…"); the record's target_model_name (the request body's `model`) names the
// client request it belongs to.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test/e2e/accuracy_util.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

// nginx listens inside the fresh client namespace, so a fixed port cannot collide.
constexpr char kGatewayAddr[] = "127.0.0.1:8080";

std::string SourceDir() { return INFERTAP_SOURCE_DIR; }
std::string SimBinary() { return INFERTAP_SIM_BINARY; }

// One request as its client saw it, and what the record must therefore say.
struct ClientView {
  std::string client, kind, model, path;
  int status = 0;
  bool stream = false;  // the response's content-type was text/event-stream
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;  // body bytes received (de-chunked by the client)
  std::optional<uint64_t> input_tokens, output_tokens;  // from the usage the client received
  uint32_t chunks = 0;                                  // content events received
  double elapsed_s = 0;                                 // the client's own clock
  std::string expected_error;
  // The client hung up mid-stream: the sim only learns it at its next write, so the server keeps
  // producing for a moment the client never sees.
  bool client_abort = false;
  double ttft_floor_s = 0;  // x-sim-ttft-ms asked for: no first token can come earlier
  double itl_s = 0;
};

std::string ErrorCodeForStatus(int status) {
  if (status == 400 || status == 422) return "BadRequest";
  if (status >= 500) return status == 503 ? "ServiceUnavailable" : "ModelServerError";
  return status >= 400 ? "BadRequest" : "";
}

// ---- curl -------------------------------------------------------------------------------------

struct CurlCase {
  std::string kind, model, path;
  json body;
  std::map<std::string, std::string> headers;
  double max_time_s = 20;  // the client-abort case sets a short one: curl gives up mid-stream
};

std::vector<CurlCase> CurlCases() {
  const std::map<std::string, std::string> timing = {{"x-sim-ttft-ms", "30"},
                                                     {"x-sim-itl-ms", "5"}};
  auto chat = [](const std::string& model, const std::string& prompt) {
    return json{{"model", model},
                {"messages", json::array({json{{"role", "user"}, {"content", prompt}}})}};
  };
  std::vector<CurlCase> cases;
  {
    json b = chat("curl-stream-usage", "tell me about the sea in ten words");
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
    b["max_tokens"] = 10;
    cases.push_back({"stream_usage", "curl-stream-usage", "/v1/chat/completions", b, timing});
  }
  {
    json b = chat("curl-stream-nousage", "six words please");
    b["stream"] = true;
    b["max_tokens"] = 6;
    cases.push_back({"stream_no_usage", "curl-stream-nousage", "/v1/chat/completions", b, timing});
  }
  {
    json b = chat("curl-nonstream", "a b c d e f g h");
    b["max_tokens"] = 5;
    cases.push_back({"non_stream", "curl-nonstream", "/v1/chat/completions", b, timing});
  }
  cases.push_back({"embeddings",
                   "curl-embed",
                   "/v1/embeddings",
                   json{{"model", "curl-embed"}, {"input", json::array({"one two", "three"})}},
                   {}});
  cases.push_back({"status_400",
                   "curl-400",
                   "/v1/chat/completions",
                   chat("curl-400", "too long"),
                   {{"x-sim-status", "400"}}});
  cases.push_back({"status_500",
                   "curl-500",
                   "/v1/chat/completions",
                   chat("curl-500", "boom"),
                   {{"x-sim-status", "500"}}});
  {
    json b = chat("curl-midstream", "fail after three");
    b["stream"] = true;
    b["stream_options"] = {{"include_usage", true}};
    auto h = timing;
    h["x-sim-tokens"] = "8";
    h["x-sim-midstream-error-after"] = "3";
    cases.push_back({"midstream_error", "curl-midstream", "/v1/chat/completions", b, h});
  }
  {
    json b = chat("curl-sim-abort", "reset after four");
    b["stream"] = true;
    auto h = timing;
    h["x-sim-tokens"] = "20";
    h["x-sim-abort-after"] = "4";
    cases.push_back({"sim_abort", "curl-sim-abort", "/v1/chat/completions", b, h});
  }
  {
    // 200 tokens 20 ms apart outlast curl's 0.5 s budget by far: curl closes mid-stream.
    json b = chat("curl-client-abort", "a long story");
    b["stream"] = true;
    CurlCase c{"client_abort",
               "curl-client-abort",
               "/v1/chat/completions",
               b,
               {{"x-sim-tokens", "200"}, {"x-sim-ttft-ms", "30"}, {"x-sim-itl-ms", "20"}}};
    c.max_time_s = 0.5;
    cases.push_back(c);
  }
  return cases;
}

double HeaderMs(const std::map<std::string, std::string>& h, const std::string& name) {
  auto it = h.find(name);
  return it == h.end() ? 0.0 : std::stod(it->second) / 1000.0;
}

// Runs one curl request from the client namespace and returns what curl saw.
ClientView RunCurl(const std::string& netns, const std::string& dir, const CurlCase& c,
                   std::string* problem) {
  ClientView v;
  v.client = "curl";
  v.kind = c.kind;
  v.model = c.model;
  v.path = c.path;
  v.ttft_floor_s = HeaderMs(c.headers, "x-sim-ttft-ms");
  v.itl_s = HeaderMs(c.headers, "x-sim-itl-ms");
  const std::string body = c.body.dump();
  const std::string req = dir + "/curl-" + c.kind + ".req";
  const std::string resp = dir + "/curl-" + c.kind + ".body";
  WriteFile(req, body);
  std::ostringstream cmd;
  // -w goes to stdout after the transfer, also when curl gives up; the marker finds it among
  // curl's error message (Sh merges stderr).
  cmd << "ip netns exec " << netns << " curl -sS --max-time " << c.max_time_s << " -o " << resp
      << " -w '\\nCURLW %{http_code} %{time_total} %{content_type}\\n'"
      << " -H 'Content-Type: application/json'";
  for (const auto& [k, val] : c.headers) cmd << " -H '" << k << ": " << val << "'";
  cmd << " --data-binary @" << req << " http://" << kGatewayAddr << c.path;
  std::string out;
  const int rc = Sh(cmd.str(), &out);
  const size_t at = out.find("CURLW ");
  if (at == std::string::npos) {
    *problem = "curl " + c.kind + " printed no -w line (rc " + std::to_string(rc) + "): " + out;
    return v;
  }
  std::istringstream w(out.substr(at + 6));
  std::string content_type;
  w >> v.status >> v.elapsed_s;
  std::getline(w, content_type);
  v.request_bytes = body.size();
  const std::string received = ReadFileOr(resp);
  v.response_bytes = received.size();
  v.stream = content_type.find("text/event-stream") != std::string::npos;
  v.expected_error = ErrorCodeForStatus(v.status);
  if (v.stream) {
    const SseSummary s = SummarizeSse(received);
    v.chunks = s.content_events;
    v.input_tokens = s.prompt_tokens;
    v.output_tokens = s.completion_tokens;
    if (s.error_event) v.expected_error = "ModelServerError";
  } else if (v.status == 200) {
    const json j = json::parse(received, nullptr, false);
    if (!j.is_discarded() && j.contains("usage") && j["usage"].is_object()) {
      v.input_tokens = j["usage"].value("prompt_tokens", uint64_t{0});
      v.output_tokens = j["usage"].value("completion_tokens", uint64_t{0});
    }
  }
  // 18: the body ended before its terminal chunk (the sim reset the upstream connection and
  // nginx closed ours). 28: curl's own --max-time, i.e. the client hung up.
  if (rc == 18 || rc == 28) v.expected_error = "Incomplete";
  if (rc == 28) v.client_abort = true;
  const int expected_rc = c.kind == "sim_abort" ? 18 : c.kind == "client_abort" ? 28 : 0;
  if (rc != expected_rc) {
    *problem = "curl " + c.kind + " exited " + std::to_string(rc) + ", expected " +
               std::to_string(expected_rc) + ": " + out;
  }
  return v;
}

// ---- node (openai npm) ------------------------------------------------------------------------

// The node script's requests (test/e2e/node/accuracy_client.mjs), with the timing they asked for.
const std::map<std::string, std::pair<double, double>> kNodeTiming = {
    {"node-stream-usage", {0.030, 0.005}},
    {"node-stream-nousage", {0.030, 0.005}},
    {"node-nonstream", {0.030, 0.005}},
    {"node-embed", {0.0, 0.0}},
    {"node-abort", {0.030, 0.020}}};

bool ParseNodeLine(const std::string& line, ClientView* v, std::string* problem) {
  const json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *problem = "node printed a non-JSON line: " + line;
    return false;
  }
  if (j.contains("exception")) {
    *problem = "node request failed: " + line;
    return false;
  }
  v->client = "node";
  v->kind = j.value("kind", "");
  v->model = j.value("model", "");
  v->path = j.value("path", "");
  v->status = j.value("status", 0);
  v->stream = j.value("content_type", "").find("text/event-stream") != std::string::npos;
  v->request_bytes = j.value("request_bytes", uint64_t{0});
  v->response_bytes = j.value("response_bytes", uint64_t{0});
  if (j.contains("input_tokens")) v->input_tokens = j["input_tokens"].get<uint64_t>();
  if (j.contains("output_tokens")) v->output_tokens = j["output_tokens"].get<uint64_t>();
  v->chunks = j.value("chunks", 0u);
  v->elapsed_s = j.value("elapsed_s", 0.0);
  v->client_abort = j.value("aborted", false);
  v->expected_error = v->client_abort ? "Incomplete" : ErrorCodeForStatus(v->status);
  auto t = kNodeTiming.find(v->model);
  if (t == kNodeTiming.end()) {
    *problem = "node reported an unknown request " + v->model;
    return false;
  }
  v->ttft_floor_s = t->second.first;
  v->itl_s = t->second.second;
  return true;
}

// ---- the agent's outputs ----------------------------------------------------------------------

std::vector<json> ReadRecords(const std::string& path) {
  std::vector<json> records;
  std::istringstream in(ReadFileOr(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;  // heartbeat
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) records.push_back(std::move(j));
  }
  return records;
}

// `curl -s` of a URL in the test's namespace; "" when it failed.
std::string HttpGet(const std::string& url, int* code = nullptr) {
  std::string out;
  const int rc = Sh("curl -s --max-time 5 -o - -w '\\n%{http_code}' " + url, &out);
  const size_t nl = out.rfind('\n');
  if (code) *code = rc == 0 && nl != std::string::npos ? std::atoi(out.c_str() + nl + 1) : 0;
  return rc == 0 && nl != std::string::npos ? out.substr(0, nl) : "";
}

// A record's `ts` ("2026-01-02T03:04:05.123456789Z") as ns since the epoch; -1 if malformed.
int64_t ParseTs(const std::string& ts) {
  std::tm tm{};
  const char* rest = strptime(ts.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr || *rest != '.') return -1;
  const std::string frac = std::string(rest + 1, ts.c_str() + ts.size());
  if (frac.size() != 10 || frac.back() != 'Z') return -1;
  return int64_t(timegm(&tm)) * 1000000000 + std::stoll(frac.substr(0, 9));
}

int64_t WallNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Tail(const std::string& path, size_t n = 3000) {
  const std::string s = ReadFileOr(path, "<missing " + path + ">");
  return s.size() > n ? "…" + s.substr(s.size() - n) : s;
}

class AccuracyE2E : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { INFERTAP_REQUIRE_BPF_OR_SKIP(); }
};

TEST_P(AccuracyE2E, RecordsAndMetricsMatchWhatClientsSawThroughNginx) {
  // "cgroup": the server side through the cgroup backend (docs/capture.md#the-cgroup-backend).
  const bool cgroup_backend = GetParam() == "cgroup";
  const std::string side = cgroup_backend ? "server" : GetParam();
  const auto test_start = std::chrono::steady_clock::now();
  const int64_t wall_start_ns = WallNowNs();

  // Missing clients are a broken machine, not a reason to skip: the test is the point of CI.
  const std::string node_dir = SourceDir() + "/test/e2e/node";
  ASSERT_TRUE(std::filesystem::exists(node_dir + "/node_modules/openai/package.json"))
      << node_dir << "/node_modules/openai is missing: run scripts/install-deps.sh (it runs "
      << "`npm install` in test/e2e/node)";
  ASSERT_TRUE(std::filesystem::exists("/usr/sbin/nginx"))
      << "/usr/sbin/nginx is missing: run scripts/install-deps.sh";
  ASSERT_EQ(Sh("command -v node"), 0) << "node is missing: run scripts/install-deps.sh";

  NetnsPair ns;
  ASSERT_TRUE(ns.ok());
  TempDir tmp("accuracy-" + GetParam());
  std::unique_ptr<TestCgroup> cgroup;
  if (cgroup_backend) {
    cgroup = std::make_unique<TestCgroup>();  // removed at the end, also after a failure
    ASSERT_FALSE(cgroup->path().empty()) << "no cgroup v2 hierarchy to make a test cgroup in";
  }
  ASSERT_FALSE(tmp.path().empty());
  // On failure the logs, configs and records stay for a post-mortem (also after an ASSERT).
  struct KeepOnFailure {
    TempDir& t;
    ~KeepOnFailure() {
      if (::testing::Test::HasFailure()) {
        t.Keep();
        std::fprintf(stderr, "kept %s (sim, nginx, agent and client logs; records.jsonl)\n",
                     t.path().c_str());
      }
    }
  } keep_on_failure{tmp};
  const std::string dir = tmp.path();
  std::string err;

  // Model server in the server namespace, on an ephemeral port it prints.
  Child sim;
  const std::vector<std::string> sim_argv = {SimBinary(), "--listen", ns.srv_v4() + ":0"};
  ASSERT_TRUE(sim.Start(cgroup ? cgroup->Wrap(sim_argv) : sim_argv, ns.srv(), dir + "/sim.out",
                        dir + "/sim.err", &err))
      << err;
  std::string sim_addr;
  ASSERT_TRUE(WaitUntil(seconds(10),
                        [&] {
                          const std::string out = ReadFileOr(dir + "/sim.out");
                          const size_t at = out.find("listening on ");
                          if (at == std::string::npos || out.find('\n', at) == std::string::npos)
                            return false;
                          std::istringstream(out.substr(at + 13)) >> sim_addr;
                          return true;
                        }))
      << "sim did not start: " << Tail(dir + "/sim.err");

  // nginx as the gateway, in the client namespace.
  const std::string prefix = dir + "/nginx";
  for (const char* d : {"", "/logs", "/tmp"}) std::filesystem::create_directories(prefix + d);
  const std::string conf_template = ReadFileOr(SourceDir() + "/test/e2e/nginx/accuracy.conf.in");
  ASSERT_FALSE(conf_template.empty());
  ASSERT_TRUE(WriteFile(
      prefix + "/nginx.conf",
      Substitute(conf_template,
                 {{"PREFIX", prefix}, {"LISTEN", kGatewayAddr}, {"UPSTREAM", sim_addr}})));
  Child nginx;
  ASSERT_TRUE(nginx.Start({"/usr/sbin/nginx", "-p", prefix, "-c", prefix + "/nginx.conf", "-e",
                           prefix + "/logs/error.log"},
                          ns.cli(), dir + "/nginx.out", dir + "/nginx.err", &err))
      << err;
  ASSERT_TRUE(WaitUntil(seconds(10),
                        [&] {
                          std::string code;
                          Sh("ip netns exec " + ns.cli() +
                                 " curl -s --max-time 1 -o /dev/null -w '%{http_code}' http://" +
                                 kGatewayAddr + "/nginx-ready",
                             &code);
                          return code == "204";
                        }))
      << "nginx did not come up: " << Tail(dir + "/nginx.err") << Tail(prefix + "/logs/error.log");

  // The agent, started before any client connects: every traced connection is new to it.
  const std::string metrics_addr = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  const std::string inspect_addr = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  Child agent;
  std::vector<std::string> agent_argv = {
      InfertapBinary(), "run",  "--target",       sim_addr,     "--capture-side", side,
      "--metrics-auth", "none", "--metrics-addr", metrics_addr, "--inspect-addr", inspect_addr};
  if (cgroup) {
    for (const char* a : {"--capture-backend", "cgroup", "--capture-cgroup"})
      agent_argv.push_back(a);
    agent_argv.push_back(cgroup->path());
  }
  ASSERT_TRUE(agent.Start(agent_argv, "", dir + "/agent.out", dir + "/agent.err", &err)) << err;
  ASSERT_TRUE(WaitUntil(seconds(30), [&] {
    return ReadFileOr(dir + "/agent.err").find("running: tracing") != std::string::npos ||
           agent.Wait(milliseconds(0), nullptr);  // exited: stop waiting
  }));
  ASSERT_TRUE(agent.running()) << "agent exited: " << Tail(dir + "/agent.err");
  ASSERT_NE(ReadFileOr(dir + "/agent.err").find("running: tracing"), std::string::npos)
      << "agent did not attach: " << Tail(dir + "/agent.err");
  ASSERT_TRUE(WaitUntil(seconds(10),
                        [&] {
                          int code = 0;
                          HttpGet("http://" + metrics_addr + "/readyz", &code);
                          return code == 200;
                        }))
      << "agent never ready: " << Tail(dir + "/agent.err");

  // The record stream, subscribed before the first request (it carries no backlog).
  Child records_reader;
  ASSERT_TRUE(records_reader.Start({"curl", "-sN", "--max-time", "120", "-D", dir + "/records.head",
                                    "http://" + inspect_addr + "/v1/records"},
                                   "", dir + "/records.jsonl", dir + "/records.err", &err))
      << err;
  ASSERT_TRUE(WaitUntil(
      seconds(5),
      [&] { return ReadFileOr(dir + "/records.head").find("\r\n\r\n") != std::string::npos; }))
      << "no /v1/records stream: " << Tail(dir + "/records.err");
  // The subscription is made as the answer starts; a moment for it to settle before traffic.
  std::this_thread::sleep_for(milliseconds(100));

  // Clients: node (its requests concurrently) while curl's run one after the other.
  Child node;
  ASSERT_TRUE(node.Start({"node", node_dir + "/accuracy_client.mjs", "--base-url",
                          std::string("http://") + kGatewayAddr + "/v1"},
                         ns.cli(), dir + "/node.out", dir + "/node.err", &err))
      << err;
  std::vector<ClientView> views;
  for (const CurlCase& c : CurlCases()) {
    std::string problem;
    views.push_back(RunCurl(ns.cli(), dir, c, &problem));
    EXPECT_TRUE(problem.empty()) << problem;
  }
  int node_status = 0;
  ASSERT_TRUE(node.Wait(seconds(30), &node_status))
      << "node client hung: " << Tail(dir + "/node.err");
  ASSERT_TRUE(WIFEXITED(node_status) && WEXITSTATUS(node_status) == 0)
      << "node client failed: " << Tail(dir + "/node.err");
  {
    std::istringstream in(ReadFileOr(dir + "/node.out"));
    std::string line;
    size_t node_requests = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      ClientView v;
      std::string problem;
      ASSERT_TRUE(ParseNodeLine(line, &v, &problem)) << problem;
      views.push_back(v);
      ++node_requests;
    }
    ASSERT_EQ(node_requests, kNodeTiming.size()) << ReadFileOr(dir + "/node.out");
  }

  // Every request yields one record; aborted ones end when the sim notices (a token later).
  std::set<std::string> markers;
  for (const auto& v : views) markers.insert(v.model);
  ASSERT_EQ(markers.size(), views.size()) << "request markers must be unique";
  auto seen_all = [&] {
    std::set<std::string> seen;
    for (const auto& r : ReadRecords(dir + "/records.jsonl"))
      seen.insert(r.value("target_model_name", ""));
    for (const auto& m : markers)
      if (!seen.count(m)) return false;
    return true;
  };
  const bool complete = WaitUntil(seconds(15), seen_all);
  // A duplicate record would come right behind the original; give it the chance to show.
  std::this_thread::sleep_for(milliseconds(500));
  records_reader.Stop(SIGTERM, seconds(2));
  const std::vector<json> records = ReadRecords(dir + "/records.jsonl");
  std::string all_records;
  for (const auto& r : records) all_records += r.dump() + "\n";
  EXPECT_TRUE(complete) << "records missing after 15 s; got:\n" << all_records;
  EXPECT_EQ(records.size(), views.size()) << "one record per client request; got:\n" << all_records;

  std::map<std::string, std::vector<json>> by_model;
  for (const auto& r : records) by_model[r.value("target_model_name", "")].push_back(r);
  const int64_t wall_end_ns = WallNowNs();

  // curl's requests ran one after the other, so their records must follow each other in time:
  // each starts after the previous one ended (kernel timestamps → wall clock).
  int64_t previous_end_ns = 0;
  std::string previous;
  for (const ClientView& v : views) {
    if (v.client != "curl" || by_model[v.model].size() != 1) continue;
    const json& r = by_model[v.model][0];
    const int64_t ts = ParseTs(r.value("ts", ""));
    EXPECT_GT(ts, previous_end_ns) << v.model << " started before " << previous << " ended";
    previous_end_ns = ts + int64_t(r.value("duration_s", 0.0) * 1e9);
    previous = v.model;
  }

  for (const ClientView& v : views) {
    SCOPED_TRACE(v.client + " " + v.kind + " (" + v.model + ")");
    const auto& rs = by_model[v.model];
    ASSERT_EQ(rs.size(), 1u) << all_records;
    const json& r = rs[0];
    SCOPED_TRACE("record: " + r.dump());
    EXPECT_EQ(r.value("role", ""), side);
    // The wall-clock start lies within the test (the agent maps kernel time to wall time).
    const int64_t ts = ParseTs(r.value("ts", ""));
    EXPECT_GT(ts, wall_start_ns);
    EXPECT_LT(ts, wall_end_ns);
    EXPECT_EQ(r.value("model_name", ""), v.model);
    EXPECT_EQ(r.value("method", ""), "POST");
    EXPECT_EQ(r.value("path", ""), v.path);
    EXPECT_EQ(r.value("status", -1), v.status);
    EXPECT_EQ(r.value("stream", !v.stream), v.stream);
    EXPECT_EQ(r.value("error_code", "?"), v.expected_error);
    // nginx forwards the body unchanged: the client's body is the sim's body.
    EXPECT_EQ(r.value("request_bytes", uint64_t{0}), v.request_bytes);
    if (v.client_abort) {
      // The sim (and nginx's upstream read) ran on for a moment after the client hung up.
      EXPECT_GE(r.value("response_bytes", uint64_t{0}), v.response_bytes);
      EXPECT_GE(r.value("chunks", 0u), v.chunks);
      EXPECT_FALSE(r.contains("input_tokens"));
      EXPECT_FALSE(r.contains("output_tokens"));
    } else {
      // With proxy_buffering off nginx re-chunks but never changes the body: the de-chunked
      // bytes the sim wrote are exactly the bytes the client read.
      EXPECT_EQ(r.value("response_bytes", uint64_t{0}), v.response_bytes);
      EXPECT_EQ(r.value("chunks", 0u), v.chunks);
      EXPECT_EQ(r.contains("input_tokens"), v.input_tokens.has_value());
      EXPECT_EQ(r.contains("output_tokens"), v.output_tokens.has_value());
      if (v.input_tokens) {
        EXPECT_EQ(r.value("input_tokens", uint64_t{0}), *v.input_tokens);
      }
      if (v.output_tokens) {
        EXPECT_EQ(r.value("output_tokens", uint64_t{0}), *v.output_tokens);
      }
    }
    EXPECT_FALSE(r.contains("cached_tokens"));  // the sim never reports any

    // Timing: the traced exchange lies inside the client's own request, so it cannot be longer
    // (1 ms for the clients' rounding). A client abort is the exception: the traced socket closes
    // when the sim's next write fails, up to an inter-token gap (plus nginx noticing) later.
    const double duration = r.value("duration_s", -1.0);
    EXPECT_GT(duration, 0.0);
    const double slack = v.client_abort ? 2 * v.itl_s + 0.25 : 0.001;
    EXPECT_LE(duration, v.elapsed_s + slack) << "client elapsed " << v.elapsed_s;
    if (v.stream && v.chunks > 0) {
      ASSERT_TRUE(r.contains("ttft_s"));
      const double ttft = r["ttft_s"].get<double>();
      EXPECT_GT(ttft, 0.0);
      EXPECT_LE(ttft, duration);
      // The sim holds the first token back by x-sim-ttft-ms after it read the request, which is
      // after the traced request started on either side.
      EXPECT_GE(ttft, v.ttft_floor_s * 0.95);
      const uint64_t out = r.value("output_tokens", uint64_t{0});
      if (out > 1) {
        ASSERT_TRUE(r.contains("tpot_s"));
        EXPECT_NEAR(r["tpot_s"].get<double>(), (duration - ttft) / double(out - 1), 1e-6);
        // Tokens leave the sim no faster than its inter-token latency.
        EXPECT_GE(r["tpot_s"].get<double>(), v.itl_s * 0.95);
      }
    } else if (!v.stream) {
      EXPECT_FALSE(r.contains("ttft_s"));
      EXPECT_FALSE(r.contains("tpot_s"));
    }
  }

  // Metrics: the same facts, summed. Every series is per model, and every model is one request.
  std::map<std::string, double> m;
  auto fetch_metrics = [&] {
    m = ParsePrometheus(HttpGet("http://" + metrics_addr + "/metrics"));
    double total = 0;
    for (const auto& v : views)
      total += m[SampleKey("inference_model_request_total",
                           {{"model_name", v.model}, {"target_model_name", v.model}})];
    return total == double(views.size());
  };
  EXPECT_TRUE(WaitUntil(seconds(5), fetch_metrics))
      << "request_total never reached " << views.size();
  std::map<std::string, int> expected_errors, reported_errors;
  for (const ClientView& v : views) {
    SCOPED_TRACE(v.client + " " + v.kind + " (" + v.model + ") metrics");
    const std::map<std::string, std::string> l = {{"model_name", v.model},
                                                  {"target_model_name", v.model}};
    auto get = [&](const std::string& name, std::map<std::string, std::string> extra = {}) {
      extra.insert(l.begin(), l.end());
      auto it = m.find(SampleKey(name, extra));
      return it == m.end() ? std::optional<double>() : std::optional<double>(it->second);
    };
    const json& r = by_model[v.model].empty() ? json::object() : by_model[v.model][0];
    EXPECT_EQ(get("inference_model_request_total"), 1.0);
    EXPECT_EQ(get("inference_model_request_sizes_count"), 1.0);
    EXPECT_EQ(get("inference_model_request_sizes_sum"), double(v.request_bytes));
    if (!v.expected_error.empty()) {
      ++expected_errors[v.expected_error];
      EXPECT_EQ(get("inference_model_request_error_total", {{"error_code", v.expected_error}}),
                1.0);
    }
    for (const char* code :
         {"BadRequest", "ModelServerError", "Incomplete", "NotFound", "Unauthorized", "Forbidden",
          "ResourceExhausted", "ServiceUnavailable"}) {
      auto e = get("inference_model_request_error_total", {{"error_code", code}});
      if (e) reported_errors[code] += int(*e);
      if (code != v.expected_error) {
        EXPECT_FALSE(e.has_value()) << code;
      }
    }
    if (v.expected_error != "Incomplete") {
      // The response ended: its duration and size were observed, as in the record.
      EXPECT_EQ(get("inference_model_request_duration_seconds_count"), 1.0);
      EXPECT_NEAR(get("inference_model_request_duration_seconds_sum").value_or(-1),
                  r.value("duration_s", 0.0), 1e-6);
      EXPECT_EQ(get("inference_model_response_sizes_count"), 1.0);
      EXPECT_EQ(get("inference_model_response_sizes_sum"), double(v.response_bytes));
    }
    // Tokens are observed only when > 0 (docs/metrics.md#seed-metrics): embeddings report 0 output
    // tokens.
    if (v.input_tokens.value_or(0) > 0 && !v.client_abort) {
      EXPECT_EQ(get("inference_model_input_tokens_count"), 1.0);
      EXPECT_EQ(get("inference_model_input_tokens_sum"), double(*v.input_tokens));
    } else {
      EXPECT_FALSE(get("inference_model_input_tokens_count").has_value());
    }
    if (v.output_tokens.value_or(0) > 0 && !v.client_abort) {
      EXPECT_EQ(get("inference_model_output_tokens_count"), 1.0);
      EXPECT_EQ(get("inference_model_output_tokens_sum"), double(*v.output_tokens));
    } else {
      EXPECT_FALSE(get("inference_model_output_tokens_count").has_value());
    }
  }
  EXPECT_EQ(reported_errors, expected_errors);

  // Our clients are the only traffic to the sim; everything the agent parsed was theirs.
  EXPECT_EQ(agent.Stop(SIGINT, seconds(10)), 0) << Tail(dir + "/agent.err");
  nginx.Stop(SIGQUIT, seconds(5));
  sim.Stop(SIGTERM, seconds(5));
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - test_start).count();
  std::printf("accuracy e2e (%s): %zu requests, %.1f s\n", GetParam().c_str(), views.size(), took);
}

INSTANTIATE_TEST_SUITE_P(Sides, AccuracyE2E, ::testing::Values("server", "client", "cgroup"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace infertap::e2e
