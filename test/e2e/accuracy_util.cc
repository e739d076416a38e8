#include "test/e2e/accuracy_util.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace infertap::e2e {

TempDir::TempDir(const std::string& tag) {
  std::string tmpl = "/tmp/infertap-" + tag + "-XXXXXX";
  if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  const char* keep = std::getenv("INFERTAP_KEEP_TMP");
  keep_ = keep != nullptr && std::string(keep) == "1";
}

TempDir::~TempDir() {
  if (path_.empty() || keep_) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool Child::Start(const std::vector<std::string>& argv, const std::string& netns,
                  const std::string& stdout_path, const std::string& stderr_path,
                  std::string* error) {
  // Everything that allocates happens before fork: the test is multi-threaded, and only
  // async-signal-safe calls are allowed in the child.
  int ns_fd = -1;
  if (!netns.empty()) {
    ns_fd = open(("/var/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns_fd < 0) {
      *error = "open netns " + netns + ": " + std::strerror(errno);
      return false;
    }
  }
  const int out_fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (out_fd < 0 || err_fd < 0 || args.size() < 2) {
    *error = "cannot open output files for " + (argv.empty() ? "?" : argv[0]);
    if (ns_fd >= 0) close(ns_fd);
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
    return false;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    // Own group, so that cleanup can reach processes this child forks (nginx workers) without
    // touching anything else on the machine.
    setpgid(0, 0);
    if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNET) != 0) _exit(126);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (ns_fd >= 0) close(ns_fd);
  close(out_fd);
  close(err_fd);
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  // Also from the parent: a Stop() right after Start() must find the group.
  setpgid(pid, pid);
  pid_ = pid;
  return true;
}

bool Child::Wait(std::chrono::milliseconds timeout, int* status) {
  if (pid_ <= 0) return true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      if (status) *status = st;
      // Forked helpers of an exited process (none expected) go with it.
      kill(-pid_, SIGKILL);
      pid_ = -1;
      return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Child::Stop(int sig, std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int status = -1;
  if (Wait(grace, &status)) return status;
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  Wait(std::chrono::seconds(5), &status);
  return status;
}

bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string ReadFileOr(const std::string& path, const std::string& fallback) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fallback;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  return bool(out);
}

uint16_t FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

std::string Substitute(std::string text, const std::map<std::string, std::string>& vars) {
  for (const auto& [key, value] : vars) {
    const std::string pat = "@" + key + "@";
    for (size_t at = text.find(pat); at != std::string::npos;
         at = text.find(pat, at + value.size())) {
      text.replace(at, pat.size(), value);
    }
  }
  return text;
}

SseSummary SummarizeSse(const std::string& body) {
  SseSummary s;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data:", 0) != 0) continue;
    std::string data = line.substr(5);
    if (!data.empty() && data[0] == ' ') data.erase(0, 1);
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    const auto j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      ++s.unparsable;
      continue;
    }
    if (j.contains("error")) s.error_event = true;
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const auto& c = j["choices"][0];
      const auto* content = c.contains("delta") && c["delta"].contains("content")
                                ? &c["delta"]["content"]
                                : (c.contains("text") ? &c["text"] : nullptr);
      if (content && content->is_string() && !content->get<std::string>().empty())
        ++s.content_events;
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const auto& u = j["usage"];
      if (u.contains("prompt_tokens")) s.prompt_tokens = u["prompt_tokens"].get<uint64_t>();
      if (u.contains("completion_tokens"))
        s.completion_tokens = u["completion_tokens"].get<uint64_t>();
    }
  }
  return s;
}

std::string SampleKey(const std::string& name, std::map<std::string, std::string> labels) {
  std::string key = name + "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) key += ",";
    first = false;
    key += k + "=\"" + v + "\"";
  }
  return key + "}";
}

std::map<std::string, double> ParsePrometheus(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string name;
    std::map<std::string, std::string> labels;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string k, v;
        while (i < line.size() && line[i] != '=') k += line[i++];
        i += 2;  // ="
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) ++i;  // our label values need no escapes
          v += line[i++];
        }
        ++i;  // closing quote
        if (i < line.size() && line[i] == ',') ++i;
        labels[k] = v;
      }
      ++i;  // }
    }
    while (i < line.size() && line[i] == ' ') ++i;
    const std::string value = line.substr(i, line.find(' ', i) - i);
    out[SampleKey(name, labels)] = std::strtod(value.c_str(), nullptr);
  }
  return out;
}

}  // namespace infertap::e2e
