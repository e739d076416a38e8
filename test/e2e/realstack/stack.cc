#include "test/e2e/realstack/stack.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

namespace infertap::e2e::realstack {

using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::string SourceDir() { return INFERTAP_SOURCE_DIR; }
std::string AppDir() { return SourceDir() + "/test/e2e/realstack"; }
constexpr char kPython[] = "/usr/bin/python3";  // Debian's, where the python3-* packages live

std::vector<json> ReadJsonLines(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(ReadFileOr(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \r\t") == std::string::npos) continue;  // heartbeats
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// `curl` in a namespace; the HTTP status ("000" when nothing answered).
std::string StatusIn(const std::string& netns, const std::string& url) {
  std::string code;
  Sh((netns.empty() ? std::string() : "ip netns exec " + netns + " ") +
         "curl -s --max-time 1 -o /dev/null -w '%{http_code}' " + url,
     &code);
  return code;
}

std::string Get(const std::string& url) {
  std::string out;
  const int rc = Sh("curl -s --max-time 5 " + url, &out);
  return rc == 0 ? out : "";
}

}  // namespace

std::string MissingTools() {
  std::string missing;
  if (Sh(std::string(kPython) + " -c 'import uvicorn, fastapi, httptools, h11, aiohttp, httpx'") !=
      0)
    missing += " python3-uvicorn/fastapi/httptools/h11/aiohttp/httpx";
  for (const char* tool : {"/usr/sbin/haproxy", "/usr/sbin/nginx", "/usr/bin/curl"})
    if (!std::filesystem::exists(tool)) missing += std::string(" ") + tool;
  if (std::string(INFERTAP_REALSTACK_LLAMACPP).empty() ||
      !std::filesystem::exists(INFERTAP_REALSTACK_LLAMACPP))
    missing += " realstack-llamacpp (libcpp-httplib-dev was missing when cmake ran)";
  if (missing.empty()) return "";
  return "missing:" + missing + " - run scripts/install-deps.sh (and re-run cmake)";
}

Stack::~Stack() {
  // The agent first: it must not see the servers go away as traffic.
  records_.reset();
  agent_.reset();
  children_.clear();
}

std::string Stack::Tail(const std::string& file, size_t n) const {
  const std::string s = ReadFileOr(dir_ + "/" + file, "<missing " + file + ">");
  return s.size() > n ? "..." + s.substr(s.size() - n) : s;
}

bool Stack::StartServer(const Server& s, std::string* error) {
  const std::string listen = ns_.srv_v4() + ":" + std::to_string(s.port);
  std::vector<std::string> argv;
  if (s.flavor == "llamacpp") {
    argv = {INFERTAP_REALSTACK_LLAMACPP, "--listen", listen, "--model", s.served_model(), "--truth",
            dir_ + "/truth.jsonl"};
  } else {
    argv = {"/usr/bin/env",
            "REALSTACK_TRUTH=" + dir_ + "/truth.jsonl",
            "REALSTACK_FLAVOR=" + s.flavor,
            "REALSTACK_MODEL=" + s.served_model(),
            "REALSTACK_NAME=" + s.name,
            kPython,
            AppDir() + "/serve.py",
            "--http",
            s.http,
            "--host",
            ns_.srv_v4(),
            "--port",
            std::to_string(s.port)};
  }
  auto child = std::make_unique<Child>();
  if (!child->Start(argv, ns_.srv(), dir_ + "/" + s.name + ".out", dir_ + "/" + s.name + ".err",
                    error))
    return false;
  children_.push_back(std::move(child));
  if (!WaitUntil(seconds(20),
                 [&] { return StatusIn(ns_.srv(), "http://" + listen + "/health") == "200"; })) {
    *error = s.name + " did not come up: " + Tail(s.name + ".err");
    return false;
  }
  servers_.push_back(s);
  return true;
}

bool Stack::StartHaproxy(const std::vector<Route>& routes, std::string* error) {
  std::string proxies;
  for (const Route& r : routes) {
    if (r.gateway != "haproxy") continue;
    const Server* s = FindServer(r.server);
    if (!s) {
      *error = "route " + r.name + ": unknown server " + r.server;
      return false;
    }
    proxies += "frontend f_" + r.name + "\n    bind 127.0.0.1:" + std::to_string(r.port) +
               "\n    default_backend b_" + r.name + "\nbackend b_" + r.name + "\n    server s1 " +
               ns_.srv_v4() + ":" + std::to_string(s->port) + "\n";
  }
  const std::string tmpl = ReadFileOr(AppDir() + "/haproxy.cfg.in");
  const std::string cfg = dir_ + "/haproxy.cfg";
  if (tmpl.empty() || !WriteFile(cfg, Substitute(tmpl, {{"PREFIX", dir_}, {"PROXIES", proxies}}))) {
    *error = "cannot write " + cfg;
    return false;
  }
  auto child = std::make_unique<Child>();
  if (!child->Start({"/usr/sbin/haproxy", "-db", "-f", cfg}, ns_.cli(), dir_ + "/haproxy.out",
                    dir_ + "/haproxy.err", error))
    return false;
  children_.push_back(std::move(child));
  for (const Route& r : routes) {
    if (r.gateway != "haproxy") continue;
    if (!WaitUntil(seconds(10),
                   [&] { return StatusIn(ns_.cli(), RouteUrl(r) + "/health") == "200"; })) {
      *error = "haproxy did not come up on " + r.name + ": " + Tail("haproxy.err");
      return false;
    }
  }
  return true;
}

bool Stack::StartNginx(const Route& r, std::string* error) {
  const Server* s = FindServer(r.server);
  if (!s) {
    *error = "route " + r.name + ": unknown server " + r.server;
    return false;
  }
  // The accuracy test's nginx config as it is: one upstream with keep-alive, request body
  // buffered by nginx (its default), SSE passed through unbuffered.
  const std::string prefix = dir_ + "/nginx-" + r.name;
  for (const char* d : {"", "/logs", "/tmp"}) std::filesystem::create_directories(prefix + d);
  const std::string tmpl = ReadFileOr(SourceDir() + "/test/e2e/nginx/accuracy.conf.in");
  if (tmpl.empty() ||
      !WriteFile(prefix + "/nginx.conf",
                 Substitute(tmpl, {{"PREFIX", prefix},
                                   {"LISTEN", "127.0.0.1:" + std::to_string(r.port)},
                                   {"UPSTREAM", ns_.srv_v4() + ":" + std::to_string(s->port)}}))) {
    *error = "cannot write the nginx config";
    return false;
  }
  auto child = std::make_unique<Child>();
  if (!child->Start({"/usr/sbin/nginx", "-p", prefix, "-c", prefix + "/nginx.conf", "-e",
                     prefix + "/logs/error.log"},
                    ns_.cli(), prefix + "/nginx.out", prefix + "/nginx.err", error))
    return false;
  children_.push_back(std::move(child));
  if (!WaitUntil(seconds(10),
                 [&] { return StatusIn(ns_.cli(), RouteUrl(r) + "/nginx-ready") == "204"; })) {
    *error = "nginx did not come up on " + r.name + ": " + ReadFileOr(prefix + "/logs/error.log");
    return false;
  }
  return true;
}

bool Stack::StartAgent(const std::vector<std::string>& extra, std::string* error, int nice) {
  metrics_addr_ = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  inspect_addr_ = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  std::vector<std::string> argv = {
      InfertapBinary(), "run",         "--metrics-auth", "none",
      "--metrics-addr", metrics_addr_, "--inspect-addr", inspect_addr_};
  for (const Server& s : servers_) {
    argv.push_back("--target");
    argv.push_back(ns_.srv_v4() + ":" + std::to_string(s.port));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  if (nice > 0) argv.insert(argv.begin(), {"/usr/bin/nice", "-n", std::to_string(nice)});
  agent_ = std::make_unique<Child>();
  if (!agent_->Start(argv, "", dir_ + "/agent.out", dir_ + "/agent.err", error)) return false;
  WaitUntil(seconds(30), [&] {
    return ReadFileOr(dir_ + "/agent.err").find("running: tracing") != std::string::npos ||
           agent_->Wait(milliseconds(0), nullptr);
  });
  if (!agent_->running() ||
      ReadFileOr(dir_ + "/agent.err").find("running: tracing") == std::string::npos) {
    *error = "agent did not start: " + Tail("agent.err");
    return false;
  }
  if (!WaitUntil(seconds(10),
                 [&] { return StatusIn("", "http://" + metrics_addr_ + "/readyz") == "200"; })) {
    *error = "agent never ready: " + Tail("agent.err");
    return false;
  }
  return true;
}

bool Stack::ReniceAgent(int nice) {
  return agent_ && agent_->running() &&
         Sh("renice -n " + std::to_string(nice) + " -p " + std::to_string(agent_->pid())) == 0;
}

bool Stack::StartRecords(std::string* error) {
  records_ = std::make_unique<Child>();
  if (!records_->Start({"curl", "-sN", "--max-time", "600", "-D", dir_ + "/records.head",
                        "http://" + inspect_addr_ + "/v1/records"},
                       "", dir_ + "/records.jsonl", dir_ + "/records.err", error))
    return false;
  if (!WaitUntil(seconds(5), [&] {
        return ReadFileOr(dir_ + "/records.head").find("\r\n\r\n") != std::string::npos;
      })) {
    *error = "no /v1/records stream: " + Tail("records.err");
    return false;
  }
  // The subscription is made as the answer starts; a moment for it to settle before traffic.
  std::this_thread::sleep_for(milliseconds(100));
  return true;
}

void Stack::StopRecords() {
  if (records_) records_->Stop(SIGTERM, seconds(2));
}

bool Stack::StopAgent(std::string* log_tail) {
  if (!agent_) return true;
  const int status = agent_->Stop(SIGINT, seconds(10));
  *log_tail = Tail("agent.err");
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string Stack::RouteUrl(const Route& r) const {
  if (r.gateway.empty()) {
    const Server* s = FindServer(r.server);
    return "http://" + ns_.srv_v4() + ":" + std::to_string(s ? s->port : 0);
  }
  return "http://127.0.0.1:" + std::to_string(r.port);
}

bool Stack::RunLoad(json plan, const std::vector<Route>& routes, const std::string& views_file,
                    double timeout_s, std::string* error) {
  plan["routes"] = json::array();
  for (const Route& r : routes) {
    const Server* s = FindServer(r.server);
    if (!s) {
      *error = "route " + r.name + ": unknown server " + r.server;
      return false;
    }
    plan["routes"].push_back(json{{"name", r.name},
                                  {"url", RouteUrl(r)},
                                  {"server", s->name},
                                  {"flavor", s->flavor},
                                  {"no_slow", r.no_slow}});
  }
  const std::string plan_file = views_file + ".plan.json";
  WriteFile(plan_file, plan.dump(2));
  Child load;
  if (!load.Start({kPython, AppDir() + "/load.py", "--plan", plan_file, "--out", views_file},
                  ns_.cli(), views_file + ".out", views_file + ".err", error))
    return false;
  int status = 0;
  if (!load.Wait(milliseconds(int64_t(timeout_s * 1000)), &status)) {
    *error =
        "load.py hung (" + std::to_string(timeout_s) + " s): " + ReadFileOr(views_file + ".err");
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = "load.py failed: " + ReadFileOr(views_file + ".err");
    return false;
  }
  return true;
}

std::string Stack::Metrics() const { return Get("http://" + metrics_addr_ + "/metrics"); }
std::vector<json> Stack::Records() const { return ReadJsonLines(dir_ + "/records.jsonl"); }
std::vector<json> Stack::Truth() const { return ReadJsonLines(dir_ + "/truth.jsonl"); }
std::vector<json> Stack::Views(const std::string& views_file) const {
  return ReadJsonLines(views_file);
}

const Server* Stack::FindServer(const std::string& name) const {
  for (const Server& s : servers_)
    if (s.name == name) return &s;
  return nullptr;
}

// ---- the comparison ------------------------------------------------------------------------

namespace {

std::string ErrorFor(int status, bool error_event) {
  switch (status) {
    case 400:
    case 422:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 429:
      return "ResourceExhausted";
    case 503:
      return "ServiceUnavailable";
    default:
      break;
  }
  if (status >= 500) return "ModelServerError";
  if (status >= 400) return "BadRequest";
  return error_event ? "ModelServerError" : "";
}

template <typename T>
std::optional<T> Opt(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  return j[key].get<T>();
}

}  // namespace

std::map<std::string, Truth> JoinTruth(const std::vector<json>& views,
                                       const std::vector<json>& server_truth, const Stack& stack) {
  std::map<std::string, json> by_rid;
  for (const json& t : server_truth) {
    // Readiness probes carry no request id.
    if (t.contains("rid") && t["rid"].is_string()) by_rid[t["rid"].get<std::string>()] = t;
  }
  std::map<std::string, Truth> out;
  for (const json& v : views) {
    Truth t;
    t.view = v;
    const std::string rid = v.value("rid", "");
    auto it = by_rid.find(rid);
    t.server = it == by_rid.end() ? json() : it->second;
    if (v.contains("model") && v["model"].is_string()) {
      t.model = v["model"].get<std::string>();
    } else {
      const Server* s = stack.FindServer(v.value("server", ""));
      t.model = s ? s->served_model() : "";
    }
    const int status = t.server.is_object() ? t.server.value("status", 0) : v.value("status", 0);
    const bool error_event =
        t.server.is_object() ? t.server.value("error_event", false) : v.value("error_event", false);
    t.expected_error = ErrorFor(status, error_event);
    out[rid] = std::move(t);
  }
  return out;
}

std::map<std::string, std::vector<json>> MatchRecords(const std::vector<json>& records,
                                                      const std::map<std::string, Truth>& truth,
                                                      std::vector<json>* unmatched) {
  // (model, request body bytes) finds every request; a model used once finds its request also
  // when the record's byte count is wrong (so the comparison can say what differs).
  std::map<std::pair<std::string, uint64_t>, std::string> by_key;
  std::map<std::string, std::vector<std::string>> by_model;
  for (const auto& [rid, t] : truth) {
    by_key[{t.model, t.view.value("request_bytes", uint64_t{0})}] = rid;
    if (t.view.contains("model") && t.view["model"].is_string()) by_model[t.model].push_back(rid);
  }
  std::map<std::string, std::vector<json>> out;
  for (const json& r : records) {
    const std::string target = r.value("target_model_name", "");
    auto k = by_key.find({target, r.value("request_bytes", uint64_t{0})});
    if (k != by_key.end()) {
      out[k->second].push_back(r);
      continue;
    }
    auto m = by_model.find(target);
    if (m != by_model.end() && m->second.size() == 1) {
      out[m->second[0]].push_back(r);
      continue;
    }
    unmatched->push_back(r);
  }
  return out;
}

std::vector<std::string> RecordDiffs(const json& r, const Truth& t, double tol, bool check_timing) {
  std::vector<std::string> d;
  auto diff = [&](const std::string& field, const json& got, const json& want) {
    if (got != want) d.push_back(field + " " + got.dump() + " != " + want.dump());
  };
  const json& s = t.server;
  if (!s.is_object()) {
    d.push_back("the server logged no ground truth for this request");
    return d;
  }
  diff("model_name", r.value("model_name", ""), t.model);
  diff("target_model_name", r.value("target_model_name", ""), t.model);
  diff("method", r.value("method", ""), "POST");
  diff("path", r.value("path", ""), t.view.value("path", ""));
  diff("role", r.value("role", ""), "server");
  diff("status", r.value("status", -1), s.value("status", 0));
  diff("stream", r.value("stream", false), s.value("stream", false));
  diff("error_code", r.value("error_code", "?"), t.expected_error);
  diff("request_bytes", r.value("request_bytes", uint64_t{0}),
       t.view.value("request_bytes", uint64_t{0}));
  diff("response_bytes", r.value("response_bytes", uint64_t{0}),
       s.value("response_bytes", uint64_t{0}));
  diff("input_tokens", r.contains("input_tokens") ? r["input_tokens"] : json(),
       s.contains("input_tokens") ? s["input_tokens"] : json());
  diff("output_tokens", r.contains("output_tokens") ? r["output_tokens"] : json(),
       s.contains("output_tokens") ? s["output_tokens"] : json());
  diff("chunks", r.value("chunks", 0), s.value("content_events", 0));
  const bool want_ttft = s.value("stream", false) && s.value("content_events", 0) > 0;
  diff("has ttft_s", r.contains("ttft_s"), want_ttft);
  if (!check_timing) return d;
  const auto start = Opt<uint64_t>(s, "start_ns");
  const auto first = Opt<uint64_t>(s, "first_content_ns");
  const auto last = Opt<uint64_t>(s, "last_byte_ns");
  char buf[160];
  if (want_ttft && start && first && r.contains("ttft_s")) {
    const double want = double(*first - *start) / 1e9, got = r["ttft_s"].get<double>();
    if (std::fabs(got - want) > tol) {
      std::snprintf(buf, sizeof buf, "ttft_s %.6f vs the server's %.6f (off by %.2f ms)", got, want,
                    (got - want) * 1e3);
      d.push_back(buf);
    }
  }
  if (start && last) {
    const double want = double(*last - *start) / 1e9, got = r.value("duration_s", -1.0);
    if (std::fabs(got - want) > tol) {
      std::snprintf(buf, sizeof buf, "duration_s %.6f vs the server's %.6f (off by %.2f ms)", got,
                    want, (got - want) * 1e3);
      d.push_back(buf);
    }
  }
  return d;
}

namespace {

void Add(FamilySums& f, const std::string& family, const std::string& pair, double v) {
  if (v != 0) f.values[family + "|" + pair] += v;
}

void AddSeconds(FamilySums& f, const std::string& family, const std::string& pair, double v) {
  f.seconds[family + "|" + pair] += v;
}

std::string Pair(const std::string& model, const std::string& target) {
  return model + "/" + target;
}

// The metric families the comparison covers, by the name their samples carry.
const std::map<std::string, std::string> kFamilies = {
    {"inference_model_request_total", "request_total"},
    {"inference_model_request_error_total", "error_total"},
    {"inference_model_request_sizes_count", "request_sizes_count"},
    {"inference_model_request_sizes_sum", "request_sizes_sum"},
    {"inference_model_response_sizes_count", "response_sizes_count"},
    {"inference_model_response_sizes_sum", "response_sizes_sum"},
    {"inference_model_request_duration_seconds_count", "duration_count"},
    {"inference_model_input_tokens_count", "input_tokens_count"},
    {"inference_model_input_tokens_sum", "input_tokens_sum"},
    {"inference_model_output_tokens_count", "output_tokens_count"},
    {"inference_model_output_tokens_sum", "output_tokens_sum"},
    {"inference_model_request_ttft_seconds_count", "ttft_count"},
    {"inference_model_request_tpot_seconds_count", "tpot_count"},
    {"inference_model_normalized_time_per_output_token_seconds_count", "ntpot_count"},
    {"inference_model_prompt_cached_tokens_count", "cached_tokens_count"},
};

// The seconds sums, and the count family that says how many observations each one has.
const std::map<std::string, std::pair<std::string, std::string>> kSecondsFamilies = {
    {"inference_model_request_duration_seconds_sum", {"duration_sum", "duration_count"}},
    {"inference_model_request_ttft_seconds_sum", {"ttft_sum", "ttft_count"}},
    {"inference_model_request_tpot_seconds_sum", {"tpot_sum", "tpot_count"}},
    {"inference_model_normalized_time_per_output_token_seconds_sum", {"ntpot_sum", "ntpot_count"}},
};

}  // namespace

FamilySums SumsFromTruth(const std::map<std::string, Truth>& truth) {
  FamilySums f;
  for (const auto& [rid, t] : truth) {
    const json& s = t.server;
    const std::string p = Pair(t.model, t.model);
    const int status = s.is_object() ? s.value("status", 0) : 0;
    Add(f, "request_total", p, 1);
    Add(f, "request_sizes_count", p, 1);
    Add(f, "request_sizes_sum", p, double(t.view.value("request_bytes", uint64_t{0})));
    if (!t.expected_error.empty()) Add(f, "error_total|" + t.expected_error, p, 1);
    if (status == 0) continue;
    Add(f, "response_sizes_count", p, 1);
    Add(f, "response_sizes_sum", p, double(s.value("response_bytes", uint64_t{0})));
    Add(f, "duration_count", p, 1);
    const auto start = Opt<uint64_t>(s, "start_ns"), last = Opt<uint64_t>(s, "last_byte_ns"),
               first = Opt<uint64_t>(s, "first_content_ns");
    // A slow upload's exchange may end with its request body, after the server's last write.
    if (t.view.value("client", "") == "slow" || !start || !last) f.untimed.insert(p);
    if (start && last) AddSeconds(f, "duration_sum", p, double(*last - *start) / 1e9);
    if (start && first && s.value("stream", false))
      AddSeconds(f, "ttft_sum", p, double(*first - *start) / 1e9);
    const auto in = Opt<uint64_t>(s, "input_tokens"), out = Opt<uint64_t>(s, "output_tokens");
    if (in && *in > 0) {
      Add(f, "input_tokens_count", p, 1);
      Add(f, "input_tokens_sum", p, double(*in));
    }
    if (out && *out > 0) {
      Add(f, "output_tokens_count", p, 1);
      Add(f, "output_tokens_sum", p, double(*out));
      Add(f, "ntpot_count", p, 1);
    }
    if (s.value("stream", false) && s.value("content_events", 0) > 0) {
      Add(f, "ttft_count", p, 1);
      if (out && *out > 1) Add(f, "tpot_count", p, 1);
    }
  }
  return f;
}

FamilySums SumsFromRecords(const std::vector<json>& records) {
  FamilySums f;
  for (const json& r : records) {
    const std::string p = Pair(r.value("model_name", ""), r.value("target_model_name", ""));
    const int status = r.value("status", 0);
    Add(f, "request_total", p, 1);
    Add(f, "request_sizes_count", p, 1);
    Add(f, "request_sizes_sum", p, double(r.value("request_bytes", uint64_t{0})));
    const std::string code = r.value("error_code", "");
    if (!code.empty()) Add(f, "error_total|" + code, p, 1);
    if (status != 0) {
      Add(f, "response_sizes_count", p, 1);
      Add(f, "response_sizes_sum", p, double(r.value("response_bytes", uint64_t{0})));
      Add(f, "duration_count", p, 1);
      if (r.value("output_tokens", uint64_t{0}) > 0) Add(f, "ntpot_count", p, 1);
    }
    if (r.value("input_tokens", uint64_t{0}) > 0) {
      Add(f, "input_tokens_count", p, 1);
      Add(f, "input_tokens_sum", p, double(r["input_tokens"].get<uint64_t>()));
    }
    if (r.value("output_tokens", uint64_t{0}) > 0) {
      Add(f, "output_tokens_count", p, 1);
      Add(f, "output_tokens_sum", p, double(r["output_tokens"].get<uint64_t>()));
    }
    if (r.contains("ttft_s")) Add(f, "ttft_count", p, 1);
    if (r.contains("tpot_s")) Add(f, "tpot_count", p, 1);
    const double duration = r.value("duration_s", 0.0);
    if (status != 0) AddSeconds(f, "duration_sum", p, duration);
    if (r.contains("ttft_s")) AddSeconds(f, "ttft_sum", p, r["ttft_s"].get<double>());
    if (r.contains("tpot_s")) AddSeconds(f, "tpot_sum", p, r["tpot_s"].get<double>());
    if (status != 0 && r.value("output_tokens", uint64_t{0}) > 0)
      AddSeconds(f, "ntpot_sum", p, duration / double(r["output_tokens"].get<uint64_t>()));
    if (r.contains("cached_tokens")) Add(f, "cached_tokens_count", p, 1);
  }
  return f;
}

FamilySums SumsFromMetrics(const std::string& exposition, const std::set<std::string>& models) {
  FamilySums f;
  for (const auto& [key, value] : ParsePrometheus(exposition)) {
    const size_t brace = key.find('{');
    const std::string name = key.substr(0, brace);
    auto fam = kFamilies.find(name);
    auto sec = kSecondsFamilies.find(name);
    if (fam == kFamilies.end() && sec == kSecondsFamilies.end()) continue;
    auto label = [&](const std::string& name) {
      const std::string pat = "," + name + "=\"";
      const std::string k = "," + key.substr(brace + 1);
      const size_t at = k.find(pat);
      if (at == std::string::npos) return std::string();
      const size_t from = at + pat.size();
      return k.substr(from, k.find('"', from) - from);
    };
    const std::string model = label("model_name"), target = label("target_model_name");
    // Only the pairs asked about (all of them when `models` is empty).
    if (!models.empty() && !models.count(model) && !models.count(target)) continue;
    if (sec != kSecondsFamilies.end()) {
      AddSeconds(f, sec->second.first, Pair(model, target), value);
      continue;
    }
    std::string family = fam->second;
    if (family == "error_total") family += "|" + label("error_code");
    Add(f, family, Pair(model, target), value);
  }
  return f;
}

std::string PairKey(const std::string& model, const std::string& target) {
  return Pair(model, target);
}

std::string DiffSeconds(const FamilySums& got, const FamilySums& want, double tol_s,
                        const std::string& got_name, const std::string& want_name,
                        const std::map<std::string, double>& extra_s) {
  std::vector<std::string> lines;
  std::map<std::string, std::string> count_family;
  for (const auto& [metric, names] : kSecondsFamilies) count_family[names.first] = names.second;
  for (const auto& [key, w] : want.seconds) {
    const size_t bar = key.find('|');
    const std::string family = key.substr(0, bar), pair = key.substr(bar + 1);
    if (want.untimed.count(pair)) continue;
    auto c = want.values.find(count_family[family] + "|" + pair);
    const double n = c == want.values.end() ? 1 : c->second;
    auto g = got.seconds.find(key);
    const double gv = g == got.seconds.end() ? 0 : g->second;
    auto extra = extra_s.find(pair);
    const double allowed = tol_s * std::max(1.0, n) + (extra == extra_s.end() ? 0 : extra->second);
    if (std::fabs(gv - w) > allowed) {
      char buf[160];
      std::snprintf(buf, sizeof buf, ": %s %.6f, %s %.6f (%.0f observations)", got_name.c_str(), gv,
                    want_name.c_str(), w, n);
      lines.push_back(key + buf);
    }
  }
  std::set<std::string> want_families;
  for (const auto& [key, w] : want.seconds) want_families.insert(key.substr(0, key.find('|')));
  for (const auto& [key, g] : got.seconds) {
    if (!want.seconds.count(key) && g != 0 && want_families.count(key.substr(0, key.find('|'))))
      lines.push_back(key + ": only in " + got_name);
  }
  std::string out;
  for (size_t i = 0; i < lines.size() && i < 20; ++i) out += "  " + lines[i] + "\n";
  return lines.empty() ? "" : std::to_string(lines.size()) + " differences\n" + out;
}

}  // namespace infertap::e2e::realstack
