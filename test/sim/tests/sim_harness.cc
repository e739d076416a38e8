#include "sim_harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace infertap::sim::testing {

SimProcess::SimProcess(std::vector<std::string> args) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::string bin = std::string(INFERTAP_BINARY_DIR) + "/infertap-sim";
  bool has_listen = false;
  for (const auto& a : args) has_listen = has_listen || a == "--listen";
  if (!has_listen) {
    args.insert(args.begin(), {"--listen", "127.0.0.1:0"});
  }
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], 1);
    std::vector<char*> argv;
    argv.push_back(bin.data());
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  // Wait (bounded) for the readiness line.
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  line_ = got.substr(0, got.find('\n'));
  const std::string key = "listening on ";
  size_t at = line_.find(key);
  if (at == std::string::npos) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error("infertap-sim did not start: '" + got + "'");
  }
  std::string addr = line_.substr(at + key.size());
  addr = addr.substr(0, addr.find(' '));
  port_ = std::stoi(addr.substr(addr.rfind(':') + 1));
}

SimProcess::~SimProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::string RawResponse::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return {};
}

std::vector<std::string> RawResponse::HeaderNames() const {
  std::vector<std::string> out;
  for (const auto& h : headers) out.push_back(h.first);
  return out;
}

Client::Client(int port, bool ipv6) {
  if (ipv6) {
    fd_ = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, "::1", &a.sin6_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect6");
  } else {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect");
  }
}

Client::~Client() {
  if (fd_ >= 0) close(fd_);
}

void Client::Send(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send failed");
    data.remove_prefix(static_cast<size_t>(n));
  }
}

bool Client::Fill(int timeout_ms) {
  if (eof_) return false;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[65536];
  ssize_t n = recv(fd_, buf, sizeof buf, 0);
  if (n > 0) {
    buf_.append(buf, static_cast<size_t>(n));
    return true;
  }
  error_ = n == 0 ? 0 : errno;
  eof_ = true;
  return false;
}

namespace {

// Tries to parse one full response from the front of `buf`. Returns bytes used, or 0 if
// incomplete (with `r` holding what was parsed so far).
size_t TryParse(const std::string& buf, RawResponse* r) {
  *r = RawResponse();
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return 0;
  r->head = buf.substr(0, end);
  r->status = std::stoi(r->head.substr(9, 3));
  size_t pos = r->head.find("\r\n");
  size_t content_length = 0;
  bool has_length = false;
  while (pos != std::string::npos) {
    size_t eol = r->head.find("\r\n", pos + 2);
    std::string line =
        r->head.substr(pos + 2, eol == std::string::npos ? std::string::npos : eol - pos - 2);
    pos = eol;
    size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    std::string value = line.substr(colon + 2);
    r->headers.emplace_back(name, value);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == "content-length") {
      content_length = std::stoul(value);
      has_length = true;
    }
    if (name == "transfer-encoding" && value == "chunked") r->chunked = true;
  }
  size_t p = end + 4;
  if (r->status < 200) {
    r->complete = true;
    r->raw = buf.substr(0, p);
    return p;
  }
  if (!r->chunked) {
    if (!has_length) content_length = buf.size() - p;  // until close; caller decides
    if (buf.size() - p < content_length) return 0;
    r->body = buf.substr(p, content_length);
    r->complete = true;
    r->raw = buf.substr(0, p + content_length);
    return p + content_length;
  }
  for (;;) {
    size_t eol = buf.find("\r\n", p);
    if (eol == std::string::npos) return 0;
    std::string size_line = buf.substr(p, eol - p);
    size_t n = std::stoul(size_line, nullptr, 16);
    if (buf.size() < eol + 2 + n + 2) return 0;
    if (n == 0) {
      r->complete = true;
      r->raw = buf.substr(0, eol + 4);
      return eol + 4;
    }
    r->chunk_size_lines.push_back(size_line);
    r->chunks.push_back(buf.substr(eol + 2, n));
    r->body += r->chunks.back();
    p = eol + 2 + n + 2;
  }
}

}  // namespace

RawResponse Client::Read(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  RawResponse r;
  for (;;) {
    size_t used = TryParse(buf_, &r);
    if (used > 0) {
      buf_.erase(0, used);
      return r;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0 || !Fill(static_cast<int>(left))) break;
  }
  r.raw = buf_;
  r.complete = false;
  return r;
}

int Client::WaitClosed(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!eof_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return -1;
    Fill(static_cast<int>(left));
  }
  return error_;
}

size_t Client::BytesWithin(int ms) {
  size_t before = buf_.size();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0 || !Fill(static_cast<int>(left))) break;
  }
  return buf_.size() - before;
}

std::string Post(std::string_view path, std::string_view body,
                 const std::vector<std::string>& headers) {
  std::string r =
      "POST " + std::string(path) + " HTTP/1.1\r\nhost: 127.0.0.1\r\n" +
      "content-type: application/json\r\ncontent-length: " + std::to_string(body.size()) + "\r\n";
  for (const auto& h : headers) r += h + "\r\n";
  return r + "\r\n" + std::string(body);
}

std::string Get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
}

std::string DataOf(std::string_view event) {
  if (event.substr(0, 6) != "data: " || event.size() < 8) return {};
  return std::string(event.substr(6, event.size() - 8));
}

std::string ReadFixture(std::string_view name) {
  std::ifstream f(std::string(INFERTAP_FIXTURES_DIR) + "/wire/" + std::string(name),
                  std::ios::binary);
  if (!f) throw std::runtime_error("missing fixture " + std::string(name));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> FixtureEvents(std::string_view name) {
  std::vector<std::string> out;
  std::stringstream ss(ReadFixture(name));
  std::string line;
  while (std::getline(ss, line)) {
    if (line.rfind("data: ", 0) == 0) out.push_back(line + "\n\n");
  }
  return out;
}

std::string ReplaceAll(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::string JsonField(std::string_view json, std::string_view key) {
  std::string k = "\"" + std::string(key) + "\":";
  size_t at = json.find(k);
  if (at == std::string_view::npos) return {};
  at += k.size();
  if (at < json.size() && json[at] == '"') {
    size_t end = json.find('"', at + 1);
    return std::string(json.substr(at + 1, end - at - 1));
  }
  size_t end = json.find_first_of(",}", at);
  return std::string(json.substr(at, end - at));
}

}  // namespace infertap::sim::testing
