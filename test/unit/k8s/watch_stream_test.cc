// RestClient::Watch against a hand-written HTTP/1.1 peer on loopback (plain http): line
// splitting across chunks, the client-side idle timeout and Stop() on a stream that sends
// nothing — situations the fake API server does not produce on purpose.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "k8s/rest_client.hpp"

namespace infertap::k8s {
namespace {

using std::chrono::milliseconds;

// Accepts one connection, reads the request head, writes `response` and then stays silent
// (keeps the connection open) until destroyed.
class SilentPeer {
 public:
  explicit SilentPeer(std::string response) : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 1), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string head;
      char buf[1024];
      while (head.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        head.append(buf, static_cast<size_t>(n));
      }
      request_ = head;
      (void)!::write(c, response_.data(), response_.size());
      while (!done_.load()) std::this_thread::sleep_for(milliseconds(10));
      ::close(c);
    });
  }
  ~SilentPeer() {
    done_.store(true);
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::string request() const { return request_; }

 private:
  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  std::string request_;
  std::thread thread_;
};

std::string Chunk(const std::string& s) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx\r\n", s.size());
  return size + s + "\r\n";
}

constexpr char kHead[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

TEST(WatchStream, SplitsLinesAcrossChunksAndTimesOutWhenIdle) {
  SilentPeer peer(std::string(kHead) + Chunk("{\"type\":\"ADDED\",") + Chunk("\"x\":1}\r\n\n{\"a") +
                  Chunk("\":2}\n{\"partial\""));
  ClusterConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(peer.port());
  c.token = "secret-token";
  RestClient client(c);
  std::vector<std::string> lines;
  auto t0 = std::chrono::steady_clock::now();
  WatchResult w = client.Watch("/api/v1/pods?watch=1", milliseconds(700), [&](std::string_view l) {
    lines.emplace_back(l);
    return true;
  });
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(w.status, 200);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"type\":\"ADDED\",\"x\":1}", "{\"a\":2}"}));
  EXPECT_EQ(w.lines, 2u);
  EXPECT_NE(w.error.find("idle"), std::string::npos) << w.error;
  EXPECT_GE(took, milliseconds(600));
  EXPECT_LT(took, milliseconds(3000));
  EXPECT_NE(peer.request().find("Authorization: Bearer secret-token"), std::string::npos);
  // The token is in the request, never in what the client reports.
  EXPECT_EQ(w.error.find("secret-token"), std::string::npos);
}

TEST(WatchStream, StopEndsASilentStreamPromptly) {
  SilentPeer peer{std::string(kHead)};
  ClusterConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(peer.port());
  RestClient client(c);
  std::thread stopper([&] {
    std::this_thread::sleep_for(milliseconds(300));
    client.Stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  WatchResult w = client.Watch("/x", milliseconds(60000), [](std::string_view) { return true; });
  stopper.join();
  EXPECT_TRUE(w.stopped);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(2000));
  // After Stop() nothing new starts.
  EXPECT_TRUE(client.Get("/x").stopped);
}

TEST(WatchStream, LineCapAndCallerAbort) {
  SilentPeer peer(std::string(kHead) + Chunk("{\"ok\":1}\n" + std::string(300, 'x')));
  ClusterConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(peer.port());
  RestOptions o;
  o.max_line_bytes = 256;
  RestClient client(c, o);
  WatchResult w = client.Watch("/x", milliseconds(5000), [](std::string_view) { return true; });
  EXPECT_TRUE(w.line_too_long);
  EXPECT_EQ(w.lines, 1u);
  EXPECT_NE(w.error.find("larger than 256 bytes"), std::string::npos) << w.error;
}

TEST(WatchStream, NonOkAnswerKeepsTheStatusBody) {
  std::string body = R"({"kind":"Status","code":410,"message":"too old resource version"})";
  SilentPeer peer("HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n\r\n" + body);
  ClusterConfig c;
  c.server = "http://127.0.0.1:" + std::to_string(peer.port());
  RestClient client(c);
  int lines = 0;
  WatchResult w = client.Watch("/x", milliseconds(5000), [&](std::string_view) {
    ++lines;
    return true;
  });
  EXPECT_EQ(w.status, 410);
  EXPECT_EQ(lines, 0);
  EXPECT_EQ(w.body, body);
  HttpResult as{w.status, w.body, "", false};
  EXPECT_EQ(as.Describe(), "HTTP 410: too old resource version");
}

}  // namespace
}  // namespace infertap::k8s
