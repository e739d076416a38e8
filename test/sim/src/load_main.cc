// infertap-load: a small epoll load generator for OpenAI-compatible servers (the simulator in
// tests and benchmarks). Keep-alive connections, closed loop by default or open loop at a fixed
// rate; verifies every response (status, framing, SSE events, usage) and prints a JSON summary.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "response_reader.hpp"
#include "wire_format.hpp"

namespace {

using infertap::sim::Classified;
using infertap::sim::ResponseReader;
using infertap::sim::SseScanner;

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

struct Options {
  std::string url;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string path = "/v1/chat/completions";
  int connections = 1;
  int64_t requests = 0;  // 0 with --duration: as many as fit
  double duration_s = 0;
  bool stream = true;
  bool include_usage = false;
  int tokens = -1;  // -1: no max_tokens in the body
  double rate = 0;  // requests/s, open loop; 0 = closed loop
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  int prompt_words = 8;
  std::vector<std::string> headers;
  double timeout_s = 30;
  // Per-request truth for tests: request i names model "<model>-<i>" and asks for
  // tokens + i % 7 tokens (so every request's sizes differ from its neighbours'); one JSON line
  // per request goes to truth_file.
  bool unique_models = false;
  std::string truth_file;
};

bool ParseUrl(const std::string& url, Options* o) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  o->path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string portstr = "80";
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    if (close == std::string::npos) return false;
    o->host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':')
      portstr = hostport.substr(close + 2);
  } else {
    size_t colon = hostport.rfind(':');
    o->host = hostport.substr(0, colon);
    if (colon != std::string::npos) portstr = hostport.substr(colon + 1);
  }
  try {
    o->port = std::stoi(portstr);
  } catch (...) {
    return false;
  }
  return !o->host.empty() && o->port > 0 && o->port < 65536;
}

std::string BuildBody(const Options& o, int64_t seq) {
  std::string prompt;
  for (int i = 0; i < o.prompt_words; ++i) prompt += (i ? " w" : "w") + std::to_string(i);
  nlohmann::ordered_json b;
  b["model"] = o.unique_models ? o.model + "-" + std::to_string(seq) : o.model;
  const int tokens =
      o.unique_models && o.tokens >= 0 ? o.tokens + static_cast<int>(seq % 7) : o.tokens;
  bool responses = o.path.find("/responses") != std::string::npos;
  bool embeddings = o.path.find("/embeddings") != std::string::npos;
  bool chat = o.path.find("/chat/") != std::string::npos;
  if (chat) {
    b["messages"] = nlohmann::ordered_json::array({{{"role", "user"}, {"content", prompt}}});
  } else if (responses || embeddings) {
    b["input"] = prompt;
  } else {
    b["prompt"] = prompt;
  }
  if (!embeddings) {
    if (tokens >= 0) b[responses ? "max_output_tokens" : "max_tokens"] = tokens;
    b["stream"] = o.stream;
    if (o.stream && o.include_usage && !responses) {
      b["stream_options"] = {{"include_usage", true}};
    }
  }
  return b.dump();
}

struct Totals {
  int64_t sent = 0;
  int64_t responses = 0;
  int64_t ok = 0;
  int64_t errors = 0;
  int64_t http_errors = 0;
  int64_t stream_errors = 0;  // error events inside a 200 stream, or no [DONE]
  int64_t io_errors = 0;      // connect failure, reset, truncated response
  int64_t parse_errors = 0;   // unparsable head, chunking or JSON
  int64_t one_event_per_chunk_violations = 0;
  std::map<int, int64_t> status;
  uint64_t bytes_sent = 0;
  uint64_t wire_bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t wire_bytes_received = 0;
  int64_t content_events = 0;
  int64_t tokens_received = 0;
  int64_t usage_prompt_tokens = 0;
  int64_t usage_completion_tokens = 0;
  std::vector<double> latency;
  std::vector<double> ttft;
};

struct Conn {
  int fd = -1;
  bool connected = false;
  bool in_flight = false;
  std::string out;
  size_t out_off = 0;
  ResponseReader reader;
  SseScanner sse;
  int64_t t_start = 0;
  int64_t t_first = 0;
  // Per-response tallies, merged into Totals when the response completes.
  int64_t events = 0;
  int64_t content = 0;
  bool saw_done = false;
  bool saw_error = false;
  bool parse_failed = false;
  Classified last_usage;
  std::string body;  // non-streaming bodies only (bounded by the server's reply)
  // --truth: the request in flight.
  int64_t seq = -1;
  std::string model;
  uint64_t request_bytes = 0;
  int local_port = 0;
};

class Load {
 public:
  explicit Load(Options o) : o_(std::move(o)) {
    BuildRequest(0);
    if (!o_.truth_file.empty()) truth_ = std::fopen(o_.truth_file.c_str(), "w");
  }
  ~Load() {
    if (truth_) std::fclose(truth_);
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;
  bool truth_ok() const { return o_.truth_file.empty() || truth_; }

  int Run();
  nlohmann::ordered_json Summary() const;

 private:
  bool Resolve();
  void Open(Conn& c);
  void StartRequest(Conn& c, int64_t t_start);
  void OnEvent(Conn& c, uint32_t events);
  void Complete(Conn& c, bool ok_framing);
  void Fail(Conn& c, int64_t Totals::*kind);
  void CloseConn(Conn& c);
  bool MayIssue() const;
  void Pump();
  void Mod(Conn& c);
  void BuildRequest(int64_t seq);
  void WriteTruth(const Conn& c, const char* outcome);

  Options o_;
  std::string body_;
  std::string request_;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int ep_ = -1;
  std::vector<std::unique_ptr<Conn>> conns_;
  Totals t_;
  int64_t start_ = 0;
  int64_t end_ = 0;
  int64_t issued_ = 0;           // requests started (or scheduled, open loop)
  std::deque<int64_t> backlog_;  // open loop: scheduled start times without a free connection
  int64_t connect_failures_ = 0;
  int64_t seq_ = 0;  // requests started so far (the next request's number)
  std::FILE* truth_ = nullptr;
};

void Load::BuildRequest(int64_t seq) {
  body_ = BuildBody(o_, seq);
  request_ = "POST " + o_.path + " HTTP/1.1\r\nhost: " + o_.host + ":" + std::to_string(o_.port) +
             "\r\ncontent-type: application/json\r\naccept: " +
             (o_.stream ? "text/event-stream" : "application/json") + "\r\n";
  for (const auto& h : o_.headers) request_ += h + "\r\n";
  request_ += "content-length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_;
}

// One line per finished or failed request: what this client sent and saw (outcome "ok",
// "error": a complete response that failed a check, "io": cut off or reset).
void Load::WriteTruth(const Conn& c, const char* outcome) {
  if (!truth_ || c.seq < 0) return;
  nlohmann::ordered_json j;
  j["seq"] = c.seq;
  j["model"] = c.model;
  j["local_port"] = c.local_port;
  j["outcome"] = outcome;
  j["status"] = c.reader.status();
  j["request_bytes"] = c.request_bytes;
  j["response_bytes"] = c.reader.body_bytes();
  j["content_events"] = c.content;
  j["usage_prompt_tokens"] = c.last_usage.has_usage ? c.last_usage.prompt_tokens : -1;
  j["usage_completion_tokens"] = c.last_usage.has_usage ? c.last_usage.completion_tokens : -1;
  std::fprintf(truth_, "%s\n", j.dump().c_str());
}

bool Load::Resolve() {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(o_.host.c_str(), std::to_string(o_.port).c_str(), &hints, &res) != 0)
    return false;
  std::memcpy(&addr_, res->ai_addr, res->ai_addrlen);
  addr_len_ = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

void Load::Open(Conn& c) {
  c = Conn();  // a new connection: local_port is looked up again
  c.fd = socket(addr_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return;
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&addr_), addr_len_);
  if (rc != 0 && errno != EINPROGRESS) {
    close(c.fd);
    c.fd = -1;
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ev.data.ptr = &c;
  epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
}

bool Load::MayIssue() const {
  if (o_.requests > 0 && issued_ >= o_.requests) return false;
  if (o_.duration_s > 0 && MonoNs() >= start_ + static_cast<int64_t>(o_.duration_s * 1e9))
    return false;
  return true;
}

void Load::Mod(Conn& c) {
  epoll_event ev{};
  ev.events =
      EPOLLIN | EPOLLRDHUP | (c.out.size() > c.out_off || !c.connected ? uint32_t{EPOLLOUT} : 0u);
  ev.data.ptr = &c;
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Load::StartRequest(Conn& c, int64_t t_start) {
  c.in_flight = true;
  c.reader.Reset();
  c.sse = SseScanner();
  c.events = c.content = 0;
  c.saw_done = c.saw_error = c.parse_failed = false;
  c.last_usage = Classified();
  c.body.clear();
  c.t_start = t_start;
  c.t_first = 0;
  if (o_.unique_models) BuildRequest(seq_);
  c.seq = seq_++;
  c.model = o_.unique_models ? o_.model + "-" + std::to_string(c.seq) : o_.model;
  c.request_bytes = body_.size();
  if (truth_ && c.local_port == 0) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(c.fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      c.local_port = local.ss_family == AF_INET6
                         ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
                         : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    }
  }
  c.out = request_;
  c.out_off = 0;
  t_.sent++;
  t_.bytes_sent += body_.size();
  t_.wire_bytes_sent += request_.size();
  if (c.connected) {
    ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n > 0) c.out_off = static_cast<size_t>(n);
  }
  Mod(c);
}

void Load::CloseConn(Conn& c) {
  if (c.fd >= 0) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
  }
  c.fd = -1;
  c.connected = false;
  c.in_flight = false;
}

void Load::Fail(Conn& c, int64_t Totals::*kind) {
  if (c.in_flight) {
    t_.errors++;
    (t_.*kind)++;
    WriteTruth(c, "io");
    c.seq = -1;
  }
  CloseConn(c);
}

void Load::Complete(Conn& c, bool ok_framing) {
  int64_t now = MonoNs();
  bool stream = c.reader.content_type().find("text/event-stream") != std::string::npos;
  t_.responses++;
  t_.status[c.reader.status()]++;
  t_.bytes_received += c.reader.body_bytes();
  t_.wire_bytes_received += c.reader.wire_bytes();
  Classified body_info;
  if (stream) {
    c.sse.Finish([&](const SseScanner::Event&) {});
    // The simulator's vLLM/SGLang/TGI formats put exactly one SSE event in each chunk.
    if (c.reader.chunked() && static_cast<uint64_t>(c.events) != c.reader.chunks()) {
      t_.one_event_per_chunk_violations++;
    }
  } else if (!c.body.empty()) {
    body_info = infertap::sim::ClassifyBody(c.body);
    c.parse_failed = c.parse_failed || body_info.parse_failed;
    if (body_info.has_usage) c.last_usage = body_info;
  }
  t_.content_events += c.content;
  t_.tokens_received += stream ? c.content : c.last_usage.completion_tokens;
  if (c.last_usage.has_usage || body_info.has_usage) {
    t_.usage_prompt_tokens += c.last_usage.prompt_tokens;
    t_.usage_completion_tokens += c.last_usage.completion_tokens;
  }
  bool ok = ok_framing;
  if (c.reader.status() >= 400) {
    t_.http_errors++;
    ok = false;
  } else if (c.parse_failed) {
    t_.parse_errors++;
    ok = false;
  } else if (stream && (c.saw_error || (!c.saw_done && !o_.path.ends_with("/responses")))) {
    t_.stream_errors++;
    ok = false;
  }
  if (ok) {
    t_.ok++;
    t_.latency.push_back(static_cast<double>(now - c.t_start) / 1e9);
    if (c.t_first) t_.ttft.push_back(static_cast<double>(c.t_first - c.t_start) / 1e9);
  } else {
    t_.errors++;
  }
  WriteTruth(c, ok ? "ok" : "error");
  c.seq = -1;
  c.in_flight = false;
  if (!c.reader.keep_alive()) CloseConn(c);
}

void Load::OnEvent(Conn& c, uint32_t events) {
  if (!c.connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      connect_failures_++;
      return Fail(c, &Totals::io_errors);
    }
    c.connected = true;
  }
  if ((events & EPOLLOUT) && c.out.size() > c.out_off) {
    ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) return Fail(c, &Totals::io_errors);
    if (n > 0) c.out_off += static_cast<size_t>(n);
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return Fail(c, &Totals::io_errors);  // e.g. ECONNRESET from an aborted stream
      }
      if (n == 0) {
        if (c.in_flight && c.reader.OnEof() == ResponseReader::State::kDone) {
          Complete(c, true);
        }
        return Fail(c, &Totals::io_errors);  // counts only if a response was cut short
      }
      std::string_view data(buf, static_cast<size_t>(n));
      if (!c.in_flight) return Fail(c, &Totals::parse_errors);  // unsolicited bytes
      size_t used = 0;
      auto sink = [&](std::string_view body) {
        if (c.reader.content_type().find("text/event-stream") != std::string::npos) {
          c.sse.Feed(body, [&](const SseScanner::Event& ev) {
            c.events++;
            Classified k = infertap::sim::ClassifyEvent(ev);
            if (k.parse_failed) c.parse_failed = true;
            if (k.done) c.saw_done = true;
            if (k.error) c.saw_error = true;
            if (k.has_usage) c.last_usage = k;  // continuous usage: the last one wins
            if (k.content) {
              c.content++;
              if (!c.t_first) c.t_first = MonoNs();
            }
          });
        } else if (c.body.size() < (16u << 20)) {
          c.body.append(body);
        }
      };
      ResponseReader::State s = c.reader.Feed(data, &used, sink);
      if (s == ResponseReader::State::kInvalid) return Fail(c, &Totals::parse_errors);
      if (s == ResponseReader::State::kDone) {
        Complete(c, true);
        if (c.fd < 0) return;
        if (used < data.size()) return Fail(c, &Totals::parse_errors);
      }
    }
  }
  if (c.fd >= 0) Mod(c);
}

// Starts requests on idle connections and reopens closed ones while the budget allows.
void Load::Pump() {
  int64_t now = MonoNs();
  if (o_.rate > 0) {
    // Open loop: request i is due at start + i/rate; late ones keep their due time, so queueing
    // delay shows up in the latency figures (no coordinated omission).
    while (MayIssue()) {
      int64_t due = start_ + static_cast<int64_t>(static_cast<double>(issued_) * 1e9 / o_.rate);
      if (due > now) break;
      backlog_.push_back(due);
      issued_++;
    }
  }
  for (auto& cp : conns_) {
    Conn& c = *cp;
    bool want = o_.rate > 0 ? !backlog_.empty() : MayIssue();
    if (!want) break;
    if (c.fd < 0) {
      if (connect_failures_ > 100) break;  // nothing listens: stop hammering
      Open(c);
      if (c.fd < 0) {
        connect_failures_++;
        continue;
      }
    }
    if (c.in_flight) continue;
    if (o_.rate > 0) {
      StartRequest(c, backlog_.front());
      backlog_.pop_front();
    } else {
      StartRequest(c, MonoNs());
      issued_++;
    }
  }
}

int Load::Run() {
  if (!Resolve()) {
    std::fprintf(stderr, "infertap-load: cannot resolve %s\n", o_.host.c_str());
    return 1;
  }
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < o_.connections; ++i) conns_.push_back(std::make_unique<Conn>());
  start_ = MonoNs();
  int64_t hard_stop =
      o_.duration_s > 0 ? start_ + static_cast<int64_t>((o_.duration_s + o_.timeout_s) * 1e9) : 0;
  int64_t last_progress = start_;
  int64_t last_responses = -1;
  epoll_event evs[256];
  for (;;) {
    Pump();
    bool in_flight =
        std::any_of(conns_.begin(), conns_.end(), [](auto& c) { return c->in_flight; });
    if (!in_flight && backlog_.empty() && !MayIssue()) break;
    if (connect_failures_ > 100 && !in_flight) break;
    int64_t now = MonoNs();
    if (t_.responses != last_responses) {
      last_responses = t_.responses;
      last_progress = now;
    }
    // Bounded: give up when nothing completed for --timeout, or past duration + timeout.
    if (now - last_progress > static_cast<int64_t>(o_.timeout_s * 1e9) ||
        (hard_stop && now > hard_stop)) {
      for (auto& c : conns_) {
        if (c->in_flight) Fail(*c, &Totals::io_errors);
      }
      std::fprintf(stderr, "infertap-load: timed out waiting for responses\n");
      break;
    }
    int timeout_ms = 50;
    if (o_.rate > 0) {
      int64_t due = start_ + static_cast<int64_t>(static_cast<double>(issued_) * 1e9 / o_.rate);
      timeout_ms = static_cast<int>(std::clamp<int64_t>((due - now) / 1'000'000, 0, 50));
    }
    int n = epoll_wait(ep_, evs, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (c.fd >= 0) OnEvent(c, evs[i].events);
    }
  }
  end_ = MonoNs();
  for (auto& c : conns_) CloseConn(*c);
  close(ep_);
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, idx == 0 ? 0 : idx - 1)];
}

nlohmann::ordered_json Load::Summary() const {
  double secs = static_cast<double>(end_ - start_) / 1e9;
  nlohmann::ordered_json j;
  j["url"] = "http://" + o_.host + ":" + std::to_string(o_.port) + o_.path;
  j["connections"] = o_.connections;
  j["stream"] = o_.stream;
  j["requests"] = t_.sent;
  j["responses"] = t_.responses;
  j["ok"] = t_.ok;
  j["errors"] = t_.errors;
  j["http_errors"] = t_.http_errors;
  j["stream_errors"] = t_.stream_errors;
  j["io_errors"] = t_.io_errors;
  j["parse_errors"] = t_.parse_errors;
  nlohmann::ordered_json st = nlohmann::ordered_json::object();
  for (const auto& [code, n] : t_.status) st[std::to_string(code)] = n;
  j["status"] = st;
  j["bytes_sent"] = t_.bytes_sent;
  j["bytes_received"] = t_.bytes_received;
  j["wire_bytes_sent"] = t_.wire_bytes_sent;
  j["wire_bytes_received"] = t_.wire_bytes_received;
  j["content_events"] = t_.content_events;
  j["tokens_received"] = t_.tokens_received;
  j["usage_prompt_tokens"] = t_.usage_prompt_tokens;
  j["usage_completion_tokens"] = t_.usage_completion_tokens;
  j["one_event_per_chunk_violations"] = t_.one_event_per_chunk_violations;
  j["duration_s"] = secs;
  j["throughput_rps"] = secs > 0 ? static_cast<double>(t_.ok) / secs : 0.0;
  j["tokens_per_s"] = secs > 0 ? static_cast<double>(t_.tokens_received) / secs : 0.0;
  j["latency_s"] = {{"p50", Percentile(t_.latency, 0.50)},
                    {"p90", Percentile(t_.latency, 0.90)},
                    {"p99", Percentile(t_.latency, 0.99)},
                    {"max", Percentile(t_.latency, 1.0)}};
  j["ttft_s"] = {{"p50", Percentile(t_.ttft, 0.50)}, {"p99", Percentile(t_.ttft, 0.99)}};
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "infertap-load: load generator for OpenAI-compatible servers (keep-alive, epoll).\n"
      "Prints a JSON summary on stdout; exit status 0 when every response was good, 3 otherwise."};
  app.add_option("--url", o.url, "http://HOST:PORT/PATH (overrides --host/--port/--path)");
  app.add_option("--host", o.host, "server host")->capture_default_str();
  app.add_option("--port", o.port, "server port")->capture_default_str();
  app.add_option("--path", o.path,
                 "endpoint: /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings")
      ->capture_default_str();
  app.add_option("-c,--connections", o.connections, "keep-alive connections")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("-n,--requests", o.requests, "total requests (default 100 unless --duration)");
  app.add_option("-d,--duration", o.duration_s, "run for this many seconds");
  app.add_flag("--stream,!--no-stream", o.stream, "stream responses (SSE)")->capture_default_str();
  app.add_flag("--include-usage", o.include_usage, "send stream_options.include_usage");
  app.add_option("--tokens", o.tokens, "max_tokens to send (default: none, the server decides)");
  app.add_option("--rate", o.rate, "open loop: start this many requests per second")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--model", o.model, "model field of the request")->capture_default_str();
  app.add_option("--prompt-words", o.prompt_words, "words in the prompt")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-H,--header", o.headers, "extra request header 'name: value', repeatable");
  app.add_option("--timeout", o.timeout_s, "give up after this many seconds without progress")
      ->capture_default_str();
  app.add_flag("--unique-models", o.unique_models,
               "request i names model MODEL-i and asks for --tokens + i%7 tokens");
  app.add_option("--truth", o.truth_file, "write one JSON line per request to this file");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (!o.url.empty() && !ParseUrl(o.url, &o)) {
    std::fprintf(stderr, "infertap-load: bad --url '%s' (want http://HOST:PORT/PATH)\n",
                 o.url.c_str());
    return 2;
  }
  if (o.requests <= 0 && o.duration_s <= 0) o.requests = 100;
  signal(SIGPIPE, SIG_IGN);
  Load load(o);
  if (!load.truth_ok()) {
    std::fprintf(stderr, "infertap-load: cannot write --truth %s\n", o.truth_file.c_str());
    return 2;
  }
  if (int rc = load.Run(); rc != 0) return rc;
  nlohmann::ordered_json s = load.Summary();
  std::printf("%s\n", s.dump(2).c_str());
  return s["errors"].get<int64_t>() == 0 ? 0 : 3;
}
