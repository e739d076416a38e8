#include "sim_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <queue>
#include <random>

#include "http_head.hpp"
#include "http_request.hpp"
#include "request_plan.hpp"

namespace infertap::sim {
namespace {

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// Busy loop standing in for the model's compute per token (--cpu-per-token).
void BurnCpu(int64_t ns) {
  if (ns <= 0) return;
  int64_t end = MonoNs() + ns;
  while (MonoNs() < end) {
  }
}

// epoll tags: connection fds are small positive ints; the rest live above 2^32.
constexpr uint64_t kTagListen = 1ULL << 32;
constexpr uint64_t kTagTimer = 2ULL << 32;
constexpr uint64_t kTagWake = 3ULL << 32;

// Pipelined input beyond this stops being read until the current response is done.
constexpr size_t kMaxBufferedInput = 1 << 20;
// A client that stops reading a stream gets cut off once this much output is pending.
constexpr size_t kMaxPendingOutput = 8 << 20;
// How long a closing connection waits for the peer's FIN before close().
constexpr int64_t kDrainTimeoutNs = 2'000'000'000;
// Timer callbacks per loop iteration before epoll gets a turn (zero-delay streams would
// otherwise starve accept and reads).
constexpr int kTimerBudget = 512;

constexpr std::string_view kGarbageMetrics =
    "<html><body>this is not prometheus text {{{ \"vllm:num_requests_running\"\n"
    "vllm:num_requests_running{engine=\"0\" NaNNaN\n";

}  // namespace

// One connection; owned by exactly one worker.
struct Conn {
  enum class Phase { kIdle, kQueued, kPrefill, kDecode, kDelayedMetrics, kDraining };

  int fd = -1;
  uint64_t gen = 0;
  std::string in;
  std::string out;  // bytes the kernel did not take yet
  size_t out_off = 0;
  RequestParser parser;
  bool continue_sent = false;
  bool busy = false;         // a response is in progress; later requests wait in `in`
  bool close_after = false;  // close once the current response is out
  bool broken = false;       // write failed or peer gone: kill at the end of this event
  bool peer_eof = false;
  uint32_t epoll_mask = 0;

  Phase phase = Phase::kIdle;
  Plan plan;
  uint64_t job = 0;
  int emitted = 0;
  bool head_sent = false;
  bool holds_slot = false;
  int64_t kv_held = 0;
  uint64_t timer_seq = 0;
};

class Worker {
 public:
  Worker(Server* server, int index)
      : server_(server), cfg_(server->config()), rng_(cfg_.seed + static_cast<uint64_t>(index)) {}
  ~Worker() {
    for (int fd : {ep_, timer_fd_, wake_fd_}) {
      if (fd >= 0) close(fd);
    }
  }

  bool Init(std::string* error);
  void Loop();
  void RequestStop() {
    stop_.store(true);
    Wake();
  }
  // From any thread: the admission queue handed a slot to one of our queued requests.
  void Deliver(const Ticket& t) {
    {
      std::lock_guard lock(inbox_mu_);
      inbox_.push_back(t);
    }
    Wake();
  }

 private:
  struct Timer {
    int64_t deadline;
    int fd;
    uint64_t gen;
    uint64_t seq;
    bool operator>(const Timer& o) const { return deadline > o.deadline; }
  };

  void Wake() {
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof one);
    (void)r;  // a full eventfd counter already guarantees a wakeup
  }

  void AcceptAll(int lfd);
  void OnConnEvent(int fd, uint32_t events);
  void DrainInbox();
  void RunTimers();
  void ArmTimer();
  void Schedule(Conn& c, int64_t deadline);
  Conn* Find(int fd, uint64_t gen) {
    if (fd < 0 || static_cast<size_t>(fd) >= conns_.size()) return nullptr;
    Conn* c = conns_[fd].get();
    return c && c->gen == gen ? c : nullptr;
  }

  void ReadInput(Conn& c);
  void ProcessInput(Conn& c);
  void Dispatch(Conn& c, HttpRequest& req);
  void SendSimple(Conn& c, int status, std::string_view content_type, std::string_view body);
  void SendMetrics(Conn& c);
  void StartJob(Conn& c, Plan plan);
  void Admitted(Conn& c);
  void Tick(Conn& c);
  void FinishJob(Conn& c, const char* reason);
  void ReleaseJob(Conn& c);
  void EndResponse(Conn& c);
  void Send(Conn& c, std::string_view data);
  void WriteChunk(Conn& c, std::string_view payload);
  void Flush(Conn& c);
  void UpdateMask(Conn& c);
  void StartClose(Conn& c);
  void Abort(Conn& c);  // RST
  void Kill(Conn& c);   // plain close, job cancelled
  void AfterEvent(Conn& c);
  const std::string& Date();
  std::string StreamHead(const Conn& c);

  Server* server_;
  const SimConfig& cfg_;
  std::mt19937_64 rng_;
  int ep_ = -1;
  int timer_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex inbox_mu_;
  std::vector<Ticket> inbox_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  int64_t armed_ = 0;
  uint64_t next_gen_ = 1;
  std::time_t date_sec_ = 0;
  std::string date_;
};

bool Worker::Init(std::string* error) {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep_ < 0 || timer_fd_ < 0 || wake_fd_ < 0) {
    *error = std::string("epoll/timerfd/eventfd: ") + std::strerror(errno);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagTimer;
  epoll_ctl(ep_, EPOLL_CTL_ADD, timer_fd_, &ev);
  ev.data.u64 = kTagWake;
  epoll_ctl(ep_, EPOLL_CTL_ADD, wake_fd_, &ev);
  const auto& lfds = server_->listen_fds();
  for (size_t i = 0; i < lfds.size(); ++i) {
    // EPOLLEXCLUSIVE: one worker wakes per new connection instead of all of them.
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = kTagListen | i;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, lfds[i], &ev) != 0) {
      *error = std::string("epoll_ctl(listen): ") + std::strerror(errno);
      return false;
    }
  }
  return true;
}

void Worker::Loop() {
  epoll_event evs[256];
  while (!stop_.load()) {
    int n = epoll_wait(ep_, evs, 256, -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      uint64_t tag = evs[i].data.u64;
      if (tag == kTagTimer) {
        uint64_t expirations;
        ssize_t r = read(timer_fd_, &expirations, sizeof expirations);
        (void)r;  // EAGAIN only if already drained: either way the timer has fired
        armed_ = 0;
      } else if (tag == kTagWake) {
        uint64_t v;
        ssize_t r = read(wake_fd_, &v, sizeof v);
        (void)r;  // EAGAIN: already drained; the inbox is drained regardless
        DrainInbox();
      } else if ((tag & ~0xffffffffULL) == kTagListen) {
        AcceptAll(server_->listen_fds()[tag & 0xffffffffULL]);
      } else {
        OnConnEvent(static_cast<int>(tag), evs[i].events);
      }
    }
    RunTimers();
    ArmTimer();
  }
  for (auto& c : conns_) {
    if (c) Kill(*c);
  }
}

void Worker::AcceptAll(int lfd) {
  for (int i = 0; i < 64; ++i) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN (another worker took it) or a transient error
    int one = 1;
    // asyncio (uvicorn) sets TCP_NODELAY too; without it per-token writes would be coalesced.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(static_cast<size_t>(fd) + 64);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->gen = next_gen_++;
    conns_[fd] = std::move(c);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = static_cast<uint64_t>(fd);
    conns_[fd]->epoll_mask = ev.events;
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void Worker::OnConnEvent(int fd, uint32_t events) {
  if (fd < 0 || static_cast<size_t>(fd) >= conns_.size() || !conns_[fd]) return;
  Conn& c = *conns_[fd];
  if (events & (EPOLLHUP | EPOLLERR)) {
    // Reported even when we stopped reading (input cap): the connection is gone either way.
    c.peer_eof = true;
    if (c.busy || c.phase == Conn::Phase::kDraining) c.broken = true;
  }
  if (events & EPOLLOUT) Flush(c);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ReadInput(c);
  AfterEvent(c);
}

// Kills a connection whose write failed, and runs pipelined requests after a finished response.
void Worker::AfterEvent(Conn& c) {
  if (c.broken) {
    Kill(c);
    return;
  }
  if (c.phase == Conn::Phase::kDraining) return;
  if (!c.busy) ProcessInput(c);
  if (c.broken) {
    Kill(c);
    return;
  }
  if (!c.busy && c.peer_eof && c.phase != Conn::Phase::kDraining) Kill(c);
}

void Worker::ReadInput(Conn& c) {
  char buf[16384];
  for (;;) {
    if (c.phase != Conn::Phase::kDraining && c.in.size() >= kMaxBufferedInput) break;
    ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      // A draining connection only waits for EOF; whatever still arrives is dropped.
      if (c.phase != Conn::Phase::kDraining) c.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      c.peer_eof = true;
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN) {
      c.peer_eof = true;
      c.broken = c.busy;
    }
    break;
  }
  if (c.peer_eof) {
    if (c.phase == Conn::Phase::kDraining) {
      c.broken = true;  // AfterEvent closes it; never free the connection under our caller
      return;
    }
    // Client disconnect mid-response: like vLLM, the request is aborted.
    if (c.busy) c.broken = true;
  }
  UpdateMask(c);
}

void Worker::UpdateMask(Conn& c) {
  if (c.broken) return;
  uint32_t mask = 0;
  bool draining = c.phase == Conn::Phase::kDraining;
  // Stop reading (level-triggered!) once enough pipelined input is buffered or the peer is done;
  // RDHUP goes with IN, or a half-closed peer would wake us in a loop.
  if (!c.peer_eof && (draining || c.in.size() < kMaxBufferedInput)) mask |= EPOLLIN | EPOLLRDHUP;
  if (c.out.size() > c.out_off) mask |= EPOLLOUT;
  if (mask == c.epoll_mask) return;
  c.epoll_mask = mask;
  epoll_event ev{};
  ev.events = mask;
  ev.data.u64 = static_cast<uint64_t>(c.fd);
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Worker::ProcessInput(Conn& c) {
  while (!c.busy && !c.broken && c.phase != Conn::Phase::kDraining && !c.in.empty()) {
    ParseState s = c.parser.Parse(c.in);
    if (s == ParseState::kNeedMoreData) break;
    if (s == ParseState::kHeadDone) {
      // The client waits for this before it sends the body.
      if (c.parser.request().expect_continue && !c.continue_sent) {
        c.continue_sent = true;
        Send(c, "HTTP/1.1 100 Continue\r\n\r\n");
      }
      break;
    }
    if (s == ParseState::kInvalid) {
      int status = c.parser.error_status();
      c.close_after = true;
      c.in.clear();
      SendSimple(c, status, "application/json",
                 "{\"detail\":\"" + std::string(ReasonPhrase(status)) + "\"}");
      break;
    }
    HttpRequest req = std::move(c.parser.request());
    c.in.erase(0, c.parser.consumed());
    c.parser.Reset();
    c.continue_sent = false;
    if (!req.keep_alive) c.close_after = true;
    Dispatch(c, req);
    if (c.close_after && !c.busy) break;
  }
  UpdateMask(c);
}

const std::string& Worker::Date() {
  std::time_t now = std::time(nullptr);
  if (now != date_sec_) {
    date_sec_ = now;
    date_ = HttpDate(now);
  }
  return date_;
}

void Worker::SendSimple(Conn& c, int status, std::string_view content_type, std::string_view body) {
  HeadOptions o;
  o.status = status;
  o.content_type = content_type;
  o.content_length = body.size();
  o.close = c.close_after;
  std::string msg = ResponseHead(cfg_.engine, o, Date());
  msg.append(body);
  Send(c, msg);  // head and body in one write, as uvicorn does for small bodies
  EndResponse(c);
}

void Worker::EndResponse(Conn& c) {
  c.busy = false;
  c.phase = Conn::Phase::kIdle;
  if (c.close_after) StartClose(c);
}

void Worker::Dispatch(Conn& c, HttpRequest& req) {
  std::string_view path = req.Path();
  std::string_view m = req.method;
  auto route = [&](std::string_view want) {
    if (m == want) return true;
    SendSimple(c, 405, "application/json", "{\"detail\":\"Method Not Allowed\"}");
    return false;
  };
  Endpoint ep;
  if (path == "/v1/chat/completions") {
    ep = Endpoint::kChat;
  } else if (path == "/v1/completions") {
    ep = Endpoint::kCompletions;
  } else if (path == "/v1/embeddings") {
    ep = Endpoint::kEmbeddings;
  } else if (path == "/v1/responses") {
    ep = Endpoint::kResponses;
  } else if (path == "/health") {
    if (!route("GET")) return;
    if (cfg_.engine == Engine::kLlamaCpp) {
      SendSimple(c, 200, JsonContentType(cfg_.engine), "{\"status\":\"ok\"}");
    } else {
      SendSimple(c, 200, cfg_.engine == Engine::kTgi ? "text/plain; charset=utf-8" : "", "");
    }
    return;
  } else if (path == "/metrics") {
    if (!route("GET")) return;
    SendMetrics(c);
    return;
  } else if (path == "/v1/models") {
    if (!route("GET")) return;
    std::string data;
    std::string created = std::to_string(std::time(nullptr));
    for (size_t i = 0; i < cfg_.models.size(); ++i) {
      const std::string& id = cfg_.models[i];
      if (i) data += ",";
      // Extra --model names appear as LoRA adapters of the base model (fixture
      // vllm_models_with_lora.json).
      data += "{\"id\":" + JsonQuote(id) + ",\"object\":\"model\",\"created\":" + created +
              ",\"owned_by\":\"" + std::string(EngineName(cfg_.engine)) +
              "\",\"root\":" + JsonQuote(i == 0 ? id : "/adapters/" + id) +
              ",\"parent\":" + (i == 0 ? "null" : JsonQuote(cfg_.models[0])) +
              ",\"max_model_len\":" + (i == 0 ? std::to_string(cfg_.max_model_len) : "null") +
              ",\"permission\":[{\"id\":\"modelperm-" + std::to_string(1000 + i) +
              "\",\"object\":\"model_permission\",\"created\":" + created +
              ",\"allow_create_engine\":false,\"allow_sampling\":true,\"allow_logprobs\":true,"
              "\"allow_search_indices\":false,\"allow_view\":true,\"allow_fine_tuning\":false,"
              "\"organization\":\"*\",\"group\":null,\"is_blocking\":false}]}";
    }
    SendSimple(c, 200, JsonContentType(cfg_.engine),
               "{\"object\":\"list\",\"data\":[" + data + "]}");
    return;
  } else if (path == "/sim/metrics-mode") {
    if (!route("POST")) return;
    std::string_view b = req.body;
    while (!b.empty() && (b.back() == '\n' || b.back() == '\r' || b.back() == ' '))
      b.remove_suffix(1);
    static constexpr std::pair<std::string_view, MetricsMode> kModes[] = {
        {"ok", MetricsMode::kOk},
        {"garbage", MetricsMode::kGarbage},
        {"slow", MetricsMode::kSlow},
        {"down", MetricsMode::kDown}};
    for (const auto& [name, mode] : kModes) {
      if (b == name) {
        server_->set_metrics_mode(mode);
        SendSimple(c, 200, "text/plain; charset=utf-8", "ok\n");
        return;
      }
    }
    SendSimple(c, 400, "text/plain; charset=utf-8", "expected ok|garbage|slow|down\n");
    return;
  } else {
    SendSimple(c, 404, "application/json", "{\"detail\":\"Not Found\"}");
    return;
  }
  if (!route("POST")) return;
  Plan plan = MakePlan(req, ep, cfg_, server_->NextSeq(), rng_, std::time(nullptr));
  if (plan.error.status != 0) {
    server_->stats().finished_error.fetch_add(1, std::memory_order_relaxed);
    SendSimple(c, plan.error.status, JsonContentType(cfg_.engine), plan.error.body);
    return;
  }
  StartJob(c, std::move(plan));
}

void Worker::SendMetrics(Conn& c) {
  switch (server_->metrics_mode()) {
    case MetricsMode::kOk:
      SendSimple(c, 200, MetricsContentType(cfg_.engine),
                 RenderMetrics(cfg_, server_->admission(), server_->stats()));
      return;
    case MetricsMode::kGarbage:
      SendSimple(c, 200, MetricsContentType(cfg_.engine), kGarbageMetrics);
      return;
    case MetricsMode::kDown:
      // Looks like a crashed exporter: the connection is reset without a response.
      Abort(c);
      return;
    case MetricsMode::kSlow:
      c.busy = true;
      c.phase = Conn::Phase::kDelayedMetrics;
      Schedule(c, MonoNs() + static_cast<int64_t>(cfg_.metrics_delay_ms * 1e6));
      return;
  }
}

std::string Worker::StreamHead(const Conn& c) {
  HeadOptions o;
  o.status = 200;
  o.content_type = SseContentType(cfg_.engine);
  o.chunked = true;
  o.close = c.close_after;
  return ResponseHead(cfg_.engine, o, Date());
}

void Worker::StartJob(Conn& c, Plan plan) {
  c.busy = true;
  c.plan = std::move(plan);
  c.emitted = 0;
  c.head_sent = false;
  c.job++;
  const Job& job = c.plan.job;
  if (job.stream && cfg_.engine != Engine::kSglang) {
    // vLLM sends the head before prefill (docs/wire-formats.md); SGLang only with the first chunk.
    Send(c, StreamHead(c));
    c.head_sent = true;
    for (const auto& w : StreamOpenWrites(job)) WriteChunk(c, w);
  }
  c.phase = Conn::Phase::kQueued;
  if (server_->admission().TryAdmit(Ticket{this, c.fd, c.gen, c.job})) Admitted(c);
}

void Worker::Admitted(Conn& c) {
  c.holds_slot = true;
  c.phase = Conn::Phase::kPrefill;
  c.kv_held = c.plan.job.prompt_tokens;
  Stats& st = server_->stats();
  st.kv_tokens.fetch_add(c.kv_held, std::memory_order_relaxed);
  st.prompt_tokens_total.fetch_add(c.plan.job.prompt_tokens, std::memory_order_relaxed);
  Schedule(c, MonoNs() + c.plan.ttft_ns);
}

void Worker::DrainInbox() {
  std::vector<Ticket> tickets;
  {
    std::lock_guard lock(inbox_mu_);
    tickets.swap(inbox_);
  }
  for (const Ticket& t : tickets) {
    Conn* c = Find(t.fd, t.gen);
    if (c && c->job == t.job && c->phase == Conn::Phase::kQueued) {
      Admitted(*c);
      AfterEvent(*c);
    } else {
      // The request went away after its slot was handed over: pass the slot on.
      server_->admission().Release();
    }
  }
}

void Worker::Schedule(Conn& c, int64_t deadline) {
  timers_.push(Timer{deadline, c.fd, c.gen, ++c.timer_seq});
}

void Worker::RunTimers() {
  int64_t now = MonoNs();
  for (int budget = kTimerBudget; budget > 0 && !timers_.empty(); --budget) {
    Timer t = timers_.top();
    if (t.deadline > now) break;
    timers_.pop();
    Conn* c = Find(t.fd, t.gen);
    if (!c || c->timer_seq != t.seq) continue;  // cancelled or superseded
    if (c->phase == Conn::Phase::kDelayedMetrics) {
      SendSimple(*c, 200, MetricsContentType(cfg_.engine),
                 RenderMetrics(cfg_, server_->admission(), server_->stats()));
    } else if (c->phase == Conn::Phase::kDraining) {
      Kill(*c);
      continue;
    } else if (c->phase == Conn::Phase::kPrefill || c->phase == Conn::Phase::kDecode) {
      Tick(*c);
    }
    if (conns_[t.fd].get() == c) AfterEvent(*c);
    now = MonoNs();
  }
}

void Worker::ArmTimer() {
  int64_t want = timers_.empty() ? 0 : timers_.top().deadline;
  if (want == armed_) return;
  armed_ = want;
  itimerspec its{};
  if (want > 0) {
    its.it_value.tv_sec = want / 1'000'000'000;
    its.it_value.tv_nsec = want % 1'000'000'000;
  }
  // Absolute deadline; one already in the past fires at once, which is what we want.
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void Worker::Tick(Conn& c) {
  const Job& job = c.plan.job;
  Stats& st = server_->stats();
  const int n = job.completion_tokens;
  if (c.emitted == 0 && c.plan.abort_after == 0) return Abort(c);
  if (c.emitted == 0 && c.plan.midstream_error_after == 0 && n > 0) {
    if (!job.stream) {
      ErrorResponse e = ErrorBody(cfg_.engine, 500, job.legacy, job.model, 0, 0, 0);
      FinishJob(c, "error");
      return SendSimple(c, 500, JsonContentType(cfg_.engine), e.body);
    }
    for (const auto& w : MidstreamErrorWrites(job, 0)) WriteChunk(c, w);
    Send(c, "0\r\n\r\n");
    FinishJob(c, "error");
    return EndResponse(c);
  }
  if (n > 0) {
    BurnCpu(cfg_.cpu_per_token_ns);
    if (job.stream) {
      auto writes = c.emitted == 0 ? FirstTokenWrites(job) : TokenWrites(job, c.emitted);
      for (const auto& w : writes) WriteChunk(c, w);
    }
    c.emitted++;
    c.kv_held++;
    st.kv_tokens.fetch_add(1, std::memory_order_relaxed);
    st.generation_tokens_total.fetch_add(1, std::memory_order_relaxed);
  } else if (job.stream) {
    for (const auto& w : FirstTokenWrites(job)) WriteChunk(c, w);
  }
  c.phase = Conn::Phase::kDecode;
  if (c.plan.abort_after == c.emitted) return Abort(c);
  if (c.plan.midstream_error_after == c.emitted && c.emitted < n) {
    if (!job.stream) {
      ErrorResponse e = ErrorBody(cfg_.engine, 500, job.legacy, job.model, 0, 0, 0);
      FinishJob(c, "error");
      return SendSimple(c, 500, JsonContentType(cfg_.engine), e.body);
    }
    for (const auto& w : MidstreamErrorWrites(job, c.emitted)) WriteChunk(c, w);
    Send(c, "0\r\n\r\n");
    FinishJob(c, "error");
    return EndResponse(c);
  }
  if (c.emitted < n) return Schedule(c, MonoNs() + c.plan.itl_ns);

  if (job.stream) {
    for (const auto& w : FinishWrites(job)) WriteChunk(c, w);
    Send(c, "0\r\n\r\n");  // the terminal chunk gets its own write, as uvicorn does
    FinishJob(c, job.finish_reason.c_str());
    return EndResponse(c);
  }
  FinishJob(c, job.finish_reason.c_str());
  SendSimple(c, 200, JsonContentType(cfg_.engine), NonStreamBody(job));
}

void Worker::FinishJob(Conn& c, const char* reason) {
  Stats& st = server_->stats();
  std::string_view r = reason;
  auto& counter = r == "stop"     ? st.finished_stop
                  : r == "length" ? st.finished_length
                  : r == "abort"  ? st.finished_abort
                                  : st.finished_error;
  counter.fetch_add(1, std::memory_order_relaxed);
  ReleaseJob(c);
}

// Gives back the slot and the KV tokens of the connection's job, whatever state it is in.
void Worker::ReleaseJob(Conn& c) {
  if (c.phase == Conn::Phase::kQueued) {
    // If the ticket was already handed over, DrainInbox will find it stale and pass it on.
    server_->admission().CancelWaiting(Ticket{this, c.fd, c.gen, c.job});
  }
  if (c.holds_slot) {
    c.holds_slot = false;
    server_->stats().kv_tokens.fetch_sub(c.kv_held, std::memory_order_relaxed);
    c.kv_held = 0;
    server_->admission().Release();
  }
  c.timer_seq++;  // cancels a pending token timer
  c.phase = Conn::Phase::kIdle;
}

void Worker::WriteChunk(Conn& c, std::string_view payload) {
  if (!c.head_sent) {
    // SGLang: the head leaves together with the first chunk.
    c.head_sent = true;
    Send(c, StreamHead(c) + Chunk(payload));
    return;
  }
  Send(c, Chunk(payload));
}

void Worker::Send(Conn& c, std::string_view data) {
  if (c.broken || data.empty()) return;
  if (c.out.size() > c.out_off) {
    // Earlier bytes are still queued: keep order; they leave together when writable.
    if (c.out.size() - c.out_off + data.size() > kMaxPendingOutput) {
      c.broken = true;
      return;
    }
    c.out.append(data);
    return;
  }
  ssize_t n = send(c.fd, data.data(), data.size(), MSG_NOSIGNAL);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c.broken = true;
      return;
    }
    n = 0;
  }
  if (static_cast<size_t>(n) < data.size()) {
    c.out.assign(data.substr(static_cast<size_t>(n)));
    c.out_off = 0;
    UpdateMask(c);
  }
}

void Worker::Flush(Conn& c) {
  while (c.out.size() > c.out_off) {
    ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) c.broken = true;
      break;
    }
    c.out_off += static_cast<size_t>(n);
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
    if (c.phase == Conn::Phase::kDraining) shutdown(c.fd, SHUT_WR);
  }
  UpdateMask(c);
}

// Graceful close: send FIN after the pending output, then wait for the peer's FIN (or a timeout)
// before close(), so unread request bytes do not turn into a RST that could destroy the response.
void Worker::StartClose(Conn& c) {
  c.phase = Conn::Phase::kDraining;
  if (c.out.size() == c.out_off) {
    shutdown(c.fd, SHUT_WR);
    if (c.peer_eof) {
      c.broken = true;  // nothing left to send or to wait for: close now
      return;
    }
  }
  Schedule(c, MonoNs() + kDrainTimeoutNs);
  UpdateMask(c);
}

void Worker::Abort(Conn& c) {
  // SO_LINGER with a zero timeout makes close() send RST and drop unsent data: the abrupt end
  // a crashed or killed server produces.
  linger lg{1, 0};
  setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  if (c.busy && c.phase != Conn::Phase::kIdle) FinishJob(c, "abort");
  c.broken = true;
}

void Worker::Kill(Conn& c) {
  if (c.phase == Conn::Phase::kQueued || c.holds_slot) FinishJob(c, "abort");
  int fd = c.fd;
  epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  conns_[fd].reset();
}

Server::Server(SimConfig cfg)
    : cfg_(std::move(cfg)),
      admission_(cfg_.max_running, [](const Ticket& t) { t.worker->Deliver(t); }),
      metrics_mode_(cfg_.metrics_mode) {}

Server::~Server() {
  Stop();
  for (int fd : listen_fds_) close(fd);
}

bool ParseHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    *host = s.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string::npos) return false;
    *host = s.substr(0, colon);
  }
  std::string p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *port = std::stoi(p);
  return *port <= 65535 && !host->empty();
}

bool Server::Bind(std::string* error) {
  for (const std::string& addr : cfg_.listen) {
    std::string host;
    int port = 0;
    if (!ParseHostPort(addr, &host, &port)) {
      *error = "bad --listen address '" + addr + "' (want HOST:PORT or [V6]:PORT)";
      return false;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string port_str = std::to_string(port);
    if (int rc = getaddrinfo(host.c_str(), port_str.c_str(), &hints, &res); rc != 0) {
      *error = "cannot resolve '" + host + "': " + gai_strerror(rc);
      return false;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
      *error = "cannot listen on " + addr + ": " + std::strerror(errno);
      if (fd >= 0) close(fd);
      freeaddrinfo(res);
      return false;
    }
    freeaddrinfo(res);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    char ip[INET6_ADDRSTRLEN] = {};
    int bound_port = 0;
    if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      bound_port = ntohs(a->sin6_port);
      bound_.push_back("[" + std::string(ip) + "]:" + std::to_string(bound_port));
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
      bound_port = ntohs(a->sin_port);
      bound_.push_back(std::string(ip) + ":" + std::to_string(bound_port));
    }
    listen_fds_.push_back(fd);
  }
  return true;
}

void Server::Start() {
  int n = cfg_.threads < 1 ? 1 : cfg_.threads;
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(this, i);
    std::string err;
    if (!w->Init(&err)) {
      std::fprintf(stderr, "infertap-sim: worker %d: %s\n", i, err.c_str());
      continue;
    }
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) threads_.emplace_back([wp = w.get()] { wp->Loop(); });
}

void Server::Stop() {
  for (auto& w : workers_) w->RequestStop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  workers_.clear();
}

}  // namespace infertap::sim
