// Helpers for the root end-to-end tests: network namespaces, the infertap process, and reading
// a capture file back into per-connection streams.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "agent/capture/tracker.hpp"

namespace infertap::e2e {

// Why BPF tests cannot run here ("" when they can: root).
std::string BpfUnavailableReason();
// INFERTAP_REQUIRE_BPF=1 (CI): a BPF test that cannot run is a failure, never a skip.
bool BpfRequired();

// In a test body or SetUp: skip when BPF is impossible here, fail instead when it is required.
#define INFERTAP_REQUIRE_BPF_OR_SKIP()                                                  \
  do {                                                                                  \
    const std::string why_ = ::infertap::e2e::BpfUnavailableReason();                   \
    if (!why_.empty()) {                                                                \
      if (::infertap::e2e::BpfRequired()) FAIL() << "INFERTAP_REQUIRE_BPF=1: " << why_; \
      GTEST_SKIP() << why_;                                                             \
    }                                                                                   \
  } while (0)

std::string InfertapBinary();

// A copy of the infertap binary that an unprivileged user (nobody) can execute: the build
// directory may sit where nobody cannot reach (a clone under /root). Made once per process in a
// fresh 0755 directory under /tmp; "" (and a message on stderr) when it cannot be made.
std::string InfertapBinaryForNobody();

// Two network namespaces joined by a veth pair: "srv" (10.231.N.1, fd00:231:N::1) and "cli"
// (10.231.N.2, fd00:231:N::2). Removed in the destructor.
class NetnsPair {
 public:
  NetnsPair();
  ~NetnsPair();
  bool ok() const { return ok_; }
  const std::string& srv() const { return srv_; }
  const std::string& cli() const { return cli_; }
  std::string srv_v4() const { return "10.231." + std::to_string(subnet_) + ".1"; }
  std::string cli_v4() const { return "10.231." + std::to_string(subnet_) + ".2"; }
  std::string srv_v6() const { return "fd00:231:" + std::to_string(subnet_) + "::1"; }
  std::string cli_v6() const { return "fd00:231:" + std::to_string(subnet_) + "::2"; }

 private:
  std::string srv_, cli_;
  int subnet_ = 0;
  bool ok_ = false;
};

// Moves the calling thread into the named network namespace (sockets it creates live there).
bool EnterNetns(const std::string& name);

// Runs a shell command, returns its exit status (and stdout in *out when given).
int Sh(const std::string& cmd, std::string* out = nullptr);

// `infertap capture ...` as a child process; Start() returns once it reports it is capturing.
class CaptureProcess {
 public:
  explicit CaptureProcess(std::vector<std::string> args) : args_(std::move(args)) {}
  ~CaptureProcess();
  // Returns once stderr contains `ready_text` (default: capture's "capturing ").
  bool Start(std::string* error, const std::string& ready_text = "capturing ");
  // Sends `sig` (SIGINT by default), waits. Returns the exit status; stdout and stderr are
  // available afterwards.
  int Stop(int sig = 2);
  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  std::vector<std::string> args_;
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
};

// A connection's rebuilt streams. Gaps appear as "<gap N>" (adjacent gaps merged).
struct CapturedConn {
  ConnInfo info;
  std::string in, out;
  bool closed = false;  // the kernel reported the close (not just the end of the capture)
};

// Replays a capture file through the tracker. Key: connection id.
std::map<uint64_t, CapturedConn> ReadCapture(const std::string& path, std::string* error);

std::string TempFile(const std::string& name);

// The cgroup v2 hierarchy: /sys/fs/cgroup/unified on a hybrid layout, /sys/fs/cgroup on a
// unified one; "" when neither is mounted.
std::string Cgroup2Root();

// A fresh cgroup v2 directory under Cgroup2Root() for one test (the cgroup backend's tests),
// removed by the destructor: whatever still runs in it — only processes the test started there —
// is killed first, since a populated cgroup cannot be removed. path() is "" when it could not
// be made.
class TestCgroup {
 public:
  TestCgroup();
  ~TestCgroup();
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;
  const std::string& path() const { return path_; }
  std::vector<pid_t> Pids() const;
  // argv prefixed so that the process joins this cgroup before it execs argv (its sockets are
  // then the cgroup's: a socket keeps its creator's cgroup).
  std::vector<std::string> Wrap(const std::vector<std::string>& argv) const;

 private:
  std::string path_;
};

}  // namespace infertap::e2e
