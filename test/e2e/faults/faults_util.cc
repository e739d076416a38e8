#include "test/e2e/faults/faults_util.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "test/e2e/agent_e2e_util.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e::faults {

int InNetnsThread(const std::string& ns, const std::function<int()>& fn) {
  int result = -1;
  std::thread t([&] {
    if (EnterNetns(ns)) result = fn();
  });
  t.join();
  return result;
}

namespace {

bool FillAddr(const std::string& ip, int port, sockaddr_in* a) {
  std::memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(port));
  return inet_pton(AF_INET, ip.c_str(), &a->sin_addr) == 1;
}

}  // namespace

int ConnectIn(const std::string& ns, const std::string& ip, int port) {
  return InNetnsThread(ns, [&] {
    sockaddr_in a;
    if (!FillAddr(ip, port, &a)) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  });
}

int ListenIn(const std::string& ns, const std::string& ip, int port) {
  return InNetnsThread(ns, [&] {
    sockaddr_in a;
    if (!FillAddr(ip, port, &a)) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 128) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  });
}

bool SendAll(int fd, const std::string& data, size_t piece) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, std::min(piece, data.size() - off), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

RawServer::RawServer(const std::string& ns, const std::string& ip, int port) {
  listen_fd_ = ListenIn(ns, ip, port);
  if (listen_fd_ >= 0) thread_ = std::thread([this] { Loop(); });
}

RawServer::~RawServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void RawServer::SetHandler(Handler h) {
  std::lock_guard lock(mu_);
  handler_ = std::move(h);
}

void RawServer::Loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Handler h;
    {
      std::lock_guard lock(mu_);
      h = handler_;
    }
    if (h) h(fd);
    close(fd);
    ++handled_;
  }
}

std::string ReadAll(int fd, size_t limit) {
  std::string out;
  char buf[65536];
  while (out.size() < limit) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool ReadContentLengthResponse(int fd, int* status, std::string* body) {
  std::string head;
  char c;
  while (head.size() < 65536 && head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = recv(fd, &c, 1, 0);
    if (n <= 0) return false;
    head.push_back(c);
  }
  if (head.compare(0, 9, "HTTP/1.1 ") != 0) return false;
  *status = std::atoi(head.c_str() + 9);
  std::string lower = head;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  size_t at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return false;
  size_t len = std::strtoul(lower.c_str() + at + 17, nullptr, 10);
  body->assign(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, body->data() + got, len - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

BpfObjects BpfObjectsOf(pid_t pid) {
  BpfObjects o;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
  DIR* d = opendir(dir.c_str());
  if (!d) return o;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name);
    std::string line;
    while (std::getline(in, line)) {
      auto id_of = [&](const char* key, std::set<uint32_t>* into) {
        const size_t k = std::strlen(key);
        if (line.compare(0, k, key) == 0) {
          into->insert(static_cast<uint32_t>(std::strtoul(line.c_str() + k, nullptr, 10)));
        }
      };
      id_of("prog_id:", &o.progs);
      id_of("map_id:", &o.maps);
      id_of("link_id:", &o.links);
    }
  }
  closedir(d);
  return o;
}

namespace {

bool BpftoolShows(const std::string& kind, uint32_t id) {
  std::string out;
  return Sh("bpftool -j " + kind + " show id " + std::to_string(id) + " 2>/dev/null", &out) == 0 &&
         out.find("\"id\"") != std::string::npos;
}

}  // namespace

bool BpfProgExists(uint32_t id) { return BpftoolShows("prog", id); }
bool BpfMapExists(uint32_t id) { return BpftoolShows("map", id); }
bool BpfLinkExists(uint32_t id) { return BpftoolShows("link", id); }

uint32_t FindMap(const BpfObjects& objects, const std::string& name) {
  for (uint32_t id : objects.maps) {
    std::string out;
    if (Sh("bpftool -j map show id " + std::to_string(id) + " 2>/dev/null", &out) != 0) continue;
    Json j = Json::parse(out, nullptr, false);
    if (j.is_object() && j.value("name", "") == name) return id;
  }
  return 0;
}

long MapEntries(uint32_t id) {
  std::string out;
  if (Sh("bpftool -j map dump id " + std::to_string(id) + " 2>/dev/null", &out) != 0) return -1;
  Json j = Json::parse(out, nullptr, false);
  return j.is_array() ? static_cast<long>(j.size()) : -1;
}

namespace {

uint64_t StatusKb(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0) {
      return std::strtoull(line.c_str() + key.size(), nullptr, 10) * 1024;
    }
  }
  return 0;
}

}  // namespace

uint64_t RssBytes(pid_t pid) { return StatusKb(pid, "VmRSS:"); }
uint64_t PeakRssBytes(pid_t pid) { return StatusKb(pid, "VmHWM:"); }

std::vector<Json> ReadJsonLines(const std::string& path, uint64_t* dropped) {
  std::vector<Json> out;
  std::ifstream in(path);
  std::string line;
  if (dropped) *dropped = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.compare(0, 10, ": dropped ") == 0 && dropped) {
      *dropped += std::strtoull(line.c_str() + 10, nullptr, 10);
      continue;
    }
    if (line.empty() || line[0] != '{') continue;
    Json j = Json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

double SumSamples(const std::string& exposition, const std::string& name, const std::string& label,
                  const std::string& value) {
  double sum = 0;
  for (const PromSample& s : ParsePromText(exposition)) {
    if (s.name != name) continue;
    if (!label.empty()) {
      auto it = s.labels.find(label);
      if (it == s.labels.end() || it->second != value) continue;
    }
    sum += s.value;
  }
  return sum;
}

std::string JudgeRecord(const Json& r, const Json& t) {
  std::ostringstream why;
  const std::string err = r.value("error_code", "");
  const int status = r.value("status", -1);
  const uint64_t req = r.value("request_bytes", uint64_t{0});
  const uint64_t resp = r.value("response_bytes", uint64_t{0});
  const int64_t chunks = r.value("chunks", int64_t{0});
  const int64_t t_status = t.value("status", 0);
  const uint64_t t_req = t.value("request_bytes", uint64_t{0});
  const uint64_t t_resp = t.value("response_bytes", uint64_t{0});
  const int64_t t_chunks = t.value("content_events", int64_t{0});
  const int64_t t_in = t.value("usage_prompt_tokens", int64_t{-1});
  const int64_t t_out = t.value("usage_completion_tokens", int64_t{-1});
  auto tokens_ok = [&](const char* field, int64_t want, bool must) {
    if (!r.contains(field)) return !must || want < 0;
    return r[field].get<int64_t>() == want;
  };
  if (err.empty()) {
    const bool ok_truth = t.value("outcome", "") == "ok";
    if (!ok_truth) why << "complete record for a request the client saw cut off; ";
    if (status != t_status) why << "status " << status << " != " << t_status << "; ";
    if (req != t_req) why << "request_bytes " << req << " != " << t_req << "; ";
    if (resp != t_resp) why << "response_bytes " << resp << " != " << t_resp << "; ";
    if (chunks != t_chunks) why << "chunks " << chunks << " != " << t_chunks << "; ";
    if (!tokens_ok("input_tokens", t_in, true)) why << "input_tokens differ; ";
    if (!tokens_ok("output_tokens", t_out, true)) why << "output_tokens differ; ";
    return why.str();
  }
  if (err != "Incomplete") return "error_code " + err + " (only \"\" or Incomplete are possible)";
  if (status != 0 && status != t_status) why << "status " << status << " of another exchange; ";
  if (req > t_req) why << "request_bytes " << req << " > " << t_req << "; ";
  if (resp > t_resp) why << "response_bytes " << resp << " > " << t_resp << "; ";
  if (chunks > t_chunks) why << "chunks " << chunks << " > " << t_chunks << "; ";
  if (!tokens_ok("input_tokens", t_in, false)) why << "input_tokens of another exchange; ";
  if (!tokens_ok("output_tokens", t_out, false)) why << "output_tokens of another exchange; ";
  return why.str().empty() ? "incomplete" : why.str();
}

}  // namespace infertap::e2e::faults
