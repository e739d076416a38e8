#include "test/e2e/e2e_util.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "agent/capture/capture_file.hpp"

namespace infertap::e2e {

std::string BpfUnavailableReason() {
  if (geteuid() != 0) return "needs root for BPF and network namespaces";
  return "";
}

bool BpfRequired() {
  const char* req = std::getenv("INFERTAP_REQUIRE_BPF");
  return req && std::string(req) == "1";
}

std::string InfertapBinary() { return std::string(INFERTAP_BINARY_DIR) + "/infertap"; }

std::string InfertapBinaryForNobody() {
  // Removed with the test process.
  struct Copy {
    std::string dir, path;
    Copy() {
      char tmpl[] = "/tmp/infertap-nobody.XXXXXX";
      if (!mkdtemp(tmpl)) {
        std::fprintf(stderr, "cannot make a directory for the unprivileged binary: %s\n",
                     std::strerror(errno));
        return;
      }
      dir = tmpl;
      const std::string copy = dir + "/infertap";
      if (chmod(tmpl, 0755) != 0 ||
          Sh("install -m 0755 '" + InfertapBinary() + "' '" + copy + "'") != 0) {
        std::fprintf(stderr, "cannot copy %s to %s\n", InfertapBinary().c_str(), copy.c_str());
        return;
      }
      path = copy;
    }
    ~Copy() {
      if (!dir.empty()) Sh("rm -rf '" + dir + "'");
    }
  };
  static const Copy copy;
  return copy.path;
}

int Sh(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string buf;
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof(tmp), p)) > 0) buf.append(tmp, n);
  int rc = pclose(p);
  if (out) *out = buf;
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

NetnsPair::NetnsPair() {
  static std::atomic<int> counter{0};
  subnet_ = (getpid() + counter++) % 200 + 20;
  const std::string tag = std::to_string(getpid()) + "-" + std::to_string(subnet_);
  srv_ = "itsrv-" + tag;
  cli_ = "itcli-" + tag;
  const std::string vs = "its" + std::to_string(subnet_) + "x" + std::to_string(getpid() % 10000);
  const std::string vc = "itc" + std::to_string(subnet_) + "x" + std::to_string(getpid() % 10000);
  const std::string s = std::to_string(subnet_);
  const std::string script =
      "set -e; ip netns add " + srv_ + "; ip netns add " + cli_ + "; ip link add " + vs +
      " type veth peer name " + vc + "; ip link set " + vs + " netns " + srv_ + "; ip link set " +
      vc + " netns " + cli_ + "; ip -n " + srv_ + " addr add 10.231." + s + ".1/24 dev " + vs +
      "; ip -n " + cli_ + " addr add 10.231." + s + ".2/24 dev " + vc + "; ip -n " + srv_ +
      " addr add fd00:231:" + s + "::1/64 dev " + vs + " nodad" + "; ip -n " + cli_ +
      " addr add fd00:231:" + s + "::2/64 dev " + vc + " nodad" + "; ip -n " + srv_ + " link set " +
      vs + " up; ip -n " + cli_ + " link set " + vc + " up" + "; ip -n " + srv_ +
      " link set lo up; ip -n " + cli_ + " link set lo up";
  std::string out;
  ok_ = Sh(script, &out) == 0;
  if (!ok_) ADD_FAILURE() << "netns setup failed: " << out;
}

NetnsPair::~NetnsPair() { Sh("ip netns del " + srv_ + "; ip netns del " + cli_); }

bool EnterNetns(const std::string& name) {
  const std::string path = "/var/run/netns/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

CaptureProcess::~CaptureProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

bool CaptureProcess::Start(std::string* error, const std::string& ready_text) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC)) return false;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    std::vector<char*> argv;
    std::string bin = InfertapBinary();
    argv.push_back(bin.data());
    for (auto& a : args_) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  out_fd_ = out_pipe[0];
  err_fd_ = err_pipe[0];
  // Wait for "capturing ..." on stderr (BPF load + verification takes a second or two).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{err_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      char buf[4096];
      ssize_t n = read(err_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      err_.append(buf, size_t(n));
      if (err_.find(ready_text) != std::string::npos) return true;
    }
  }
  *error = "infertap did not report '" + ready_text + "': " + err_;
  return false;
}

int CaptureProcess::Stop(int sig) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  // Read both pipes until the child exits.
  for (;;) {
    pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    int r = poll(p, 2, 30000);
    if (r <= 0) break;
    bool open_any = false;
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents & (POLLIN | POLLHUP)) {
        char buf[65536];
        ssize_t n = read(p[i].fd, buf, sizeof(buf));
        if (n > 0) {
          (i == 0 ? out_ : err_).append(buf, size_t(n));
          open_any = true;
        }
      } else {
        open_any = true;
      }
    }
    if (!open_any) break;
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

namespace {
struct Rebuild : StreamSink {
  std::map<uint64_t, CapturedConn> conns;
  bool finishing = false;  // OnClose calls from FinishAll (end of file) are not real closes
  static void AddGap(std::string& s, uint64_t len) {
    // Merge adjacent gaps: how a hole is split into events is not part of the contract.
    if (!s.empty() && s.back() == '>') {
      size_t at = s.rfind("<gap ");
      if (at != std::string::npos && s.find('>', at) == s.size() - 1) {
        uint64_t prev = std::stoull(s.substr(at + 5));
        s.resize(at);
        len += prev;
      }
    }
    s += "<gap " + std::to_string(len) + ">";
  }
  void OnData(const ConnInfo& c, Direction d, uint64_t, std::span<const uint8_t> b) override {
    auto& s = d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out;
    s.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void OnGap(const ConnInfo& c, Direction d, uint64_t, uint64_t len) override {
    AddGap(d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out, len);
  }
  void OnClose(const ConnInfo& c, uint64_t) override {
    conns[c.conn_id].info = c;
    conns[c.conn_id].closed = !finishing;
  }
};
}  // namespace

std::map<uint64_t, CapturedConn> ReadCapture(const std::string& path, std::string* error) {
  Status st;
  auto reader = CaptureReader::Open(path, &st);
  if (!reader) {
    *error = st.message();
    return {};
  }
  Rebuild rb;
  ConnectionTracker tracker(rb);
  for (;;) {
    PollResult r = reader->Poll(tracker, 0);
    if (!r.status) {
      *error = r.status.message();
      return {};
    }
    if (r.at_end) break;
  }
  rb.finishing = true;
  tracker.FinishAll(tracker.newest_ts_ns());
  return std::move(rb.conns);
}

std::string TempFile(const std::string& name) {
  return "/tmp/infertap-e2e-" + std::to_string(getpid()) + "-" + name;
}

std::string Cgroup2Root() {
  for (const char* p : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs fs {};
    if (statfs(p, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return p;
  }
  return "";
}

TestCgroup::TestCgroup() {
  static std::atomic<int> n{0};
  const std::string root = Cgroup2Root();
  if (root.empty()) return;
  path_ = root + "/infertap-e2e-" + std::to_string(getpid()) + "-" + std::to_string(++n);
  if (mkdir(path_.c_str(), 0755) != 0) path_.clear();
}

TestCgroup::~TestCgroup() {
  if (path_.empty()) return;
  for (int i = 0; i < 100; ++i) {
    const std::vector<pid_t> pids = Pids();
    if (pids.empty() && rmdir(path_.c_str()) == 0) return;
    for (pid_t p : pids) kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::fprintf(stderr, "could not remove test cgroup %s\n", path_.c_str());
}

std::vector<pid_t> TestCgroup::Pids() const {
  std::vector<pid_t> out;
  std::ifstream in(path_ + "/cgroup.procs");
  pid_t p;
  while (in >> p) out.push_back(p);
  return out;
}

std::vector<std::string> TestCgroup::Wrap(const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"/bin/sh", "-c",
                                  "echo $$ > " + path_ + "/cgroup.procs && exec \"$@\"", "sh"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace infertap::e2e
