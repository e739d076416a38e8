#include "agent/serve/http_server.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "agent/serve/listener.hpp"
#include "agent/serve/tls.hpp"
#include "agent/serve/transport.hpp"
#include "agent/serve/worker_pool.hpp"

namespace infertap::serve {
namespace {

// epoll user data: small fixed tags for the listener and the wake eventfd, connection ids above.
constexpr uint64_t kWakeTag = 1;
constexpr uint64_t kListenTag = 2;
constexpr uint64_t kFirstConnId = 16;

}  // namespace

// The event loop: owns the listener and every connection; workers and stream producers reach it
// only through the wake eventfd and two queues.
struct HttpServer::Impl final : ConnectionHost {
  struct Done {
    uint64_t conn_id;
    HttpResponse resp;
  };

  Impl(const HttpServerOptions& o, const Routes& r) : opt(o), limits(o), routes(r) {}

  ~Impl() override {
    if (wakefd >= 0) close(wakefd);
    if (epfd >= 0) close(epfd);
  }

  const HttpServerOptions& opt;
  const ConnectionLimits limits;
  const Routes& routes;
  std::unique_ptr<TlsContext> tls;
  std::unique_ptr<Listener> listener;
  int epfd = -1;
  int wakefd = -1;
  Clock::time_point listen_paused_until{};
  bool listen_paused = false;
  std::unordered_map<uint64_t, std::unique_ptr<HttpConnection>> conns;
  uint64_t next_id = kFirstConnId;
  std::atomic<bool> stopping_{false};
  std::thread loop_thread;
  std::unique_ptr<WorkerPool> workers;

  // Loop ← any thread: stream wakes and finished handlers.
  std::mutex wake_mu;
  std::vector<uint64_t> woken;
  std::deque<Done> done;

  ConnectionCounters counters;
  std::atomic<uint64_t> s_accepted{0}, s_rejected{0}, s_timeouts{0}, s_conns{0};

  void Signal() {
    uint64_t one = 1;
    // A full eventfd counter (never in practice) still leaves it readable, so ignoring EAGAIN
    // cannot lose a wake.
    [[maybe_unused]] ssize_t n = write(wakefd, &one, sizeof(one));
  }

  // ConnectionHost
  bool SubmitHandler(uint64_t conn_id, const Handler* handler, RequestHead req) override {
    return workers->TrySubmit([this, conn_id, handler, req = std::move(req)] {
      HttpResponse resp = RunHandler(*handler, req);
      {
        std::lock_guard lock(wake_mu);
        done.push_back(Done{conn_id, std::move(resp)});
      }
      Signal();
    });
  }
  void WakeStream(uint64_t conn_id) override {
    {
      std::lock_guard lock(wake_mu);
      woken.push_back(conn_id);
    }
    Signal();
  }
  bool stopping() const override { return stopping_.load(); }

  // ---------------------------------------------------------------- setup

  Status Init(uint16_t* port) {
    if (!opt.tls_cert_file.empty() || !opt.tls_key_file.empty()) {
      if (Status s = TlsContext::Load(opt.tls_cert_file, opt.tls_key_file, &tls); !s.ok()) {
        return s;
      }
    }
    if (Status s = Listener::Open(opt.addr, &listener); !s.ok()) return s;
    *port = listener->port();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || wakefd < 0) {
      return Status::Error("cannot create event loop: " + std::string(std::strerror(errno)));
    }
    if (!Watch(wakefd, kWakeTag, EPOLLIN, EPOLL_CTL_ADD) ||
        !Watch(listener->fd(), kListenTag, EPOLLIN, EPOLL_CTL_ADD)) {
      return Status::Error("cannot create event loop: " + std::string(std::strerror(errno)));
    }
    return Status::Ok();
  }

  [[nodiscard]] bool Watch(int fd, uint64_t tag, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    return epoll_ctl(epfd, op, fd, &ev) == 0;
  }

  void StartThreads() {
    workers = std::make_unique<WorkerPool>(opt.worker_threads, opt.max_pending_handlers);
    loop_thread = std::thread([this] { LoopMain(); });
  }

  void StopThreads() {
    stopping_ = true;
    if (loop_thread.joinable()) {
      Signal();
      loop_thread.join();
    }
    if (workers) workers->Stop();
    std::lock_guard lock(wake_mu);
    done.clear();
  }

  // ---------------------------------------------------------------- loop

  void LoopMain() {
    BlockProcessSignalsInThisThread();
    auto tick = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(250),
                                                    opt.heartbeat_interval / 2);
    int tick_ms = std::max<int>(10, static_cast<int>(tick.count()));
    epoll_event evs[64];
    while (!stopping_.load()) {
      int n = epoll_wait(epfd, evs, 64, tick_ms);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n && !stopping_.load(); ++i) {
        uint64_t tag = evs[i].data.u64;
        if (tag == kWakeTag) {
          uint64_t v;
          [[maybe_unused]] ssize_t r = read(wakefd, &v, sizeof(v));  // EAGAIN: already drained
          ProcessWakes();
        } else if (tag == kListenTag) {
          AcceptAll();
        } else {
          OnIo(tag, evs[i].events);
        }
      }
      Sweep(Clock::now());
    }
    while (!conns.empty()) CloseConn(conns.begin()->first);
  }

  void AcceptAll() {
    for (;;) {
      int fd = -1;
      Listener::Accepted a = listener->Accept(&fd);
      if (a == Listener::Accepted::kOutOfFds) {
        // The pending connection stays in the backlog and the level-triggered listener would
        // spin; stop watching it for a moment instead.
        PauseListener();
        return;
      }
      if (a == Listener::Accepted::kNone) return;
      s_accepted++;
      if (conns.size() >= opt.max_connections) {
        s_rejected++;
        if (!tls) {
          static constexpr char k503[] =
              "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
              "too many connections\r\n";
          // Best effort: the connection is closed either way.
          [[maybe_unused]] ssize_t w = send(fd, k503, sizeof(k503) - 1, MSG_NOSIGNAL);
        }
        close(fd);
        continue;
      }
      std::unique_ptr<Transport> t =
          tls ? MakeTlsServerTransport(*tls, fd) : MakePlainTransport(fd);
      if (!t) continue;  // OpenSSL could not make a session; the fd is closed
      uint64_t id = next_id++;
      auto conn = std::make_unique<HttpConnection>(id, std::move(t), limits, routes, this,
                                                   &counters, Clock::now());
      HttpConnection* c = conn.get();
      conns.emplace(id, std::move(conn));
      s_conns = conns.size();
      if (!Watch(c->fd(), id, EPOLLIN, EPOLL_CTL_ADD)) {
        CloseConn(id);
        continue;
      }
      watched_[id] = EPOLLIN;
      // Data may already be there (client sent with the SYN's ACK); try now.
      Drive(id, [&](HttpConnection& hc) { hc.Progress(Clock::now()); });
    }
  }

  void PauseListener() {
    if (listen_paused) return;
    listen_paused = true;
    listen_paused_until = Clock::now() + std::chrono::milliseconds(100);
    epoll_ctl(epfd, EPOLL_CTL_DEL, listener->fd(), nullptr);
  }

  void ResumeListener() {
    listen_paused = false;
    // Fails only with the loop's own fds gone; the next pause/resume would retry.
    (void)Watch(listener->fd(), kListenTag, EPOLLIN, EPOLL_CTL_ADD);
  }

  void CloseConn(uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, it->second->fd(), nullptr);
    watched_.erase(id);
    conns.erase(it);  // closes the transport, destroys a stream source
    s_conns = conns.size();
  }

  // Runs `step` on connection `id`, then closes it or updates its epoll interest.
  template <typename F>
  void Drive(uint64_t id, F step) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    HttpConnection& c = *it->second;
    step(c);
    if (c.closed()) {
      CloseConn(id);
      return;
    }
    uint32_t want = c.interest();
    uint32_t& have = watched_[id];
    if (want == have) return;
    if (!Watch(c.fd(), id, want, EPOLL_CTL_MOD)) {
      CloseConn(id);
      return;
    }
    have = want;
  }
  std::unordered_map<uint64_t, uint32_t> watched_;  // current epoll interest per connection

  void OnIo(uint64_t id, uint32_t events) {
    if (events & EPOLLERR) {
      CloseConn(id);
      return;
    }
    Drive(id, [&](HttpConnection& c) { c.Progress(Clock::now()); });
    // EPOLLHUP: both directions are down; whatever Progress could do is done.
    if (events & EPOLLHUP) CloseConn(id);
  }

  void ProcessWakes() {
    std::vector<uint64_t> ids;
    std::deque<Done> finished;
    {
      std::lock_guard lock(wake_mu);
      ids.swap(woken);
      finished.swap(done);
    }
    for (Done& d : finished) {
      Drive(d.conn_id,
            [&](HttpConnection& c) { c.OnHandlerDone(std::move(d.resp), Clock::now()); });
    }
    for (uint64_t id : ids) {
      Drive(id, [&](HttpConnection& c) {
        if (c.state() == HttpConnection::State::kStreaming) c.Progress(Clock::now());
      });
    }
  }

  // Timeouts and heartbeats; runs after every epoll_wait (at least once per tick).
  void Sweep(Clock::time_point now) {
    if (listen_paused && now >= listen_paused_until) ResumeListener();
    std::vector<uint64_t> ids;
    ids.reserve(conns.size());
    for (const auto& [id, c] : conns) ids.push_back(id);
    for (uint64_t id : ids) {
      bool expired = false;
      Drive(id, [&](HttpConnection& c) { expired = !c.Tick(now); });
      if (expired) {
        s_timeouts++;
        CloseConn(id);
      }
    }
  }
};

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, Handler handler, bool may_block) {
  routes_[std::move(path)] = Route{std::move(handler), may_block};
}

Status HttpServer::Start() {
  if (impl_) return Status::Error("server on " + options_.addr + " was already started");
  auto impl = std::make_unique<Impl>(options_, routes_);
  uint16_t port = 0;
  if (Status s = impl->Init(&port); !s.ok()) return s;
  port_ = port;
  impl->StartThreads();
  impl_ = std::move(impl);
  return Status::Ok();
}

void HttpServer::Stop() {
  if (impl_) impl_->StopThreads();
}

HttpServerStats HttpServer::stats() const {
  HttpServerStats s;
  if (!impl_) return s;
  s.accepted = impl_->s_accepted;
  s.rejected_over_cap = impl_->s_rejected;
  s.requests = impl_->counters.requests;
  s.bad_requests = impl_->counters.bad_requests;
  s.timeouts = impl_->s_timeouts;
  s.tls_handshake_failures = impl_->counters.tls_handshake_failures;
  s.connections = impl_->s_conns;
  return s;
}

}  // namespace infertap::serve
