#include "agent/serve/http_server.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "test/common/require.hpp"
#include "test/unit/serve/test_client.hpp"

namespace infertap::serve {
namespace {

using namespace std::chrono_literals;
using testing::BodyOf;
using testing::Connect;
using testing::Exchange;
using testing::Get;
using testing::HasHeader;
using testing::ReadUntil;
using testing::SendAll;
using testing::StatusOf;

HttpServerOptions Loopback() {
  HttpServerOptions o;
  o.addr = "127.0.0.1:0";
  return o;
}

// A server with /hello (worker), /inline (loop thread) and /throw.
class ServerTest : public ::testing::Test {
 protected:
  void StartWith(HttpServerOptions o) {
    server_ = std::make_unique<HttpServer>(std::move(o));
    server_->Handle("/hello", [](const RequestHead& r) {
      return HttpResponse::Text(200, "hello " + r.QueryParam("name"));
    });
    server_->Handle(
        "/inline", [](const RequestHead&) { return HttpResponse::Text(200, "inline"); }, false);
    server_->Handle("/throw",
                    [](const RequestHead&) -> HttpResponse { throw std::runtime_error("boom"); });
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.message();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }
  void SetUp() override { StartWith(Loopback()); }

  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

TEST_F(ServerTest, RoutesMethodsAndHead) {
  std::string r = Get(port_, "/hello?name=bob");
  EXPECT_EQ(StatusOf(r), 200) << r;
  EXPECT_EQ(BodyOf(r), "hello bob\n");
  EXPECT_TRUE(HasHeader(r, "Content-Length: 10")) << r;
  EXPECT_TRUE(HasHeader(r, "Connection: close")) << r;
  EXPECT_EQ(BodyOf(Get(port_, "/inline")), "inline\n");
  EXPECT_EQ(StatusOf(Get(port_, "/nope")), 404);
  std::string post =
      Exchange(port_, "POST /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(post), 405) << post;
  EXPECT_TRUE(HasHeader(post, "Allow: GET, HEAD"));
  std::string head =
      Exchange(port_, "HEAD /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(head), 200);
  EXPECT_TRUE(HasHeader(head, "Content-Length: 7")) << head;
  EXPECT_EQ(BodyOf(head), "");
  std::string thrown = Get(port_, "/throw");
  EXPECT_EQ(StatusOf(thrown), 500);
  EXPECT_NE(BodyOf(thrown).find("boom"), std::string::npos);
}

TEST_F(ServerTest, KeepAliveAndPipelining) {
  int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  // Two pipelined requests in one write, then a third after the answers.
  ASSERT_TRUE(SendAll(fd,
                      "GET /hello?name=a HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /inline HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string buf;
  ASSERT_TRUE(ReadUntil(
      fd, &buf, [](const std::string& b) { return b.find("inline\n") != std::string::npos; }));
  size_t first = buf.find("hello a\n");
  ASSERT_NE(first, std::string::npos) << buf;
  EXPECT_LT(first, buf.find("inline\n"));  // answered in order
  EXPECT_NE(buf.find("Connection: keep-alive"), std::string::npos);
  buf.clear();
  ASSERT_TRUE(SendAll(fd, "GET /hello?name=c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  bool closed = false;
  ASSERT_TRUE(ReadUntil(
      fd, &buf, [](const std::string&) { return false; }, 3s, &closed));
  EXPECT_TRUE(closed);
  EXPECT_EQ(BodyOf(buf), "hello c\n");
  close(fd);
}

TEST_F(ServerTest, GarbageGets400AndServerKeepsServing) {
  for (std::string garbage :
       {std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n", 13),
        std::string("hello\r\n\r\n"), std::string("GET / HTTP/1.1\r\nbad header\r\n\r\n"),
        std::string("GET /hello HTTP/1.1\r\n\r\n"),  // no Host
        std::string(64, '\0')}) {
    std::string r = Exchange(port_, garbage);
    EXPECT_EQ(StatusOf(r), 400) << r;
    EXPECT_TRUE(HasHeader(r, "Connection: close")) << r;
  }
  EXPECT_EQ(StatusOf(Get(port_, "/hello")), 200);
  EXPECT_GE(server_->stats().bad_requests, 5u);
}

TEST_F(ServerTest, RandomBytesNeverHangOrCrash) {
  // Deterministic noise, some of it shaped like HTTP: every connection gets an answer or a close.
  uint32_t seed = 12345;
  auto next = [&] { return seed = seed * 1103515245u + 12345u; };
  const std::string prefixes[] = {"", "GET ", "GET /hello HTTP/1.1\r\n", "HEAD / HTTP/1.0\r\n"};
  for (int i = 0; i < 200; ++i) {
    std::string data = prefixes[next() % 4];
    size_t len = next() % 300;
    for (size_t j = 0; j < len; ++j) data.push_back(static_cast<char>(next() >> 16));
    data += "\r\n\r\n";
    std::string r = Exchange(port_, data, 2s);
    ASSERT_EQ(r.find("<timeout>"), std::string::npos) << i;
    int status = StatusOf(r);
    EXPECT_TRUE(status == 400 || status == 431 || status == 404 || status == 200 || status == 405 ||
                status == 413)
        << i << ": " << r.substr(0, 80);
  }
  EXPECT_EQ(StatusOf(Get(port_, "/hello")), 200);
}

TEST_F(ServerTest, OversizedHeadGets431) {
  std::string big =
      "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n";
  std::string r = Exchange(port_, big);
  EXPECT_EQ(StatusOf(r), 431) << r.substr(0, 200);
  EXPECT_EQ(StatusOf(Get(port_, "/hello")), 200);
}

TEST_F(ServerTest, RequestBodiesAreRefused) {
  std::string r =
      Exchange(port_, "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(StatusOf(r), 413) << r;
  r = Exchange(port_,
               "GET /hello HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(StatusOf(r), 413) << r;
  r = Exchange(port_, "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n");
  EXPECT_EQ(StatusOf(r), 400) << r;
  r = Exchange(port_,
               "GET /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(StatusOf(r), 200) << r;
}

TEST_F(ServerTest, PortInUseIsAClearError) {
  HttpServerOptions o;
  o.addr = "127.0.0.1:" + std::to_string(port_);
  HttpServer second(o);
  Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "cannot listen on 127.0.0.1:" + std::to_string(port_) + ": Address already in use");
  // The ":PORT" form is reported with the text the user gave.
  o.addr = ":" + std::to_string(port_);
  HttpServer third(o);
  s = third.Start();
  // Dual-stack [::]:PORT conflicts with 127.0.0.1:PORT on Linux.
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "cannot listen on :" + std::to_string(port_) + ": Address already in use");
  HttpServerOptions bad;
  bad.addr = "nonsense";
  EXPECT_NE(HttpServer(bad).Start().message().find("invalid listen address \"nonsense\""),
            std::string::npos);
}

TEST(HttpServer, AnyAddressServesIpv4AndIpv6) {
  HttpServerOptions o;
  o.addr = ":0";
  HttpServer server(o);
  server.Handle("/x", [](const RequestHead&) { return HttpResponse::Text(200, "x"); });
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(StatusOf(Get(server.port(), "/x")), 200);
  int fd6 = Connect(server.port(), /*v6=*/true);
  if (fd6 < 0) INFERTAP_CANNOT_RUN("no IPv6 loopback here (::1)");
  SendAll(fd6, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  std::string out;
  ReadUntil(fd6, &out, [](const std::string&) { return false; });
  close(fd6);
  EXPECT_EQ(StatusOf(out), 200) << out;
}

TEST(HttpServer, SlowHeadAndIdleConnectionsTimeOut) {
  HttpServerOptions o = Loopback();
  o.head_timeout = 300ms;
  o.idle_timeout = 300ms;
  HttpServer server(o);
  server.Handle("/x", [](const RequestHead&) { return HttpResponse::Text(200, "x"); });
  ASSERT_TRUE(server.Start().ok());
  int slow = Connect(server.port());
  int silent = Connect(server.port());
  ASSERT_TRUE(SendAll(slow, "GET /x HTTP/1.1\r\nHo"));
  auto t0 = std::chrono::steady_clock::now();
  std::string out;
  bool closed = false;
  ASSERT_TRUE(ReadUntil(
      slow, &out, [](const std::string&) { return false; }, 3s, &closed));
  EXPECT_TRUE(closed);
  ASSERT_TRUE(ReadUntil(
      silent, &out, [](const std::string&) { return false; }, 3s, &closed));
  EXPECT_TRUE(closed);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
  EXPECT_GE(server.stats().timeouts, 2u);
  close(slow);
  close(silent);
}

TEST(HttpServer, ConnectionCapAnswers503) {
  HttpServerOptions o = Loopback();
  o.max_connections = 2;
  HttpServer server(o);
  server.Handle("/x", [](const RequestHead&) { return HttpResponse::Text(200, "x"); });
  ASSERT_TRUE(server.Start().ok());
  int a = Connect(server.port());
  int b = Connect(server.port());
  // Make sure both are accepted before the third arrives.
  for (int i = 0; i < 100 && server.stats().connections < 2; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(server.stats().connections, 2u);
  std::string r = Get(server.port(), "/x");
  EXPECT_EQ(StatusOf(r), 503) << r;
  EXPECT_EQ(server.stats().rejected_over_cap, 1u);
  close(a);
  close(b);
  for (int i = 0; i < 100 && server.stats().connections > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(StatusOf(Get(server.port(), "/x")), 200);
}

// A stream that never ends and never has data: only heartbeats.
class SilentStream : public StreamSource {
 public:
  void Start(std::function<void()>) override {}
  bool Pull(std::string*, size_t) override { return true; }
  std::string Heartbeat() override { return "beat\n"; }
};

TEST(HttpServer, StopIsPromptWithClientsConnected) {
  HttpServerOptions o = Loopback();
  HttpServer server(o);
  server.Handle("/x", [](const RequestHead&) { return HttpResponse::Text(200, "x"); });
  server.Handle("/stream", [](const RequestHead&) {
    HttpResponse r;
    r.stream = std::make_shared<SilentStream>();
    return r;
  });
  ASSERT_TRUE(server.Start().ok());
  int idle = Connect(server.port());
  int half = Connect(server.port());
  SendAll(half, "GET /x HTTP/1.1\r\n");
  int streaming = Connect(server.port());
  SendAll(streaming, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string head;
  ASSERT_TRUE(ReadUntil(streaming, &head, [](const std::string& b) {
    return b.find("\r\n\r\n") != std::string::npos;
  }));
  EXPECT_TRUE(HasHeader(head, "Transfer-Encoding: chunked")) << head;
  auto t0 = std::chrono::steady_clock::now();
  server.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  // Every client sees its connection closed.
  for (int fd : {idle, half, streaming}) {
    std::string out;
    bool closed = false;
    ASSERT_TRUE(ReadUntil(
        fd, &out, [](const std::string&) { return false; }, 2s, &closed));
    EXPECT_TRUE(closed);
    close(fd);
  }
  server.Stop();  // idempotent
}

TEST(HttpServer, HeartbeatsFlowOnIdleStreams) {
  HttpServerOptions o = Loopback();
  o.heartbeat_interval = 100ms;
  HttpServer server(o);
  server.Handle("/stream", [](const RequestHead&) {
    HttpResponse r;
    r.stream = std::make_shared<SilentStream>();
    return r;
  });
  ASSERT_TRUE(server.Start().ok());
  int fd = Connect(server.port());
  SendAll(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
  std::string out;
  ASSERT_TRUE(ReadUntil(fd, &out, [](const std::string& b) {
    size_t n = 0;
    for (size_t p = 0; (p = b.find("5\r\nbeat\n\r\n", p)) != std::string::npos; ++p) ++n;
    return n >= 3;
  }));
  close(fd);
}

// --- TLS ---------------------------------------------------------------------------------------

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("infertap-serve-tls-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    cert_ = (dir_ / "cert.pem").string();
    key_ = (dir_ / "key.pem").string();
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout " +
        key_ + " -out " + cert_ + " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string cert_, key_;
};

TEST_F(TlsTest, ServesOverTlsAndRejectsPlaintext) {
  HttpServerOptions o = Loopback();
  o.tls_cert_file = cert_;
  o.tls_key_file = key_;
  HttpServer server(o);
  server.Handle("/x", [](const RequestHead&) { return HttpResponse::Text(200, "secret-ok"); });
  Status s = server.Start();
  ASSERT_TRUE(s.ok()) << s.message();
  std::string cmd = "curl -sS --max-time 5 --cacert " + cert_ +
                    " https://127.0.0.1:" + std::to_string(server.port()) + "/x";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[256] = {};
  size_t n = fread(buf, 1, sizeof(buf) - 1, p);
  EXPECT_EQ(pclose(p), 0);
  EXPECT_EQ(std::string(buf, n), "secret-ok\n");
  // Plain HTTP to the TLS port: the handshake fails, the connection closes, no crash.
  std::string r = Get(server.port(), "/x");
  EXPECT_EQ(r.find("secret-ok"), std::string::npos);
  EXPECT_EQ(r.find("<timeout>"), std::string::npos);
  EXPECT_GE(server.stats().tls_handshake_failures, 1u);
}

TEST_F(TlsTest, BadFilesAreStartupErrors) {
  std::string garbage = (dir_ / "garbage.pem").string();
  std::ofstream(garbage) << "not a certificate\n";
  std::string other_key = (dir_ / "other.pem").string();
  ASSERT_EQ(std::system(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                         other_key + " >/dev/null 2>&1")
                            .c_str()),
            0);
  struct Case {
    std::string cert, key, want;
  };
  for (const Case& c : std::vector<Case>{
           {garbage, key_, "cannot load TLS certificate " + garbage},
           {cert_, garbage, "cannot load TLS key " + garbage},
           {(dir_ / "missing.pem").string(), key_, "cannot read TLS certificate"},
           {cert_, other_key, "does not match certificate"},
           {cert_, "", "--tls-cert and --tls-key must be given together"},
       }) {
    HttpServerOptions o = Loopback();
    o.tls_cert_file = c.cert;
    o.tls_key_file = c.key;
    HttpServer server(o);
    Status s = server.Start();
    ASSERT_FALSE(s.ok()) << c.want;
    EXPECT_NE(s.message().find(c.want), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace infertap::serve
