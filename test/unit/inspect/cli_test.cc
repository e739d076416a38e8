// `top` and `trace` as a user runs them: the real subcommands (through the test driver that
// parses like agent/cli/main.cc) in a child process, against the in-test fake agent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "fake_agent.hpp"

namespace infertap::cli {
namespace {

using infertap::testing::FakeAgent;
using Clock = std::chrono::steady_clock;

const char* const kExampleState =
    R"({"node":"n1","version":"0.1.0","uptime_s":12.5,
 "pools":[{"name":"default","ready_pods":1,"average_queue_size":0.5,"average_kv_cache_utilization":0.12,"average_running_requests":3,
           "pods":[{"name":"127.0.0.1:8000","address":"127.0.0.1:8000","fresh":true,"queue":0.5,"running":3,"kv_cache_utilization":0.12,"scrape_errors":0}]}],
 "models":[{"pool":"default","model_name":"llama","target_model_name":"meta-llama/Llama-3.1-8B-Instruct","in_flight":2}],
 "endpoints":["127.0.0.1:8000"],
 "connections":4,
 "counters":{"capture_events":123,"capture_lost_events":0,"parse_errors":0,"requests":42,"records":40}})";

const char* const kRecord =
    R"({"ts":"2025-01-02T18:04:05.123456789Z","node":"n1","pool":"default","namespace":"",)"
    R"("pod":"p","role":"server","model_name":"llama","target_model_name":"meta/Llama",)"
    R"("method":"POST","path":"/v1/chat/completions","status":200,"stream":true,)"
    R"("error_code":"","request_bytes":10,"response_bytes":20,"input_tokens":40,)"
    R"("output_tokens":200,"duration_s":1.5,"ttft_s":0.08,"tpot_s":0.007,"chunks":200})";

struct Result {
  int exit_code = -1;  // -1: killed on timeout
  std::string out;
  std::string err;
  double seconds = 0;
};

// The driver in a child process with stdout and stderr on pipes (so stdout is not a terminal).
class Cli {
 public:
  explicit Cli(std::vector<std::string> args) {
    int out[2];
    int err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) std::abort();
    start_ = Clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, STDIN_FILENO);
      setenv("TZ", "UTC", 1);
      std::vector<char*> argv;
      std::string bin = INFERTAP_TOP_CLI;
      argv.push_back(bin.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~Cli() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_fd_);
    close(err_fd_);
  }
  pid_t pid() const { return pid_; }

  // Reads both pipes to their end (the child exiting), killing the child after `timeout_s`.
  Result Wait(double timeout_s = 10) {
    Result r;
    auto deadline = start_ + std::chrono::duration<double>(timeout_s);
    bool out_open = true;
    bool err_open = true;
    while (out_open || err_open) {
      if (Clock::now() > deadline) {
        kill(pid_, SIGKILL);
        break;
      }
      pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      poll(fds, 2, 50);
      char buf[4096];
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          (i == 0 ? out_open : err_open) = false;
        } else {
          (i == 0 ? r.out : r.err).append(buf, size_t(n));
        }
      }
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    r.seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int out_fd_ = -1;
  int err_fd_ = -1;
  Clock::time_point start_;
};

std::string RefusingUrl() {
  FakeAgent gone;
  if (!gone.Start()) return "http://127.0.0.1:1";
  return gone.url();  // closed again when `gone` goes
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(TraceCli, PrintsFixedColumnLinesAndStopsAfterCount) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  Cli cli({"trace", "--agent", agent.url(), "--count", "2"});
  ASSERT_TRUE(agent.WaitForStreams(1, 5000));
  agent.Publish(kRecord);
  agent.Heartbeat();
  agent.Publish("this is not json");
  agent.Publish(
      R"({"ts":"2025-01-02T18:04:06Z","pool":"default","model_name":"llama",)"
      R"("status":503,"stream":false,"error_code":"ServiceUnavailable","duration_s":0.004})");
  agent.Publish(kRecord);  // past --count: not printed
  Result r = cli.Wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "18:04:05.123 default      llama                    200 stream  1.500s ttft  0.080s "
            "in     40 out    200 err -\n"
            "18:04:06.000 default      llama                    503 unary   0.004s ttft       - "
            "in      - out      - err ServiceUnavailable\n");
  EXPECT_NE(r.err.find("infertap trace: skipped a record: not valid JSON"), std::string::npos)
      << r.err;
}

TEST(TraceCli, JsonPrintsTheRecordLineUnchanged) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  Cli cli({"trace", "--agent", agent.url(), "--json", "--count", "1"});
  ASSERT_TRUE(agent.WaitForStreams(1, 5000));
  std::string odd = R"({ "pool" : "p",  "future_field": [1, 2], "model_name":"m" })";
  agent.Publish(odd);
  Result r = cli.Wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, odd + "\n");
}

TEST(TraceCli, DurationEndsAQuietTraceWithZero) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  Result r = Cli({"trace", "--agent", agent.url(), "--duration", "0.3"}).Wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_GE(r.seconds, 0.3);
  EXPECT_LT(r.seconds, 3);
}

TEST(TraceCli, SigintEndsWithZero) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  Cli cli({"trace", "--agent", agent.url()});
  ASSERT_TRUE(agent.WaitForStreams(1, 5000));
  kill(cli.pid(), SIGINT);
  Result r = cli.Wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(TraceCli, UnreachableAgentIsOneLineAndExitOne) {
  std::string url = RefusingUrl();
  Result r = Cli({"trace", "--agent", url}).Wait();
  EXPECT_EQ(r.exit_code, 1);
  std::string prefix = "infertap trace: cannot reach the agent at " + url + ": ";
  std::string suffix = " (is infertap run running? see --agent)\n";
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  ASSERT_GE(r.err.size(), suffix.size());
  EXPECT_EQ(r.err.substr(r.err.size() - suffix.size()), suffix);
  EXPECT_EQ(Lines(r.err).size(), 1u);
}

TEST(TraceCli, AgentGoingAwayMidTraceIsExitOne) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  Cli cli({"trace", "--agent", agent.url()});
  ASSERT_TRUE(agent.WaitForStreams(1, 5000));
  agent.CloseStreams();
  Result r = cli.Wait();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "infertap trace: lost the agent at " + agent.url() +
                       ": the agent closed the record stream\n");
}

TEST(TraceCli, UsageErrorsExitTwo) {
  EXPECT_EQ(Cli({"trace", "--agent", "ftp://x"}).Wait().exit_code, 2);
  EXPECT_EQ(Cli({"trace", "--count", "-1"}).Wait().exit_code, 2);
  EXPECT_EQ(Cli({"trace", "--bogus"}).Wait().exit_code, 2);
}

// Splits a table row into its whitespace-separated cells.
std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> cells;
  std::istringstream in(row);
  for (std::string c; in >> c;) cells.push_back(c);
  return cells;
}

TEST(TopCli, OnceCollectsOneIntervalAndPrintsAPlainFrame) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  agent.SetState(kExampleState);
  Cli cli({"top", "--agent", agent.url(), "--once", "--interval", "0.5"});
  ASSERT_TRUE(agent.WaitForStreams(1, 5000));
  for (int i = 0; i < 5; ++i) agent.Publish(kRecord);
  Result r = cli.Wait();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "control codes in --once output";
  std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 7u) << r.out;
  EXPECT_EQ(lines[0].rfind("infertap top  node n1  agent " + agent.url(), 0), 0u) << lines[0];
  EXPECT_EQ(lines[3],
            "POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%");
  // 5 records over the 0.5 s interval: 10 req/s, 400 input and 2000 output tokens/s. The
  // interval is measured, so allow for a few ms of scheduling on top of 0.5 s.
  std::vector<std::string> pool = Cells(lines[4]);
  ASSERT_EQ(pool.size(), 11u) << lines[4];
  EXPECT_EQ(pool[0], "default");
  EXPECT_NEAR(std::stod(pool[1]), 10.0, 1.0) << lines[4];
  EXPECT_EQ(pool[2], "2");
  EXPECT_EQ(pool[3], "0.0%");
  EXPECT_EQ(pool[4], "1.500s");
  EXPECT_EQ(pool[5], "1.500s");
  EXPECT_EQ(pool[6], "0.080s");
  EXPECT_NEAR(std::stod(pool[7]), 400, 40) << lines[4];
  EXPECT_NEAR(std::stod(pool[8]), 2000, 200) << lines[4];
  EXPECT_EQ(pool[9], "0.5");
  EXPECT_EQ(pool[10], "12%");
  std::vector<std::string> model = Cells(lines[5]);
  ASSERT_EQ(model.size(), 9u) << lines[5];
  EXPECT_EQ(model[0], "llama");
  EXPECT_EQ(lines[6], "rates over 0.5s  agent 0.1.0 up 12s");
  EXPECT_GE(r.seconds, 0.5);
}

TEST(TopCli, StdoutThatIsNotATerminalMeansOnce) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  agent.SetState(kExampleState);
  Result r = Cli({"top", "--agent", agent.url(), "--interval", "0.2"}).Wait(5);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("default             0.0    2     -"), std::string::npos) << r.out;
  EXPECT_EQ(agent.state_requests(), 1u);
}

TEST(TopCli, UnreachableAgentIsOneLineAndExitOne) {
  std::string url = RefusingUrl();
  Result r = Cli({"top", "--agent", url, "--once"}).Wait();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("infertap top: cannot reach the agent at " + url + ": ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(" (is infertap run running? see --agent)\n"), std::string::npos);
  EXPECT_EQ(Lines(r.err).size(), 1u);
}

TEST(TopCli, AnAgentWithoutTheRecordsEndpointIsReported) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  agent.SetState(kExampleState);
  agent.SetRecordsStatus(404);
  Result r = Cli({"top", "--agent", agent.url(), "--once"}).Wait();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/v1/records: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("404"), std::string::npos) << r.err;
}

TEST(TopCli, UsageErrorsExitTwo) {
  EXPECT_EQ(Cli({"top", "--agent", "gopher://x"}).Wait().exit_code, 2);
  EXPECT_EQ(Cli({"top", "--interval", "0"}).Wait().exit_code, 2);
  EXPECT_EQ(Cli({"top", "--window", "abc"}).Wait().exit_code, 2);
  EXPECT_EQ(Cli({"top", "--once", "--live"}).Wait().exit_code, 2);
}

}  // namespace
}  // namespace infertap::cli
