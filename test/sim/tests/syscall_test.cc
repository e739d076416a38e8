// One send syscall per SSE event: what a syscall tracer sees per token (docs/testing.md, docs/performance.md). Checked
// with strace attached to the running simulator; skipped where ptrace is not allowed.
#include "test/common/require.hpp"
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "sim_harness.hpp"

namespace infertap::sim::testing {
namespace {

TEST(SimSyscalls, OneSendPerEvent) {
  INFERTAP_NEED_TOOL("strace");
  SimProcess sim;
  char path[] = "/tmp/infertap-sim-strace-XXXXXX";
  int tmp = mkstemp(path);
  ASSERT_GE(tmp, 0);
  close(tmp);
  int err[2];
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  std::string pid = std::to_string(sim.pid());
  pid_t tracer = fork();
  if (tracer == 0) {
    dup2(err[1], 2);
    execl("/usr/bin/strace", "strace", "-f", "-e", "trace=sendto,write,writev,sendmsg", "-o", path,
          "-p", pid.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(err[1]);
  // strace reports "Process N attached" on stderr once it is in place.
  std::string msg;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (msg.find("attached") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{err[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    ssize_t n = read(err[0], buf, sizeof buf);
    if (n <= 0) break;
    msg.append(buf, static_cast<size_t>(n));
  }
  close(err[0]);
  if (msg.find("attached") == std::string::npos) {
    kill(tracer, SIGKILL);
    waitpid(tracer, nullptr, 0);
    unlink(path);
    INFERTAP_CANNOT_RUN("cannot ptrace here: " + msg);
  }
  Client c(sim.port());
  c.Send(Post("/v1/chat/completions",
              "{\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
              {"x-sim-tokens: 4"}));
  RawResponse r = c.Read();
  ASSERT_TRUE(r.complete);
  kill(tracer, SIGTERM);  // detaches from the simulator, which keeps running
  waitpid(tracer, nullptr, 0);
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  unlink(path);
  std::string trace = ss.str();
  int sends = 0;
  std::istringstream lines(trace);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("sendto(") != std::string::npos && line.find("= -1") == std::string::npos) {
      ++sends;
    }
    EXPECT_EQ(line.find("writev("), std::string::npos) << line;
  }
  // head + role + 4 tokens + finish + usage + [DONE] + terminal chunk
  EXPECT_EQ(r.chunks.size(), 8u);
  EXPECT_EQ(sends, 1 + 8 + 1) << trace;
}

}  // namespace
}  // namespace infertap::sim::testing
