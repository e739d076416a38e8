// Unit tests of the HTTP server's parts (docs/serving.md#layout), each on its own: the listener,
// the worker pool, the transports (TLS handshake over a socketpair) and the connection state
// machine driven by hand (pipelining, oversize heads, timeouts, slow clients, stream
// back-pressure, the blocking-handler queue). http_server_test.cc tests them together.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "agent/serve/http_connection.hpp"
#include "agent/serve/listener.hpp"
#include "agent/serve/tls.hpp"
#include "agent/serve/transport.hpp"
#include "agent/serve/worker_pool.hpp"
#include "test/unit/serve/test_client.hpp"

namespace infertap::serve {
namespace {

using std::chrono::milliseconds;
using testing::BodyOf;
using testing::Connect;
using testing::HasHeader;
using testing::SendAll;
using testing::StatusOf;

// --- Listener -----------------------------------------------------------------------------------

TEST(Listener, BindsPortZeroAndAcceptsNonBlocking) {
  std::unique_ptr<Listener> l;
  ASSERT_TRUE(Listener::Open("127.0.0.1:0", &l).ok());
  ASSERT_NE(l->port(), 0);
  int fd = -1;
  EXPECT_EQ(l->Accept(&fd), Listener::Accepted::kNone);
  int client = Connect(l->port());
  ASSERT_GE(client, 0);
  Listener::Accepted a = Listener::Accepted::kNone;
  for (int i = 0; i < 200 && a != Listener::Accepted::kConn; ++i) {
    a = l->Accept(&fd);
    if (a != Listener::Accepted::kConn) std::this_thread::sleep_for(milliseconds(5));
  }
  ASSERT_EQ(a, Listener::Accepted::kConn);
  EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  close(fd);
  close(client);
}

TEST(Listener, PortInUseNamesAddressAndReason) {
  std::unique_ptr<Listener> a, b;
  ASSERT_TRUE(Listener::Open("127.0.0.1:0", &a).ok());
  std::string addr = "127.0.0.1:" + std::to_string(a->port());
  Status s = Listener::Open(addr, &b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "cannot listen on " + addr + ": Address already in use");
  EXPECT_FALSE(Listener::Open("nonsense", &b).ok());
}

// --- WorkerPool ---------------------------------------------------------------------------------

// A gate the test opens; jobs wait on it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> waiting{0};
  void Wait() {
    std::unique_lock lock(mu);
    waiting++;
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

bool WaitFor(const std::function<bool()>& cond, milliseconds limit = milliseconds(5000)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

TEST(WorkerPool, BoundedQueueRefusesWhenFull) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool(1, 2);
  ASSERT_TRUE(pool.TrySubmit([&] {
    gate.Wait();
    ran++;
  }));
  ASSERT_TRUE(WaitFor([&] { return gate.waiting.load() == 1; }));  // the thread is busy
  EXPECT_TRUE(pool.TrySubmit([&] { ran++; }));
  EXPECT_TRUE(pool.TrySubmit([&] { ran++; }));
  EXPECT_EQ(pool.queued(), 2u);
  EXPECT_FALSE(pool.TrySubmit([&] { ran += 100; }));  // back-pressure: the caller answers 503
  gate.Open();
  ASSERT_TRUE(WaitFor([&] { return ran.load() == 3; }));
  EXPECT_EQ(pool.queued(), 0u);
  EXPECT_TRUE(pool.TrySubmit([&] { ran++; }));  // room again
  ASSERT_TRUE(WaitFor([&] { return ran.load() == 4; }));
}

TEST(WorkerPool, StopWaitsForRunningAndDropsQueued) {
  Gate gate;
  std::atomic<int> ran{0};
  WorkerPool pool(1, 8);
  ASSERT_TRUE(pool.TrySubmit([&] {
    gate.Wait();
    ran++;
  }));
  ASSERT_TRUE(WaitFor([&] { return gate.waiting.load() == 1; }));
  ASSERT_TRUE(pool.TrySubmit([&] { ran += 100; }));
  std::thread stopper([&] { pool.Stop(); });
  std::this_thread::sleep_for(milliseconds(20));
  gate.Open();
  stopper.join();
  EXPECT_EQ(ran.load(), 1);  // the running job finished, the queued one never ran
  EXPECT_FALSE(pool.TrySubmit([&] { ran++; }));
  pool.Stop();  // idempotent
}

// --- Transports ---------------------------------------------------------------------------------

class TlsTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("infertap-serve-parts-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    std::string cert = (dir_ / "cert.pem").string(), key = (dir_ / "key.pem").string();
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=localhost -keyout " +
        key + " -out " + cert + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    ASSERT_TRUE(TlsContext::Load(cert, key, &ctx_).ok());
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv_), 0);
  }
  void TearDown() override {
    if (sv_[1] >= 0) close(sv_[1]);
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<TlsContext> ctx_;
  int sv_[2] = {-1, -1};
};

TEST_F(TlsTransportTest, HandshakeThenBytesBothWays) {
  std::unique_ptr<Transport> server = MakeTlsServerTransport(*ctx_, sv_[0]);
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->handshaking());
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL* client = SSL_new(cctx);
  SSL_set_fd(client, sv_[1]);
  SSL_set_connect_state(client);
  bool server_done = false, client_done = false;
  for (int i = 0; i < 100 && !(server_done && client_done); ++i) {
    if (!client_done) client_done = SSL_do_handshake(client) == 1;
    if (!server_done) {
      Io io = server->Handshake();
      ASSERT_NE(io, Io::kError);
      server_done = io == Io::kData;
    }
  }
  ASSERT_TRUE(server_done && client_done);
  EXPECT_FALSE(server->handshaking());
  ASSERT_EQ(SSL_write(client, "hello", 5), 5);
  char buf[64];
  size_t n = 0;
  ASSERT_EQ(server->Read(buf, sizeof(buf), &n), Io::kData);
  EXPECT_EQ(std::string(buf, n), "hello");
  EXPECT_EQ(server->Read(buf, sizeof(buf), &n), Io::kAgain);
  ASSERT_EQ(server->Write("world", 5, &n), Io::kData);
  EXPECT_EQ(n, 5u);
  int r = SSL_read(client, buf, sizeof(buf));
  ASSERT_EQ(r, 5);
  EXPECT_EQ(std::string(buf, 5), "world");
  SSL_free(client);
  SSL_CTX_free(cctx);
}

TEST_F(TlsTransportTest, PlaintextClientFailsTheHandshake) {
  std::unique_ptr<Transport> server = MakeTlsServerTransport(*ctx_, sv_[0]);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(SendAll(sv_[1], "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(server->Handshake(), Io::kError);
}

TEST(PlainTransport, ReadsWritesAndSeesEof) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  std::unique_ptr<Transport> t = MakePlainTransport(sv[0]);
  EXPECT_EQ(t->Handshake(), Io::kData);
  char buf[16];
  size_t n = 0;
  EXPECT_EQ(t->Read(buf, sizeof(buf), &n), Io::kAgain);
  ASSERT_EQ(t->Write("abc", 3, &n), Io::kData);
  ASSERT_EQ(read(sv[1], buf, sizeof(buf)), 3);
  close(sv[1]);
  EXPECT_EQ(t->Read(buf, sizeof(buf), &n), Io::kEof);
}

// --- HttpConnection -----------------------------------------------------------------------------

struct FakeHost : ConnectionHost {
  bool accept = true;
  std::vector<std::pair<uint64_t, RequestHead>> submitted;
  std::atomic<int> wakes{0};
  bool SubmitHandler(uint64_t id, const Handler*, RequestHead req) override {
    if (!accept) return false;
    submitted.emplace_back(id, std::move(req));
    return true;
  }
  void WakeStream(uint64_t) override { wakes++; }
  bool stopping() const override { return false; }
};

// An endless stream: every Pull() gives as much as it is allowed; counts what it handed out.
struct EndlessStream : StreamSource {
  std::atomic<size_t> pulled{0};
  std::function<void()> wake;
  void Start(std::function<void()> w) override { wake = std::move(w); }
  bool Pull(std::string* out, size_t max_bytes) override {
    out->append(max_bytes, 'x');
    pulled += max_bytes;
    return true;
  }
  std::string Heartbeat() override { return ":\n"; }
};

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv_), 0);
    routes_["/a"] = Route{[](const RequestHead&) { return HttpResponse::Text(200, "A"); }, false};
    routes_["/b"] = Route{[](const RequestHead&) { return HttpResponse::Text(200, "B"); }, false};
    routes_["/big"] =
        Route{[](const RequestHead&) { return HttpResponse::Text(200, std::string(4 << 20, 'z')); },
              false};
    routes_["/slow"] = Route{[](const RequestHead&) { return HttpResponse::Text(200, "S"); }, true};
    routes_["/stream"] = Route{[this](const RequestHead&) {
                                 HttpResponse r;
                                 r.stream = stream_;
                                 return r;
                               },
                               false};
    limits_.max_head_bytes = 512;
    limits_.stream_output_cap = 64 * 1024;
  }
  void TearDown() override { close(sv_[1]); }

  std::unique_ptr<HttpConnection> Make() {
    return std::make_unique<HttpConnection>(16, MakePlainTransport(sv_[0]), limits_, routes_,
                                            &host_, &counters_, t0_);
  }
  // What the client side can read now.
  std::string Drain() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = read(sv_[1], buf, sizeof(buf));
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }

  int sv_[2] = {-1, -1};
  Routes routes_;
  ConnectionLimits limits_;
  FakeHost host_;
  ConnectionCounters counters_;
  std::shared_ptr<EndlessStream> stream_ = std::make_shared<EndlessStream>();
  Clock::time_point t0_ = Clock::now();
};

TEST_F(ConnectionTest, PipelinedRequestsAreAnsweredInOrder) {
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1],
                      "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                      "GET /a HTTP/1.1\r\nHost: h\r\n"));  // the third is still incomplete
  c->Progress(t0_);
  std::string out = Drain();
  size_t a = out.find("\r\n\r\nA\n"), b = out.find("\r\n\r\nB\n");
  ASSERT_NE(a, std::string::npos) << out;
  ASSERT_NE(b, std::string::npos) << out;
  EXPECT_LT(a, b);
  EXPECT_EQ(out.find("\r\n\r\nA\n", a + 1), std::string::npos);
  EXPECT_FALSE(c->closed());
  EXPECT_EQ(c->state(), HttpConnection::State::kHead);
  EXPECT_EQ(c->interest(), uint32_t{EPOLLIN});
  ASSERT_TRUE(SendAll(sv_[1], "\r\n"));  // completes the third
  c->Progress(t0_);
  EXPECT_NE(Drain().find("\r\n\r\nA\n"), std::string::npos);
  EXPECT_EQ(counters_.requests.load(), 3u);
}

TEST_F(ConnectionTest, OversizeHeadGets431AndCloses) {
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /a HTTP/1.1\r\nX: " + std::string(2000, 'a')));
  c->Progress(t0_);
  std::string out = Drain();
  EXPECT_EQ(StatusOf(out), 431) << out;
  EXPECT_TRUE(HasHeader(out, "Connection: close"));
  EXPECT_TRUE(c->closed());
  EXPECT_EQ(counters_.bad_requests.load(), 1u);
}

TEST_F(ConnectionTest, HeadAndIdleTimeouts) {
  limits_.head_timeout = milliseconds(100);
  limits_.idle_timeout = milliseconds(1000);
  auto c = Make();
  // A silent new connection has head_timeout from the accept.
  EXPECT_TRUE(c->Tick(t0_ + milliseconds(99)));
  EXPECT_FALSE(c->Tick(t0_ + milliseconds(101)));
  // After an answered request it waits idle_timeout for the next one...
  ASSERT_TRUE(SendAll(sv_[1], "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  c->Progress(t0_);
  ASSERT_EQ(StatusOf(Drain()), 200);
  EXPECT_TRUE(c->Tick(t0_ + milliseconds(999)));
  EXPECT_FALSE(c->Tick(t0_ + milliseconds(1001)));
  // ...and head_timeout again from the first byte of it (slow-loris).
  ASSERT_TRUE(SendAll(sv_[1], "GET /a HT"));
  Clock::time_point t1 = t0_ + milliseconds(500);
  c->Progress(t1);
  EXPECT_TRUE(c->Tick(t1 + milliseconds(99)));
  EXPECT_FALSE(c->Tick(t1 + milliseconds(101)));
}

TEST_F(ConnectionTest, SlowReaderHitsTheWriteTimeout) {
  limits_.write_timeout = milliseconds(200);
  int small = 4096;
  ASSERT_EQ(setsockopt(sv_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /big HTTP/1.1\r\nHost: h\r\n\r\n"));
  c->Progress(t0_);
  ASSERT_GT(c->pending_output(), 0u);  // 4 MiB do not fit: the client is not reading
  EXPECT_EQ(c->state(), HttpConnection::State::kWriting);
  EXPECT_TRUE(c->interest() & EPOLLOUT);
  EXPECT_TRUE(c->Tick(t0_ + milliseconds(199)));
  EXPECT_FALSE(c->Tick(t0_ + milliseconds(201)));
  // Progress resets the clock: a slow reader that does read is not cut off.
  std::string got = Drain();
  Clock::time_point t1 = t0_ + milliseconds(150);
  c->Progress(t1);
  EXPECT_TRUE(c->Tick(t1 + milliseconds(199)));
  EXPECT_FALSE(got.empty());
}

TEST_F(ConnectionTest, StreamIsPulledOnlyWhileBelowTheOutputCap) {
  int small = 4096;
  ASSERT_EQ(setsockopt(sv_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n"));
  c->Progress(t0_);
  EXPECT_EQ(c->state(), HttpConnection::State::kStreaming);
  EXPECT_GT(stream_->pulled.load(), 0u);
  c->Progress(t0_);  // tops the output up to the cap again after what the socket took
  size_t settled = stream_->pulled.load();
  // The socket is full and the client reads nothing: more Progress pulls nothing more, and what
  // waits in the connection stays near the cap (the rest waits in the producer).
  for (int i = 0; i < 10; ++i) c->Progress(t0_);
  EXPECT_EQ(stream_->pulled.load(), settled);
  EXPECT_LE(c->pending_output(), limits_.stream_output_cap + 64);
  EXPECT_TRUE(c->interest() & EPOLLOUT);
  // A reading client gets more: the first Progress writes from the backlog, the next (the loop
  // makes it on EPOLLOUT) pulls to refill it.
  std::string got = Drain();
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos);
  c->Progress(t0_);
  c->Progress(t0_);
  EXPECT_GT(stream_->pulled.load(), settled);
}

TEST_F(ConnectionTest, BlockingHandlersGoToTheHostOr503WhenItIsFull) {
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"));
  c->Progress(t0_);
  ASSERT_EQ(host_.submitted.size(), 1u);
  EXPECT_EQ(host_.submitted[0].first, 16u);
  EXPECT_EQ(host_.submitted[0].second.path, "/slow");
  EXPECT_EQ(c->state(), HttpConnection::State::kWaitHandler);
  EXPECT_EQ(c->interest(), 0u);  // nothing to read or write until the worker answers
  c->OnHandlerDone(HttpResponse::Text(200, "done"), t0_);
  std::string out = Drain();
  EXPECT_EQ(BodyOf(out), "done\n");
  EXPECT_EQ(c->state(), HttpConnection::State::kHead);

  host_.accept = false;
  ASSERT_TRUE(SendAll(sv_[1], "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n"));
  c->Progress(t0_);
  out = Drain();
  EXPECT_EQ(StatusOf(out), 503);
  EXPECT_TRUE(HasHeader(out, "Connection: close"));
  EXPECT_TRUE(c->closed());
}

TEST_F(ConnectionTest, RefusesBodiesAndMissingHost) {
  auto c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /a HTTP/1.1\r\n\r\n"));
  c->Progress(t0_);
  EXPECT_EQ(StatusOf(Drain()), 400);
  EXPECT_TRUE(c->closed());
  close(sv_[1]);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv_), 0);
  c = Make();
  ASSERT_TRUE(SendAll(sv_[1], "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"));
  c->Progress(t0_);
  EXPECT_EQ(StatusOf(Drain()), 413);
  EXPECT_TRUE(c->closed());
}

}  // namespace
}  // namespace infertap::serve
