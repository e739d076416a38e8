// Helpers of accuracy_e2e_test: supervised child processes (sim, nginx, agent, clients) that are
// always cleaned up, a temp dir, and parsers for what the clients and the agent print (SSE bodies,
// Prometheus text, JSON-lines records).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace infertap::e2e {

// mkdtemp under /tmp; removed recursively in the destructor, also when the test failed.
class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // Keep the directory for a post-mortem (set when INFERTAP_KEEP_TMP=1).
  void Keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

// A child process in its own process group, optionally inside a network namespace, with stdout
// and stderr going to files. The destructor ends it (and anything it forked, e.g. nginx's
// workers, which share its group) by its pid and group id only.
class Child {
 public:
  Child() = default;
  ~Child() { Stop(SIGTERM, std::chrono::seconds(5)); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // netns "" = the test's own namespace. Returns false (with *error) if it could not start.
  bool Start(const std::vector<std::string>& argv, const std::string& netns,
             const std::string& stdout_path, const std::string& stderr_path, std::string* error);
  // Sends `sig`, waits up to `grace`, then SIGKILLs the group. Returns the wait status or -1.
  int Stop(int sig, std::chrono::milliseconds grace);
  // Waits up to `timeout` for a normal exit; true if it exited (status in *status).
  bool Wait(std::chrono::milliseconds timeout, int* status);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Polls `done` every 20 ms until it is true or `timeout` passes; returns its last value.
bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& done);

std::string ReadFileOr(const std::string& path, const std::string& fallback = "");
bool WriteFile(const std::string& path, const std::string& data);
// A loopback TCP port that was free a moment ago (bind to :0, read it, close).
uint16_t FreeLoopbackPort();
// Replaces every "@KEY@" of `vars` in `text`.
std::string Substitute(std::string text, const std::map<std::string, std::string>& vars);

// What a client could read from an SSE body (one "data: <json>" event per blank-line block).
struct SseSummary {
  uint32_t content_events = 0;  // events whose choices[0].delta.content (or .text) is non-empty
  bool error_event = false;     // a `data: {"error": ...}` event
  bool done = false;            // `data: [DONE]`
  std::optional<uint64_t> prompt_tokens, completion_tokens;  // from a non-null `usage`
  uint32_t unparsable = 0;  // data lines that were neither JSON nor [DONE] (cut events)
};
SseSummary SummarizeSse(const std::string& body);

// Prometheus text exposition → sample value by "name{k="v",...}" with label names sorted.
std::map<std::string, double> ParsePrometheus(const std::string& text);
std::string SampleKey(const std::string& name, std::map<std::string, std::string> labels);

}  // namespace infertap::e2e
