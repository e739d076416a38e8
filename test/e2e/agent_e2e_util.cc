#include "test/e2e/agent_e2e_util.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e {

ChildProcess::~ChildProcess() {
  if (pid_ > 0) Stop(SIGKILL, std::chrono::milliseconds(2000));
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

bool ChildProcess::Start(std::string* error) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    *error = "pipe2 failed";
    return false;
  }
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    *error = "pipe2 failed";
    return false;
  }
  // Build argv before fork: only async-signal-safe calls are allowed in the child.
  std::vector<char*> argv;
  for (auto& a : argv_) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) {
    *error = "fork failed";
    return false;
  }
  if (pid_ == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  reader_ = std::thread([this] { Drain(); });
  return true;
}

void ChildProcess::Drain() {
  pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[16384];
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        p[i].fd = -1;  // poll ignores negative fds
        --open_fds;
        continue;
      }
      std::lock_guard lock(mu_);
      (i == 0 ? out_ : err_).append(buf, size_t(n));
      cv_.notify_all();
    }
  }
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

bool ChildProcess::WaitForOutput(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return out_.find(needle) != std::string::npos || err_.find(needle) != std::string::npos || eof_;
  }) && (out_.find(needle) != std::string::npos || err_.find(needle) != std::string::npos);
}

bool ChildProcess::Exited() {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return true;
  }
  return false;
}

int ChildProcess::Stop(int sig, std::chrono::milliseconds grace) {
  if (pid_ <= 0) return status_;
  kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (!Exited()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The pipes reach EOF once the child is gone; join so out()/err() are complete.
  if (reader_.joinable()) reader_.join();
  return status_;
}

std::string ChildProcess::out() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string ChildProcess::err() const {
  std::lock_guard lock(mu_);
  return err_;
}

TempDir::TempDir() {
  std::string tmpl = "/tmp/infertap-agent-e2e-XXXXXX";
  if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  return bool(out);
}

int CurlIn(const std::string& ns, const std::string& url, const std::string& extra,
           std::string* body, int* http_code) {
  // The status goes on its own last line so the body can be anything.
  std::string out;
  int rc = Sh("ip netns exec " + ShellQuote(ns) + " curl -s --max-time 5 " + extra +
                  " -w '\\n%{http_code}' " + ShellQuote(url),
              &out);
  size_t nl = out.rfind('\n');
  if (http_code) *http_code = nl == std::string::npos ? 0 : std::atoi(out.c_str() + nl + 1);
  if (body) *body = nl == std::string::npos ? out : out.substr(0, nl);
  return rc;
}

namespace {

// Label block `{a="x",b="y\"z"}` starting at s[i] == '{'; leaves i after the closing brace.
bool ParseLabels(const std::string& s, size_t& i, std::map<std::string, std::string>* labels) {
  ++i;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ',' || s[i] == ' ')) ++i;
    if (i < s.size() && s[i] == '}') {
      ++i;
      return true;
    }
    size_t eq = s.find('=', i);
    if (eq == std::string::npos || eq + 1 >= s.size() || s[eq + 1] != '"') return false;
    std::string key = s.substr(i, eq - i);
    std::string value;
    i = eq + 2;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
        value += s[i] == 'n' ? '\n' : s[i];
      } else {
        value += s[i];
      }
      ++i;
    }
    if (i >= s.size()) return false;
    ++i;  // closing quote
    (*labels)[key] = value;
  }
  return false;
}

}  // namespace

std::vector<PromSample> ParsePromText(const std::string& text) {
  std::vector<PromSample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{' && !ParseLabels(line, i, &s.labels)) continue;
    while (i < line.size() && line[i] == ' ') ++i;
    size_t end = line.find(' ', i);
    std::string value = line.substr(i, end == std::string::npos ? std::string::npos : end - i);
    char* stop = nullptr;
    s.value = std::strtod(value.c_str(), &stop);
    if (value.empty() || stop != value.c_str() + value.size()) continue;
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> FindSample(const std::vector<PromSample>& samples, const std::string& name,
                                 const std::map<std::string, std::string>& labels) {
  std::optional<double> found;
  for (const PromSample& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    if (found) return std::nullopt;
    found = s.value;
  }
  return found;
}

}  // namespace infertap::e2e
