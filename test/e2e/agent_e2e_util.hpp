// Helpers for the agent end-to-end test (agent_e2e_test.cc): long-running child processes whose
// output is drained continuously, a temporary directory, curl run inside a network namespace, and
// a small reader for the Prometheus text exposition.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace infertap::e2e {

// A child process (argv[0] is a path) with stdout and stderr drained by a thread, so a chatty
// child (the agent's log, Prometheus) never blocks on a full pipe. The destructor kills and reaps
// it: a failing assertion never leaves a process behind.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv) : argv_(std::move(argv)) {}
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool Start(std::string* error);
  // True once `needle` has appeared on stdout or stderr; false at the timeout or if the child
  // exits without printing it.
  bool WaitForOutput(const std::string& needle, std::chrono::milliseconds timeout);
  // Sends `sig`, waits up to `grace`, then SIGKILLs. Returns the exit status, 128+signal when
  // killed by a signal, or -1 when the child was not running.
  int Stop(int sig, std::chrono::milliseconds grace);
  bool Exited();

  std::string out() const;
  std::string err() const;
  pid_t pid() const { return pid_; }

 private:
  void Drain();

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_, err_;
  bool eof_ = false;
  int status_ = -1;
};

// mkdtemp under /tmp; removed recursively by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Single-quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s);
std::string ReadFile(const std::string& path);
bool WriteFile(const std::string& path, const std::string& data);

// `ip netns exec NS curl -s URL` (plus `extra` arguments, already shell-quoted). Returns curl's
// exit status; the body goes to *body and the HTTP status to *http_code.
int CurlIn(const std::string& ns, const std::string& url, const std::string& extra,
           std::string* body, int* http_code);

// One sample of the text exposition: `name{labels} value`.
struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<PromSample> ParsePromText(const std::string& text);

// The value of the only sample named `name` whose labels include all of `labels`; nullopt when
// there is none (several matches also give nullopt: the caller's selector was ambiguous).
std::optional<double> FindSample(const std::vector<PromSample>& samples, const std::string& name,
                                 const std::map<std::string, std::string>& labels = {});

// Polls `fn` every `step` until it returns true or `timeout` passes; returns the last result.
template <typename Fn>
bool WaitUntil(std::chrono::milliseconds timeout, Fn fn,
               std::chrono::milliseconds step = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (fn()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

}  // namespace infertap::e2e
