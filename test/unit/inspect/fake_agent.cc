#include "fake_agent.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace infertap::testing {
namespace {

bool SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

std::string Chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return size + data + "\r\n";
}

}  // namespace

FakeAgent::FakeAgent() = default;

FakeAgent::~FakeAgent() {
  stopping_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  // The acceptor is gone, so workers_ no longer grows.
  for (std::thread& t : workers_) t.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

bool FakeAgent::Start(uint16_t port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  int one = 1;
  // A restarted fake agent takes its predecessor's port while old connections sit in TIME_WAIT.
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len = sizeof(addr);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 16) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return false;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void FakeAgent::AcceptLoop() {
  while (!stopping_) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FakeAgent::Serve(int fd) {
  std::string request;
  char buf[4096];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    request.append(buf, size_t(n));
  }
  std::string target;
  if (size_t sp = request.find(' '); sp != std::string::npos) {
    size_t end = request.find(' ', sp + 1);
    if (end != std::string::npos) target = request.substr(sp + 1, end - sp - 1);
  }
  std::string path = target.substr(0, target.find('?'));
  {
    std::lock_guard<std::mutex> lock(mu_);
    targets_.push_back(target);
  }
  if (path == "/v1/records") {
    ServeRecords(fd);
  } else if (path == "/v1/state") {
    ++state_requests_;
    std::string body;
    {
      std::lock_guard<std::mutex> lock(mu_);
      body = state_fn_ ? state_fn_() : state_;
    }
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  } else if (!target.empty()) {
    SendAll(fd,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
            "not found\n");
  }
  std::lock_guard<std::mutex> lock(mu_);
  fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
  close(fd);
}

void FakeAgent::ServeRecords(int fd) {
  int status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    status = records_status_;
  }
  if (status != 200) {
    SendAll(fd, "HTTP/1.1 " + std::to_string(status) +
                    " Nope\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n");
    return;
  }
  if (!SendAll(fd,
               "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
               "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n")) {
    return;
  }
  auto stream = std::make_shared<Stream>();
  std::unique_lock<std::mutex> lock(mu_);
  streams_.push_back(stream);
  cv_.notify_all();
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || stream->close || !stream->pending.empty(); });
    if (stopping_) break;
    std::string out;
    while (!stream->pending.empty()) {
      out += Chunk(stream->pending.front());
      stream->pending.pop_front();
    }
    bool closing = stream->close;
    if (closing) out += "0\r\n\r\n";
    lock.unlock();
    bool ok = SendAll(fd, out);
    lock.lock();
    if (!ok || closing) break;
  }
  streams_.erase(std::remove(streams_.begin(), streams_.end(), stream), streams_.end());
}

void FakeAgent::SetState(std::string json) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = std::move(json);
}

void FakeAgent::SetStateFunction(std::function<std::string()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  state_fn_ = std::move(fn);
}

void FakeAgent::SetRecordsStatus(int status) {
  std::lock_guard<std::mutex> lock(mu_);
  records_status_ = status;
}

void FakeAgent::Publish(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : streams_) s->pending.push_back(line + "\n");
  cv_.notify_all();
}

void FakeAgent::CloseStreams() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : streams_) s->close = true;
  cv_.notify_all();
}

bool FakeAgent::WaitForStreams(size_t n, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                      [&] { return streams_.size() >= n; });
}

size_t FakeAgent::open_streams() {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_.size();
}

std::vector<std::string> FakeAgent::targets() {
  std::lock_guard<std::mutex> lock(mu_);
  return targets_;
}

}  // namespace infertap::testing
