// Root end-to-end tests of the capture layer (issue: foundation and kernel capture): real BPF
// programs in the kernel, a real `infertap capture` process, real sockets in network
// namespaces. Every test compares the captured streams byte for byte with what the client and
// the server actually sent.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "test/common/require.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e {
namespace {

// Which syscalls the test server uses for a connection.
enum class IoMode { kReadWrite, kSendRecv, kMsg, kVec, kSendfile };

// What one side of one connection did, byte for byte.
struct Transcript {
  std::string read, written;
  int fd = -1;
};

// Deterministic body bytes: all 256 values, so binary data is covered too.
std::string Body(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (size_t i = 0; i < n; ++i) s[i] = char(rng() & 0xff);
  return s;
}

sockaddr_storage MakeAddr(const std::string& ip, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (ip.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    *len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    *len = sizeof(*a);
  }
  return ss;
}

uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}
uint16_t PeerPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

ssize_t DoRead(int fd, char* buf, size_t n, IoMode m) {
  // Wait for readiness first, like every event-loop server (uvicorn, nginx): a read blocked in
  // the kernel while the agent attaches cannot be captured (its enter ran before the probe).
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 30000) <= 0) return -1;
  switch (m) {
    case IoMode::kSendRecv:
      return recvfrom(fd, buf, n, 0, nullptr, nullptr);
    case IoMode::kMsg: {
      // Two iovecs, so the kernel side has to walk them.
      size_t half = n / 2;
      iovec iov[2] = {{buf, half}, {buf + half, n - half}};
      msghdr mh{};
      mh.msg_iov = iov;
      mh.msg_iovlen = 2;
      return recvmsg(fd, &mh, 0);
    }
    case IoMode::kVec: {
      size_t third = n / 3;
      iovec iov[3] = {{buf, third}, {buf + third, third}, {buf + 2 * third, n - 2 * third}};
      return readv(fd, iov, 3);
    }
    default:
      return read(fd, buf, n);
  }
}

ssize_t DoWrite(int fd, const char* buf, size_t n, IoMode m) {
  switch (m) {
    case IoMode::kSendRecv:
      return sendto(fd, buf, n, MSG_NOSIGNAL, nullptr, 0);
    case IoMode::kMsg: {
      size_t half = n / 2;
      iovec iov[2] = {{const_cast<char*>(buf), half}, {const_cast<char*>(buf) + half, n - half}};
      msghdr mh{};
      mh.msg_iov = iov;
      mh.msg_iovlen = 2;
      return sendmsg(fd, &mh, MSG_NOSIGNAL);
    }
    case IoMode::kVec: {
      size_t third = n / 3;
      iovec iov[3] = {{const_cast<char*>(buf), third},
                      {const_cast<char*>(buf) + third, third},
                      {const_cast<char*>(buf) + 2 * third, n - 2 * third}};
      return writev(fd, iov, 3);
    }
    default:
      return write(fd, buf, n);
  }
}

bool WriteAll(int fd, const std::string& s, IoMode m, std::string* log) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = DoWrite(fd, s.data() + off, s.size() - off, m);
    if (n <= 0) return false;
    if (log) log->append(s.data() + off, size_t(n));
    off += size_t(n);
  }
  return true;
}

// A tiny HTTP/1.1 server: reads a request head, answers with a body of the size asked for in
// the path ("GET /<size> ..."). Records every byte it read and wrote per client port.
class TestServer {
 public:
  TestServer(std::string netns, std::string ip, uint16_t port, IoMode mode)
      : netns_(std::move(netns)), ip_(std::move(ip)), port_(port), mode_(mode) {}
  ~TestServer() { Stop(); }

  bool Start() {
    std::promise<bool> ready;
    auto fut = ready.get_future();
    accept_thread_ = std::thread([this, &ready] {
      if (!EnterNetns(netns_)) return ready.set_value(false);
      socklen_t len;
      sockaddr_storage ss = MakeAddr(ip_, port_, &len);
      lfd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (bind(lfd_, reinterpret_cast<sockaddr*>(&ss), len) || listen(lfd_, 1024))
        return ready.set_value(false);
      ready.set_value(true);
      for (;;) {
        int fd = accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        if (sequential_) {
          // Every connection on the same fd number, whatever else the process opened meanwhile
          // (the lowest free number is not stable under a slow or busy machine).
          if (dup2(fd, kSequentialFd) < 0) return;
          close(fd);
          Serve(kSequentialFd);
        } else {
          std::lock_guard<std::mutex> lock(mu_);
          workers_.emplace_back([this, fd] { Serve(fd); });
        }
      }
    });
    return fut.get();
  }

  void Stop() {
    if (lfd_ >= 0) {
      shutdown(lfd_, SHUT_RDWR);
      close(lfd_);
      lfd_ = -1;
    }
    if (accept_thread_.joinable()) accept_thread_.join();
    std::vector<std::thread> workers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      workers.swap(workers_);
    }
    for (auto& t : workers)
      if (t.joinable()) t.join();
  }

  // Serve one connection at a time, each moved to fd kSequentialFd, and close it (so the next
  // connection reuses the fd number).
  static constexpr int kSequentialFd = 900;
  void set_sequential(bool s) { sequential_ = s; }
  void set_sendfile_path(std::string p) { sendfile_path_ = std::move(p); }

  std::map<uint16_t, Transcript> transcripts() {
    std::lock_guard<std::mutex> lock(mu_);
    return transcripts_;
  }

 private:
  void Serve(int fd) {
    Transcript t;
    t.fd = fd;
    const uint16_t peer = PeerPort(fd);
    std::string pending;
    char buf[16384];
    for (;;) {
      size_t head_end;
      while ((head_end = pending.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = DoRead(fd, buf, sizeof(buf), mode_);
        if (n <= 0) goto done;
        t.read.append(buf, size_t(n));
        pending.append(buf, size_t(n));
      }
      const std::string head = pending.substr(0, head_end + 4);
      pending.erase(0, head_end + 4);
      size_t size = 0;
      if (size_t sp = head.find(' '); sp != std::string::npos)
        size = std::strtoul(head.c_str() + sp + 2, nullptr, 10);
      const std::string body = Body(size, uint32_t(size));
      const std::string resp_head =
          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
      if (mode_ == IoMode::kSendfile) {
        if (!WriteAll(fd, resp_head, IoMode::kReadWrite, &t.written)) goto done;
        int file = open(sendfile_path_.c_str(), O_RDONLY | O_CLOEXEC);
        off_t off = 0;
        while (off < off_t(size)) {
          ssize_t n = sendfile(fd, file, &off, size - size_t(off));
          if (n <= 0) break;
        }
        close(file);
        t.written += "<gap " + std::to_string(size) + ">";
      } else if (!WriteAll(fd, resp_head + body, mode_, &t.written)) {
        goto done;
      }
    }
  done:
    close(fd);
    std::lock_guard<std::mutex> lock(mu_);
    transcripts_[peer] = std::move(t);
  }

  std::string netns_, ip_;
  uint16_t port_;
  IoMode mode_;
  bool sequential_ = false;
  std::string sendfile_path_;
  int lfd_ = -1;
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::map<uint16_t, Transcript> transcripts_;
};

// A client connection in the client namespace; every byte sent and received is recorded.
class TestClient {
 public:
  bool Connect(const std::string& netns, const std::string& ip, uint16_t port) {
    bool ok = false;
    std::thread t([&] {
      if (!EnterNetns(netns)) return;
      socklen_t len;
      sockaddr_storage ss = MakeAddr(ip, port, &len);
      fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      ok = connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0;
    });
    t.join();
    if (ok) port_ = LocalPort(fd_);
    return ok;
  }
  // Sends "GET /<size>" and reads the whole response. Returns false on any error.
  bool Exchange(size_t size, IoMode mode = IoMode::kReadWrite) {
    const std::string req =
        "GET /" + std::to_string(size) + " HTTP/1.1\r\nHost: model\r\nUser-Agent: e2e\r\n\r\n";
    if (!WriteAll(fd_, req, mode, &sent_)) return false;
    std::string resp;
    char buf[65536];
    size_t want = std::string::npos;
    while (want == std::string::npos || resp.size() < want) {
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) return false;
      resp.append(buf, size_t(n));
      if (want == std::string::npos) {
        size_t he = resp.find("\r\n\r\n");
        if (he != std::string::npos) {
          size_t cl = resp.find("Content-Length: ");
          want = he + 4 + std::strtoul(resp.c_str() + cl + 16, nullptr, 10);
        }
      }
    }
    received_ += resp;
    return true;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  ~TestClient() { Close(); }
  uint16_t port() const { return port_; }
  const std::string& sent() const { return sent_; }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string sent_, received_;
};

uint16_t NextPort() {
  static std::atomic<uint16_t> p{uint16_t(20000 + getpid() % 20000)};
  return p++;
}

// Captured connections keyed by the client's port (remote port of the server-side socket).
std::map<uint16_t, CapturedConn> ByRemotePort(const std::map<uint64_t, CapturedConn>& conns) {
  std::map<uint16_t, CapturedConn> out;
  for (auto& [id, c] : conns) out[c.info.remote.port] = c;
  return out;
}

class CaptureE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    INFERTAP_REQUIRE_BPF_OR_SKIP();
    ns_ = std::make_unique<NetnsPair>();
    ASSERT_TRUE(ns_->ok());
  }
  // Starts `infertap capture` on the given target with extra args, writing to a temp file.
  std::unique_ptr<CaptureProcess> StartCapture(const std::string& target,
                                               std::vector<std::string> extra = {}) {
    file_ = TempFile(std::to_string(NextPort()) + ".cap");
    std::vector<std::string> args = {"capture", "--target", target, "-o", file_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto cap = std::make_unique<CaptureProcess>(args);
    std::string err;
    EXPECT_TRUE(cap->Start(&err)) << err;
    return cap;
  }
  std::map<uint64_t, CapturedConn> StopAndRead(CaptureProcess& cap) {
    EXPECT_EQ(cap.Stop(), 0) << cap.err();
    std::string err;
    auto conns = ReadCapture(file_, &err);
    EXPECT_TRUE(err.empty()) << err;
    std::remove(file_.c_str());
    return conns;
  }
  std::unique_ptr<NetnsPair> ns_;
  std::string file_;
};

// Server side: ingress = what the client sent, egress = what the server wrote.
void ExpectMatches(const std::map<uint16_t, CapturedConn>& captured, TestServer& server,
                   size_t expected_conns) {
  auto transcripts = server.transcripts();
  ASSERT_EQ(transcripts.size(), expected_conns);
  ASSERT_EQ(captured.size(), expected_conns);
  for (auto& [port, t] : transcripts) {
    auto it = captured.find(port);
    ASSERT_NE(it, captured.end()) << "no capture for client port " << port;
    EXPECT_EQ(it->second.info.role, Role::kServer);
    EXPECT_TRUE(it->second.in == t.read)
        << "ingress differs for port " << port << ": captured " << it->second.in.size()
        << " bytes, server read " << t.read.size();
    EXPECT_TRUE(it->second.out == t.written)
        << "egress differs for port " << port << ": captured " << it->second.out.size()
        << " bytes, server wrote " << t.written.size();
  }
}

void RunModeTest(CaptureE2E* self, NetnsPair& ns, IoMode mode,
                 std::function<std::unique_ptr<CaptureProcess>(const std::string&)> start,
                 std::function<std::map<uint64_t, CapturedConn>(CaptureProcess&)> stop) {
  (void)self;  // kept for the fixture-style signature the mode tests share
  const uint16_t port = NextPort();
  TestServer server(ns.srv(), ns.srv_v4(), port, mode);
  ASSERT_TRUE(server.Start());
  auto cap = start(ns.srv_v4() + ":" + std::to_string(port));
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int c = 0; c < 3; ++c) {
    auto cl = std::make_unique<TestClient>();
    ASSERT_TRUE(cl->Connect(ns.cli(), ns.srv_v4(), port));
    for (size_t size : {0, 1, 100, 5000, 70000}) ASSERT_TRUE(cl->Exchange(size, mode));
    cl->Close();
    clients.push_back(std::move(cl));
  }
  server.Stop();
  auto captured = ByRemotePort(stop(*cap));
  ExpectMatches(captured, server, 3);
  for (auto& cl : clients) {
    // The client's own record agrees with the server's: nothing lost in between.
    EXPECT_TRUE(captured[cl->port()].in == cl->sent());
    EXPECT_TRUE(captured[cl->port()].out == cl->received());
  }
}

#define MODE_TEST(Name, Mode)                                                       \
  TEST_F(CaptureE2E, Name) {                                                        \
    if (!ns_) return;                                                               \
    RunModeTest(                                                                    \
        this, *ns_, Mode, [this](const std::string& t) { return StartCapture(t); }, \
        [this](CaptureProcess& c) { return StopAndRead(c); });                      \
  }

MODE_TEST(ReadWritePathIsCapturedByteForByte, IoMode::kReadWrite)
MODE_TEST(SendtoRecvfromPathIsCapturedByteForByte, IoMode::kSendRecv)
MODE_TEST(SendmsgRecvmsgPathIsCapturedByteForByte, IoMode::kMsg)
MODE_TEST(ReadvWritevPathIsCapturedByteForByte, IoMode::kVec)

TEST_F(CaptureE2E, FourMiBResponseIsCapturedWhole) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  // A 4 MiB write can complete in one syscall: raise the per-syscall cap so all of it is copied.
  auto cap = StartCapture(
      ns_->srv_v4() + ":" + std::to_string(port),
      {"--syscall-cap", std::to_string(8 << 20), "--ring-buffer-size", std::to_string(64 << 20)});
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(4 << 20));
  cl.Close();
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ExpectMatches(captured, server, 1);
  EXPECT_EQ(captured[cl.port()].out.size(), cl.received().size());
  EXPECT_GT(cl.received().size(), size_t(4 << 20));
}

TEST_F(CaptureE2E, BytesPastThePerSyscallCapAreAGapOfExactLength) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port), {"--syscall-cap", "1000"});
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(200000));
  cl.Close();
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ASSERT_EQ(captured.size(), 1u);
  const CapturedConn& c = captured[cl.port()];
  // Whatever the syscall split, every byte is either captured or counted as a gap.
  EXPECT_EQ(c.info.counters.bytes_in, cl.sent().size());
  EXPECT_EQ(c.info.counters.bytes_out + c.info.counters.gap_bytes,
            server.transcripts()[cl.port()].written.size());
  EXPECT_GT(c.info.counters.gap_bytes, 0u);
  // The first 1000 bytes of the response are real bytes, then a gap.
  EXPECT_EQ(c.out.substr(0, 1000), cl.received().substr(0, 1000));
  EXPECT_EQ(c.out.substr(1000, 5), "<gap ");
}

TEST_F(CaptureE2E, SendfileIsReportedAsAGapOfTheRightLength) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  const std::string file = TempFile("sendfile.bin");
  {
    FILE* f = std::fopen(file.c_str(), "wb");
    std::string data(300000, 'z');
    std::fwrite(data.data(), 1, data.size(), f);
    std::fclose(f);
  }
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kSendfile);
  server.set_sendfile_path(file);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(300000));
  ASSERT_TRUE(cl.Exchange(12345));
  cl.Close();
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ExpectMatches(captured, server, 1);  // transcript writes "<gap N>" for the sendfile body
  EXPECT_EQ(captured[cl.port()].info.counters.gap_bytes, 300000u + 12345u);
  std::remove(file.c_str());
}

TEST_F(CaptureE2E, TwoHundredConcurrentKeepAliveConnectionsFiveRequestsEach) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  constexpr int kConns = 200;
  std::vector<std::unique_ptr<TestClient>> clients(kConns);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < kConns; ++i) {
    clients[i] = std::make_unique<TestClient>();
    threads.emplace_back([&, i] {
      if (!clients[i]->Connect(ns_->cli(), ns_->srv_v4(), port)) {
        ++failures;
        return;
      }
      for (int r = 0; r < 5; ++r)
        if (!clients[i]->Exchange(size_t(100 + 997 * ((i + r) % 13)))) ++failures;
      clients[i]->Close();
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ExpectMatches(captured, server, kConns);
  for (auto& [port_, c] : captured) EXPECT_EQ(c.info.counters.gap_bytes, 0u);
}

TEST_F(CaptureE2E, ConnectionOpenedBeforeTheAgentStartedIsPickedUp) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(10));  // before the agent exists
  const size_t sent_before = cl.sent().size(), received_before = cl.received().size();
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  ASSERT_TRUE(cl.Exchange(20));
  ASSERT_TRUE(cl.Exchange(3000));
  cl.Close();
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ASSERT_EQ(captured.size(), 1u);
  const CapturedConn& c = captured[cl.port()];
  // Positions start where the agent first saw the socket: exactly the later exchanges.
  EXPECT_TRUE(c.in == cl.sent().substr(sent_before));
  EXPECT_TRUE(c.out == cl.received().substr(received_before));
  EXPECT_TRUE(c.info.addresses_known);
  EXPECT_EQ(c.info.local.ToString(), ns_->srv_v4() + ":" + std::to_string(port));
}

TEST_F(CaptureE2E, ReusedFdNumberAfterCloseIsANewConnection) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  server.set_sequential(true);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 3; ++i) {
    auto cl = std::make_unique<TestClient>();
    ASSERT_TRUE(cl->Connect(ns_->cli(), ns_->srv_v4(), port));
    ASSERT_TRUE(cl->Exchange(size_t(50 + i)));
    cl->Close();
    clients.push_back(std::move(cl));
    // Wait until the server closed its side, so the next connection gets the freed fd number.
    for (int w = 0; w < 2000 && server.transcripts().size() < size_t(i + 1); ++w) usleep(5000);
  }
  server.Stop();
  auto conns = StopAndRead(*cap);
  auto captured = ByRemotePort(conns);
  ExpectMatches(captured, server, 3);
  std::set<uint32_t> fds;
  std::set<uint64_t> ids;
  for (auto& [id, c] : conns) {
    fds.insert(c.info.fd);
    ids.insert(id);
  }
  EXPECT_EQ(fds.size(), 1u) << "the test expects the kernel to reuse the fd number";
  EXPECT_EQ(ids.size(), 3u);
}

// A process that exits closes its sockets without close(): the kernel side must still end the
// connection (close event with the final positions), or its state would leak forever.
TEST_F(CaptureE2E, ProcessExitWithoutCloseEndsTheConnection) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  pid_t child = fork();
  if (child == 0) {
    // The traced server: one exchange, then exit with the socket still open.
    if (!EnterNetns(ns_->srv())) _exit(1);
    socklen_t len;
    sockaddr_storage ss = MakeAddr(ns_->srv_v4(), port, &len);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, reinterpret_cast<sockaddr*>(&ss), len) || listen(l, 1)) _exit(1);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    int fd = accept(l, nullptr, nullptr);
    char buf[4096];
    std::string req;
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) _exit(1);
      req.append(buf, size_t(n));
    }
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    if (write(fd, resp.data(), resp.size()) != ssize_t(resp.size())) _exit(1);
    _exit(0);  // no close(): the kernel closes fd at exit
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(5));
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  usleep(200000);
  auto conns = StopAndRead(*cap);
  ASSERT_EQ(conns.size(), 1u);
  const CapturedConn& got = conns.begin()->second;
  EXPECT_TRUE(got.closed) << "no close event after the traced process exited";
  EXPECT_EQ(got.info.tgid, uint32_t(child));
  EXPECT_TRUE(got.in == cl.sent());
  EXPECT_TRUE(got.out == cl.received());
  close(ready[0]);
  close(ready[1]);
}

TEST_F(CaptureE2E, IPv6ConnectionsAreCapturedWithAddresses) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v6(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture("[" + ns_->srv_v6() + "]:" + std::to_string(port));
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v6(), port));
  ASSERT_TRUE(cl.Exchange(777));
  cl.Close();
  server.Stop();
  auto captured = ByRemotePort(StopAndRead(*cap));
  ExpectMatches(captured, server, 1);
  const CapturedConn& c = captured[cl.port()];
  EXPECT_EQ(c.info.family, 10);
  EXPECT_EQ(c.info.local.ToString(), "[" + ns_->srv_v6() + "]:" + std::to_string(port));
  EXPECT_EQ(c.info.remote.ToString(), "[" + ns_->cli_v6() + "]:" + std::to_string(cl.port()));
}

// The variant that runs is the one INFERTAP_BPF_VARIANT asks for (ctest runs this suite once as
// is and once with "compat"), else the one `infertap version --features` says the probes pick;
// the capture works with it (one exact exchange).
TEST_F(CaptureE2E, RunsTheVariantAskedForOrProbed) {
  if (!ns_) return;
  const char* env = std::getenv("INFERTAP_BPF_VARIANT");
  std::string want = env && *env && std::string(env) != "auto" ? env : "";
  if (want.empty()) {
    FILE* p = popen((InfertapBinary() + " version --features 2>&1").c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    ASSERT_EQ(pclose(p), 0) << out;
    const size_t at = out.find("capture variant: ");
    ASSERT_NE(at, std::string::npos) << out;
    want = out.substr(at + 17, out.find(' ', at + 17) - (at + 17));
  }
  ASSERT_TRUE(want == "modern" || want == "compat") << want;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port));
  TestClient c;
  ASSERT_TRUE(c.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(c.Exchange(300));
  c.Close();
  server.Stop();
  auto conns = StopAndRead(*cap);
  EXPECT_NE(cap->err().find(", " + want + " variant)"), std::string::npos) << cap->err();
  ASSERT_EQ(conns.size(), 1u);
  EXPECT_TRUE(conns.begin()->second.in == c.sent());
}

// A full connection table: the connection that finds no room is not traced, and it is counted
// once, however many syscalls it makes afterwards (the decision is cached, docs/capture.md).
TEST_F(CaptureE2E, FullConnectionTableCountsEachUntracedConnectionOnce) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port), {"--conns-max", "2"});
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 3; ++i) {
    auto cl = std::make_unique<TestClient>();
    ASSERT_TRUE(cl->Connect(ns_->cli(), ns_->srv_v4(), port));
    ASSERT_TRUE(cl->Exchange(100));  // the server side is decided at its first read
    clients.push_back(std::move(cl));
  }
  for (int round = 0; round < 10; ++round)
    for (auto& cl : clients) ASSERT_TRUE(cl->Exchange(size_t(200 + round)));
  for (auto& cl : clients) cl->Close();
  server.Stop();
  auto conns = StopAndRead(*cap);
  EXPECT_EQ(conns.size(), 2u);
  EXPECT_NE(cap->err().find(" 1 connections not traced: the kernel connection table was full"),
            std::string::npos)
      << cap->err();
}

TEST_F(CaptureE2E, UntracedTrafficProducesNoEvents) {
  if (!ns_) return;
  const uint16_t traced = NextPort(), other = NextPort();
  TestServer t1(ns_->srv(), ns_->srv_v4(), traced, IoMode::kReadWrite);
  TestServer t2(ns_->srv(), ns_->srv_v4(), other, IoMode::kReadWrite);
  ASSERT_TRUE(t1.Start());
  ASSERT_TRUE(t2.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(traced));
  TestClient a, b;
  ASSERT_TRUE(b.Connect(ns_->cli(), ns_->srv_v4(), other));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.Exchange(1000));
  ASSERT_TRUE(a.Connect(ns_->cli(), ns_->srv_v4(), traced));
  ASSERT_TRUE(a.Exchange(5));
  a.Close();
  b.Close();
  t1.Stop();
  t2.Stop();
  auto conns = StopAndRead(*cap);
  ASSERT_EQ(conns.size(), 1u);  // only the traced connection, nothing from the other port
  EXPECT_EQ(conns.begin()->second.info.local.port, traced);
  EXPECT_TRUE(conns.begin()->second.in == a.sent());
}

TEST_F(CaptureE2E, ClientSideTracesTheConnectingSocket) {
  if (!ns_) return;
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  auto cap = StartCapture(ns_->srv_v4() + ":" + std::to_string(port), {"--capture-side", "client"});
  TestClient cl;
  ASSERT_TRUE(cl.Connect(ns_->cli(), ns_->srv_v4(), port));
  ASSERT_TRUE(cl.Exchange(4321));
  cl.Close();
  server.Stop();
  auto conns = StopAndRead(*cap);
  ASSERT_EQ(conns.size(), 1u);
  const CapturedConn& c = conns.begin()->second;
  EXPECT_EQ(c.info.role, Role::kClient);
  EXPECT_EQ(c.info.remote.port, port);
  EXPECT_EQ(c.info.local.port, cl.port());
  EXPECT_TRUE(c.out == cl.sent());     // the client wrote the request
  EXPECT_TRUE(c.in == cl.received());  // and read the response
}

// The acceptance check: `infertap capture --summary` with curl as the client.
TEST_F(CaptureE2E, SummaryWithCurlReportsExactByteCounts) {
  if (!ns_) return;
  INFERTAP_NEED_TOOL("curl");
  const uint16_t port = NextPort();
  TestServer server(ns_->srv(), ns_->srv_v4(), port, IoMode::kReadWrite);
  ASSERT_TRUE(server.Start());
  CaptureProcess cap({"capture", "--target", ns_->srv_v4() + ":" + std::to_string(port),
                      "--summary", "--duration", "60"});
  std::string err;
  ASSERT_TRUE(cap.Start(&err)) << err;
  std::string out;
  ASSERT_EQ(Sh("ip netns exec " + ns_->cli() +
                   " curl -sS -o /dev/null -o /dev/null -w '%{size_request} "
                   "%{size_header} %{size_download}\\n' http://" +
                   ns_->srv_v4() + ":" + std::to_string(port) + "/65000 http://" + ns_->srv_v4() +
                   ":" + std::to_string(port) + "/12",
               &out),
            0)
      << out;
  server.Stop();
  ASSERT_EQ(cap.Stop(), 0) << cap.err();
  auto transcripts = server.transcripts();
  ASSERT_EQ(transcripts.size(), 1u);  // curl reuses the connection for both URLs
  const Transcript& t = transcripts.begin()->second;
  nlohmann::json line = nlohmann::json::parse(cap.out().substr(0, cap.out().find('\n')));
  EXPECT_EQ(line["role"], "server");
  EXPECT_EQ(line["local"], ns_->srv_v4() + ":" + std::to_string(port));
  EXPECT_EQ(line["remote"], ns_->cli_v4() + ":" + std::to_string(transcripts.begin()->first));
  EXPECT_EQ(line["bytes_in"].get<uint64_t>(), t.read.size());
  EXPECT_EQ(line["bytes_out"].get<uint64_t>(), t.written.size());
  EXPECT_EQ(line["gap_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(line["events"].get<uint64_t>(), 0u);
  // curl's own view: bytes it sent (request) equal bytes_in of the server-side connection.
  uint64_t req = 0, hdr = 0, dl = 0;
  {
    // One line per URL: add them up.
    std::istringstream lines(out);
    uint64_t a, b, c;
    int n = 0;
    while (lines >> a >> b >> c) {
      req += a;
      hdr += b;
      dl += c;
      ++n;
    }
    ASSERT_EQ(n, 2) << out;
  }
  EXPECT_EQ(line["bytes_in"].get<uint64_t>(), req);
  EXPECT_EQ(line["bytes_out"].get<uint64_t>(), hdr + dl);
  EXPECT_EQ(line["pid"].get<uint32_t>(), uint32_t(getpid()));
}

TEST(CaptureCli, WithoutPrivilegesExitsOneWithAMessage) {
  if (geteuid() != 0) {
    std::string out;
    EXPECT_EQ(Sh(InfertapBinary() + " capture --summary --duration 1", &out), 1);
    EXPECT_NE(out.find("CAP_BPF"), std::string::npos) << out;
    return;
  }
  // As root: drop to nobody with no capabilities for the child.
  INFERTAP_NEED_TOOL("setpriv");
  const std::string bin = InfertapBinaryForNobody();  // the build dir may be out of nobody's reach
  ASSERT_FALSE(bin.empty());
  std::string out;
  EXPECT_EQ(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all " + bin +
                   " capture --summary --duration 1",
               &out),
            1);
  EXPECT_NE(out.find("needs root or CAP_BPF+CAP_PERFMON"), std::string::npos) << out;
}

TEST(CaptureCli, BadFlagsAreUsageErrors) {
  std::string out;
  EXPECT_EQ(Sh(InfertapBinary() + " capture --target nonsense --summary", &out), 2);
  EXPECT_NE(out.find("invalid endpoint 'nonsense'"), std::string::npos) << out;
  EXPECT_EQ(Sh(InfertapBinary() + " capture --no-such-flag", &out), 2);
  EXPECT_EQ(Sh(InfertapBinary() + " capture --target :80", &out), 2);
  EXPECT_NE(out.find("give -o FILE and/or --summary"), std::string::npos) << out;
  EXPECT_EQ(Sh(InfertapBinary() + " replay /nonexistent.cap --summary", &out), 1);
  EXPECT_NE(out.find("cannot open /nonexistent.cap"), std::string::npos) << out;
  EXPECT_EQ(Sh(InfertapBinary() + " version", &out), 0);
  EXPECT_NE(out.find("infertap 0."), std::string::npos) << out;
}

}  // namespace
}  // namespace infertap::e2e
