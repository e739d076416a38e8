#include "agent/serve/http_server.hpp"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "agent/serve/listen_addr.hpp"
#include "agent/serve/tls.hpp"

namespace infertap::serve {
namespace {

using Clock = std::chrono::steady_clock;

// epoll user data: small fixed tags for the listeners and the wake eventfd, connection ids above.
constexpr uint64_t kWakeTag = 1;
constexpr uint64_t kListenTagBase = 2;  // + listener index (at most 2)
constexpr uint64_t kFirstConnId = 16;

// Threads we start must not take the process's stop signals (the CLI's handler runs on the main
// thread) and must see EPIPE instead of dying of SIGPIPE: OpenSSL writes with write(2), which has
// no MSG_NOSIGNAL, and a synchronous SIGPIPE goes to the writing thread, where it stays blocked.
void BlockSignalsInThisThread() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::string ErrnoText(int err) { return std::strerror(err); }

std::string HexSize(size_t n) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), n, 16);
  (void)ec;
  return std::string(buf, p);
}

}  // namespace

struct HttpServer::Impl {
  enum class State { kHead, kWaitHandler, kWriting, kStreaming };
  enum class Io { kData, kAgain, kEof, kError };

  struct Conn {
    uint64_t id = 0;
    int fd = -1;
    SSL* ssl = nullptr;
    bool handshaking = false;
    bool tls_wants_write = false;  // last SSL call returned SSL_ERROR_WANT_WRITE
    State state = State::kHead;
    std::string in;
    std::string out;
    size_t out_off = 0;
    bool close_after_write = false;
    bool keep_alive = true;           // of the request being answered
    bool chunked = false;             // stream framing (HTTP/1.1)
    int minor_version = 1;            // of the request being answered
    Clock::time_point head_deadline;  // valid while head_started
    bool head_started = false;
    Clock::time_point idle_since;
    Clock::time_point last_write_progress;
    Clock::time_point last_stream_send;
    std::shared_ptr<StreamSource> stream;
    bool stream_more = false;  // the last pull stopped at the output cap
    std::shared_ptr<std::atomic<bool>> wake_pending;
    uint32_t events = 0;  // current epoll interest

    size_t pending() const { return out.size() - out_off; }
  };

  struct Job {
    uint64_t conn_id;
    RequestHead req;
    const Handler* handler;
  };
  struct Done {
    uint64_t conn_id;
    HttpResponse resp;
  };

  Impl(const HttpServerOptions& o,
       const std::map<std::string, std::pair<Handler, bool>, std::less<>>& r)
      : opt(o), routes(r) {}

  const HttpServerOptions& opt;
  const std::map<std::string, std::pair<Handler, bool>, std::less<>>& routes;
  std::unique_ptr<TlsContext> tls;
  int epfd = -1;
  int wakefd = -1;
  std::vector<int> listeners;
  Clock::time_point listen_paused_until{};
  bool listen_paused = false;
  std::unordered_map<uint64_t, Conn> conns;
  uint64_t next_id = kFirstConnId;
  std::atomic<bool> stopping{false};
  std::thread loop_thread;

  // Loop ← any thread: stream wakes and finished handlers.
  std::mutex wake_mu;
  std::vector<uint64_t> woken;
  std::deque<Done> done;

  // Loop → workers.
  std::mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::deque<Job> jobs;
  bool workers_stop = false;
  std::vector<std::thread> workers;

  std::atomic<uint64_t> s_accepted{0}, s_rejected{0}, s_requests{0}, s_bad{0}, s_timeouts{0},
      s_tls_fail{0}, s_conns{0};

  ~Impl() {
    for (int fd : listeners) close(fd);
    if (wakefd >= 0) close(wakefd);
    if (epfd >= 0) close(epfd);
  }

  void Signal() {
    uint64_t one = 1;
    // A full eventfd counter (never in practice) still leaves it readable, so ignoring EAGAIN
    // cannot lose a wake.
    [[maybe_unused]] ssize_t n = write(wakefd, &one, sizeof(one));
  }

  // ---------------------------------------------------------------- setup

  Status Listen(const std::string& text) {
    ListenAddr a;
    if (Status s = ParseListenAddr(text, &a); !s.ok()) return s;
    auto fail = [&](int err) {
      return Status::Error("cannot listen on " + text + ": " + ErrnoText(err));
    };
    auto open_one = [&](const sockaddr* sa, socklen_t len, bool dual) -> int {
      int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return -errno;
      int on = 1;
      // SO_REUSEADDR only skips TIME_WAIT leftovers after a restart; on Linux it does not let
      // two live listeners share a port (that would be SO_REUSEPORT), so "in use" still fails.
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
      if (sa->sa_family == AF_INET6) {
        int v6only = dual ? 0 : 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
      }
      if (bind(fd, sa, len) < 0 || listen(fd, 128) < 0) {
        int err = errno;
        close(fd);
        return -err;
      }
      return fd;
    };
    int fd;
    if (a.any) {
      sockaddr_in6 v6{};
      v6.sin6_family = AF_INET6;
      v6.sin6_addr = in6addr_any;
      v6.sin6_port = htons(a.port);
      fd = open_one(reinterpret_cast<sockaddr*>(&v6), sizeof(v6), true);
      // Hosts booted with ipv6.disable=1 have no AF_INET6 sockets: serve IPv4 only.
      if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
        sockaddr_in v4{};
        v4.sin_family = AF_INET;
        v4.sin_addr.s_addr = htonl(INADDR_ANY);
        v4.sin_port = htons(a.port);
        fd = open_one(reinterpret_cast<sockaddr*>(&v4), sizeof(v4), false);
      }
    } else {
      fd = open_one(reinterpret_cast<sockaddr*>(&a.addr), a.addr_len, false);
    }
    if (fd < 0) return fail(-fd);
    listeners.push_back(fd);
    return Status::Ok();
  }

  Status Init(uint16_t* port) {
    if (!opt.tls_cert_file.empty() || !opt.tls_key_file.empty()) {
      if (Status s = TlsContext::Load(opt.tls_cert_file, opt.tls_key_file, &tls); !s.ok()) {
        return s;
      }
    }
    if (Status s = Listen(opt.addr); !s.ok()) return s;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    getsockname(listeners[0], reinterpret_cast<sockaddr*>(&ss), &len);
    *port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || wakefd < 0)
      return Status::Error("cannot create event loop: " + ErrnoText(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
    for (size_t i = 0; i < listeners.size(); ++i) {
      ev.data.u64 = kListenTagBase + i;
      epoll_ctl(epfd, EPOLL_CTL_ADD, listeners[i], &ev);
    }
    return Status::Ok();
  }

  void StartThreads() {
    for (size_t i = 0; i < std::max<size_t>(1, opt.worker_threads); ++i) {
      workers.emplace_back([this] { WorkerMain(); });
    }
    loop_thread = std::thread([this] { LoopMain(); });
  }

  void StopThreads() {
    stopping = true;
    if (loop_thread.joinable()) {
      Signal();
      loop_thread.join();
    }
    {
      std::lock_guard lock(jobs_mu);
      workers_stop = true;
      jobs.clear();
    }
    jobs_cv.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    std::lock_guard lock(wake_mu);
    done.clear();
  }

  // ---------------------------------------------------------------- workers

  void WorkerMain() {
    BlockSignalsInThisThread();
    for (;;) {
      Job job;
      {
        std::unique_lock lock(jobs_mu);
        jobs_cv.wait(lock, [&] { return workers_stop || !jobs.empty(); });
        if (workers_stop) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      HttpResponse resp = RunHandler(*job.handler, job.req);
      {
        std::lock_guard lock(wake_mu);
        done.push_back(Done{job.conn_id, std::move(resp)});
      }
      Signal();
    }
  }

  static HttpResponse RunHandler(const Handler& h, const RequestHead& req) {
    // A throwing handler is a bug on our side; the client gets a 500, the server keeps going.
    try {
      return h(req);
    } catch (const std::exception& e) {
      return HttpResponse::Text(500, std::string("internal error: ") + e.what());
    } catch (...) {
      return HttpResponse::Text(500, "internal error");
    }
  }

  // ---------------------------------------------------------------- loop

  void LoopMain() {
    BlockSignalsInThisThread();
    auto tick = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(250),
                                                    opt.heartbeat_interval / 2);
    int tick_ms = std::max<int>(10, static_cast<int>(tick.count()));
    epoll_event evs[64];
    while (!stopping.load()) {
      int n = epoll_wait(epfd, evs, 64, tick_ms);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n && !stopping.load(); ++i) {
        uint64_t tag = evs[i].data.u64;
        if (tag == kWakeTag) {
          uint64_t v;
          [[maybe_unused]] ssize_t r = read(wakefd, &v, sizeof(v));
          ProcessWakes();
        } else if (tag >= kListenTagBase && tag < kFirstConnId) {
          AcceptAll(listeners[tag - kListenTagBase]);
        } else {
          auto it = conns.find(tag);
          if (it == conns.end()) continue;
          OnIo(it->second, evs[i].events);
        }
      }
      Sweep(Clock::now());
    }
    while (!conns.empty()) CloseConn(conns.begin()->second);
  }

  void AcceptAll(int lfd) {
    for (;;) {
      int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: the pending connection stays in the backlog and the level-
          // triggered listener would spin; stop watching it for a moment instead.
          PauseListeners();
        }
        return;
      }
      s_accepted++;
      if (conns.size() >= opt.max_connections) {
        s_rejected++;
        if (!tls) {
          static constexpr char k503[] =
              "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
              "too many connections\r\n";
          [[maybe_unused]] ssize_t w = send(fd, k503, sizeof(k503) - 1, MSG_NOSIGNAL);
        }
        close(fd);
        continue;
      }
      int on = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
      Conn& c = conns[next_id];
      c.id = next_id++;
      c.fd = fd;
      auto now = Clock::now();
      // The first request must arrive within head_timeout of the accept (a silent connection is
      // a slow-loris too); later keep-alive requests get idle_timeout to start.
      c.head_started = true;
      c.head_deadline = now + opt.head_timeout;
      c.idle_since = now;
      c.last_write_progress = now;
      if (tls) {
        c.ssl = SSL_new(tls->get());
        if (c.ssl == nullptr || SSL_set_fd(c.ssl, fd) != 1) {
          ERR_clear_error();
          CloseConn(c);
          continue;
        }
        SSL_set_accept_state(c.ssl);
        c.handshaking = true;
      }
      s_conns = conns.size();
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = c.id;
      c.events = EPOLLIN;
      epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
      // Data may already be there (client sent with the SYN's ACK); try now.
      Progress(c);
    }
  }

  void PauseListeners() {
    if (listen_paused) return;
    listen_paused = true;
    listen_paused_until = Clock::now() + std::chrono::milliseconds(100);
    for (int fd : listeners) epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
  }

  void ResumeListeners() {
    listen_paused = false;
    for (size_t i = 0; i < listeners.size(); ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenTagBase + i;
      epoll_ctl(epfd, EPOLL_CTL_ADD, listeners[i], &ev);
    }
  }

  void CloseConn(Conn& c) {
    if (c.ssl != nullptr) {
      // No close_notify: the peer may be gone, and a blocking-free shutdown would need another
      // round of events for no benefit to a GET endpoint.
      SSL_free(c.ssl);
      ERR_clear_error();
    }
    if (c.fd >= 0) {
      epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
    }
    // Destroying the source unsubscribes it from its producer; after that no wake can name it.
    c.stream.reset();
    head_only_of_.erase(c.id);
    conns.erase(c.id);
    s_conns = conns.size();
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
      auto it = conns.find(d.conn_id);
      if (it == conns.end() || it->second.state != State::kWaitHandler) continue;
      Respond(it->second, std::move(d.resp), head_only_of_[d.conn_id]);
      head_only_of_.erase(d.conn_id);
      if (conns.count(d.conn_id)) Progress(it->second);
    }
    for (uint64_t id : ids) {
      auto it = conns.find(id);
      if (it == conns.end() || it->second.state != State::kStreaming) continue;
      Progress(it->second);
    }
  }
  // HEAD-ness of requests waiting for a worker (kept here so Job/Done stay small).
  std::unordered_map<uint64_t, bool> head_only_of_;

  void OnIo(Conn& c, uint32_t events) {
    if (events & EPOLLERR) {
      CloseConn(c);
      return;
    }
    uint64_t id = c.id;
    Progress(c);
    // EPOLLHUP: both directions are down; whatever Progress could do is done.
    if ((events & EPOLLHUP) && conns.count(id)) CloseConn(conns.at(id));
  }

  // Non-blocking read of up to `max` bytes appended to *buf.
  Io ReadSome(Conn& c, std::string* buf, size_t max) {
    size_t old = buf->size();
    buf->resize(old + max);
    if (c.ssl != nullptr) {
      int n = SSL_read(c.ssl, buf->data() + old, static_cast<int>(max));
      if (n > 0) {
        buf->resize(old + n);
        return Io::kData;
      }
      buf->resize(old);
      int err = SSL_get_error(c.ssl, n);
      ERR_clear_error();
      if (err == SSL_ERROR_WANT_READ) return Io::kAgain;
      if (err == SSL_ERROR_WANT_WRITE) {
        c.tls_wants_write = true;
        return Io::kAgain;
      }
      return err == SSL_ERROR_ZERO_RETURN ? Io::kEof : Io::kError;
    }
    ssize_t n = recv(c.fd, buf->data() + old, max, 0);
    if (n > 0) {
      buf->resize(old + n);
      return Io::kData;
    }
    buf->resize(old);
    if (n == 0) return Io::kEof;
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? Io::kAgain : Io::kError;
  }

  // Writes what it can; false when the connection failed.
  bool Flush(Conn& c) {
    while (c.pending() > 0) {
      size_t len = std::min<size_t>(c.pending(), 1 << 20);
      const char* p = c.out.data() + c.out_off;
      ssize_t n;
      if (c.ssl != nullptr) {
        int r = SSL_write(c.ssl, p, static_cast<int>(len));
        if (r <= 0) {
          int err = SSL_get_error(c.ssl, r);
          ERR_clear_error();
          if (err == SSL_ERROR_WANT_WRITE) {
            c.tls_wants_write = true;
            return true;
          }
          if (err == SSL_ERROR_WANT_READ) return true;
          return false;
        }
        n = r;
      } else {
        n = send(c.fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
          return false;
        }
      }
      c.out_off += static_cast<size_t>(n);
      c.last_write_progress = Clock::now();
    }
    c.out.clear();
    c.out_off = 0;
    return true;
  }

  // Drives one connection as far as it can go without blocking, then sets its epoll interest.
  void Progress(Conn& c) {
    uint64_t id = c.id;
    c.tls_wants_write = false;
    if (c.handshaking) {
      int r = SSL_do_handshake(c.ssl);
      if (r != 1) {
        int err = SSL_get_error(c.ssl, r);
        ERR_clear_error();
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
          c.tls_wants_write = err == SSL_ERROR_WANT_WRITE;
          UpdateInterest(c);
          return;
        }
        s_tls_fail++;
        CloseConn(c);
        return;
      }
      c.handshaking = false;
    }
    for (int guard = 0; guard < 64; ++guard) {
      switch (c.state) {
        case State::kHead: {
          if (TryHead(c)) continue;  // dispatched or answered: go on with the new state
          if (!conns.count(id)) return;
          // Need more bytes: read, but never more than one head's worth beyond the parsed part.
          if (c.in.size() >= opt.max_head_bytes) {  // TryHead reports too-large before this
            CloseConn(c);
            return;
          }
          Io io = ReadSome(c, &c.in, std::min<size_t>(16384, opt.max_head_bytes + 1 - c.in.size()));
          if (io == Io::kData) {
            if (!c.head_started) {
              c.head_started = true;
              c.head_deadline = Clock::now() + opt.head_timeout;
            }
            continue;
          }
          if (io == Io::kAgain) break;
          CloseConn(c);  // EOF between requests is the normal end of a keep-alive connection
          return;
        }
        case State::kWaitHandler:
          break;
        case State::kWriting:
          if (!Flush(c)) {
            CloseConn(c);
            return;
          }
          if (c.pending() > 0) break;
          if (c.close_after_write) {
            CloseConn(c);
            return;
          }
          c.state = State::kHead;
          c.head_started = !c.in.empty();
          c.head_deadline = Clock::now() + opt.head_timeout;
          c.idle_since = Clock::now();
          continue;  // a pipelined request may be waiting in c.in
        case State::kStreaming: {
          // The client sends nothing during a stream; reading detects its close and keeps a
          // chatty one from filling the socket buffer. Discarded bytes are bounded per call.
          std::string sink;
          Io io = ReadSome(c, &sink, 4096);
          if (io == Io::kEof || io == Io::kError) {
            CloseConn(c);
            return;
          }
          FillStream(c);
          if (!Flush(c)) {
            CloseConn(c);
            return;
          }
          if (c.state == State::kWriting) continue;  // the stream ended
          // The socket took everything and the source had more than the cap: pull again.
          if (c.stream_more && c.pending() == 0) continue;
          if (io == Io::kData) continue;
          break;
        }
      }
      break;
    }
    if (conns.count(id)) UpdateInterest(c);
  }

  // Pulls from the stream while the output is below the cap. Sets c.stream_more when it stopped
  // at the cap: the source may hold more, and no wake will come for it (producers signal only
  // when they go from empty to non-empty), so UpdateInterest keeps EPOLLOUT on until it is pulled.
  void FillStream(Conn& c) {
    if (c.wake_pending) c.wake_pending->store(false);
    c.stream_more = false;
    while (true) {
      if (c.pending() >= opt.stream_output_cap) {
        c.stream_more = true;
        break;
      }
      std::string chunk;
      bool more = c.stream->Pull(&chunk, opt.stream_output_cap - c.pending());
      if (!chunk.empty()) AppendStreamBytes(c, chunk);
      if (!more) {
        if (c.chunked) c.out += "0\r\n\r\n";
        c.stream.reset();
        c.state = State::kWriting;
        // Without chunked framing (HTTP/1.0) only the close marks the end.
        c.close_after_write = c.close_after_write || !c.chunked;
        return;
      }
      if (chunk.empty()) break;
    }
  }

  void AppendStreamBytes(Conn& c, const std::string& bytes) {
    if (c.chunked) {
      c.out += HexSize(bytes.size());
      c.out += "\r\n";
      c.out += bytes;
      c.out += "\r\n";
    } else {
      c.out += bytes;
    }
    c.last_stream_send = Clock::now();
  }

  // Parses a head from c.in. true when the connection moved on (handler dispatched or response
  // queued); false when more bytes are needed (or the connection was closed).
  bool TryHead(Conn& c) {
    if (c.in.empty()) return false;
    RequestHead req;
    size_t consumed = 0;
    HeadParse r = ParseRequestHead(c.in, opt.max_head_bytes, &req, &consumed);
    if (r == HeadParse::kNeedMore) return false;
    c.head_started = false;
    s_requests++;
    if (r == HeadParse::kInvalid) return Reject(c, 400, "malformed request");
    if (r == HeadParse::kTooLarge) return Reject(c, 431, "request header too large");
    c.in.erase(0, consumed);
    if (req.minor_version == 1 && req.HeaderCount("Host") != 1) {
      return Reject(c, 400, "HTTP/1.1 request needs exactly one Host header");
    }
    // No endpoint takes a body; refusing them (and closing) means we never have to find where a
    // body ends, which is where request smuggling lives.
    if (req.Header("Transfer-Encoding") != nullptr)
      return Reject(c, 413, "request bodies are not accepted");
    if (const std::string* cl = req.Header("Content-Length")) {
      if (req.HeaderCount("Content-Length") != 1 ||
          cl->find_first_not_of("0123456789") != std::string::npos || cl->empty()) {
        return Reject(c, 400, "invalid Content-Length");
      }
      if (cl->find_first_not_of('0') != std::string::npos) {
        return Reject(c, 413, "request bodies are not accepted");
      }
    }
    c.keep_alive = req.KeepAlive() && !stopping.load();
    c.minor_version = req.minor_version;
    bool head_only = req.method == "HEAD";
    auto route = routes.find(req.path);
    if (route == routes.end()) {
      Respond(c, HttpResponse::Text(404, "not found"), head_only);
      return true;
    }
    if (req.method != "GET" && !head_only) {
      HttpResponse resp = HttpResponse::Text(405, "method not allowed");
      resp.headers.emplace_back("Allow", "GET, HEAD");
      Respond(c, std::move(resp), false);
      return true;
    }
    const auto& [handler, may_block] = route->second;
    if (!may_block) {
      Respond(c, RunHandler(handler, req), head_only);
      return true;
    }
    {
      std::lock_guard lock(jobs_mu);
      if (jobs.size() >= opt.max_pending_handlers) {
        c.keep_alive = false;
        Respond(c, HttpResponse::Text(503, "server busy"), head_only);
        return true;
      }
      jobs.push_back(Job{c.id, std::move(req), &handler});
    }
    jobs_cv.notify_one();
    head_only_of_[c.id] = head_only;
    c.state = State::kWaitHandler;
    return true;
  }

  bool Reject(Conn& c, int status, const char* why) {
    s_bad++;
    c.in.clear();
    c.keep_alive = false;
    Respond(c, HttpResponse::Text(status, why), false);
    return true;
  }

  void Respond(Conn& c, HttpResponse resp, bool head_only) {
    bool stream = resp.stream != nullptr && !head_only;
    // HTTP/1.0 clients get no chunked framing; their stream ends with the close.
    c.chunked = stream && c.minor_version >= 1;
    std::string& o = c.out;
    o += "HTTP/1.1 ";
    o += std::to_string(resp.status);
    o += ' ';
    o += ReasonPhrase(resp.status);
    o += "\r\n";
    if (!resp.content_type.empty()) {
      o += "Content-Type: ";
      o += resp.content_type;
      o += "\r\n";
    }
    for (const auto& [k, v] : resp.headers) {
      o += k;
      o += ": ";
      o += v;
      o += "\r\n";
    }
    if (resp.stream != nullptr) {
      if (c.chunked || head_only) o += "Transfer-Encoding: chunked\r\n";
    } else {
      o += "Content-Length: ";
      o += std::to_string(resp.body.size());
      o += "\r\n";
    }
    bool keep = c.keep_alive && (!stream || c.chunked);
    o += keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    c.close_after_write = !keep;
    if (!head_only && resp.stream == nullptr) o += resp.body;
    c.last_write_progress = Clock::now();
    if (stream) {
      c.stream = std::move(resp.stream);
      c.state = State::kStreaming;
      c.last_stream_send = Clock::now();
      auto pending = std::make_shared<std::atomic<bool>>(false);
      c.wake_pending = pending;
      uint64_t id = c.id;
      c.stream->Start([this, id, pending] {
        // Coalesce: one queued wake per burst of publishes, however many records arrive.
        if (pending->exchange(true)) return;
        {
          std::lock_guard lock(wake_mu);
          woken.push_back(id);
        }
        Signal();
      });
    } else {
      c.state = State::kWriting;
    }
  }

  void UpdateInterest(Conn& c) {
    uint32_t want = 0;
    if (c.handshaking) {
      want = EPOLLIN | (c.tls_wants_write ? uint32_t{EPOLLOUT} : 0u);
    } else {
      switch (c.state) {
        case State::kHead:
          want = EPOLLIN;
          break;
        case State::kWaitHandler:
          want = 0;
          break;
        case State::kWriting:
          want = c.pending() > 0 ? uint32_t{EPOLLOUT} : 0u;
          break;
        case State::kStreaming:
          want = EPOLLIN | (c.pending() > 0 || c.stream_more ? uint32_t{EPOLLOUT} : 0u);
          break;
      }
      if (c.tls_wants_write) want |= EPOLLOUT;
    }
    if (want == c.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.id;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = want;
  }

  // Timeouts and heartbeats; runs after every epoll_wait (at least once per tick).
  void Sweep(Clock::time_point now) {
    if (listen_paused && now >= listen_paused_until) ResumeListeners();
    std::vector<uint64_t> expired, beat;
    for (auto& [id, c] : conns) {
      bool writing =
          (c.state == State::kWriting || c.state == State::kStreaming) && c.pending() > 0;
      if (writing && now - c.last_write_progress > opt.write_timeout) {
        expired.push_back(id);
      } else if (c.state == State::kHead || c.handshaking) {
        if (c.head_started ? now > c.head_deadline : now - c.idle_since > opt.idle_timeout) {
          expired.push_back(id);
        }
      } else if (c.state == State::kStreaming && c.pending() == 0 &&
                 now - c.last_stream_send >= opt.heartbeat_interval) {
        beat.push_back(id);
      }
    }
    for (uint64_t id : expired) {
      s_timeouts++;
      CloseConn(conns.at(id));
    }
    for (uint64_t id : beat) {
      Conn& c = conns.at(id);
      AppendStreamBytes(c, c.stream->Heartbeat());
      Progress(c);
    }
  }
};

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(std::string path, Handler handler, bool may_block) {
  routes_[std::move(path)] = {std::move(handler), may_block};
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
  s.requests = impl_->s_requests;
  s.bad_requests = impl_->s_bad;
  s.timeouts = impl_->s_timeouts;
  s.tls_handshake_failures = impl_->s_tls_fail;
  s.connections = impl_->s_conns;
  return s;
}

}  // namespace infertap::serve
