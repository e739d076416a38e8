// Client side of the agent's local inspection API (docs/serving.md) for `top` and `trace`.
//
// One libcurl multi handle drives both transfers — the endless GET /v1/records stream and the
// periodic GET /v1/state — on the caller's thread, and Poll() also waits on the caller's own file
// descriptors (the terminal, a signal pipe). So the views are single-threaded: a key press, a
// signal, a record and the refresh timer all wake the same loop, and nothing needs a lock.
#pragma once

#include <poll.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace infertap::cli {

// "127.0.0.1:9091", "http://127.0.0.1:9091/" → "http://127.0.0.1:9091". Only http and https;
// returns nullopt with *error otherwise.
std::optional<std::string> NormalizeAgentUrl(std::string_view url, std::string* error);

// The one-line message for an agent that cannot be reached (shared by top and trace).
std::string UnreachableMessage(std::string_view command, std::string_view url,
                               std::string_view reason);

// Splits a byte stream into lines; drops empty lines (the JSON-lines heartbeat) and a trailing
// '\r'. A line longer than the cap is discarded whole and counted, never cut into pieces that
// would parse as something else.
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line_bytes = 1 << 20) : max_line_(max_line_bytes) {}
  void Feed(std::string_view bytes, std::vector<std::string>* lines);
  uint64_t overlong_lines() const { return overlong_; }

 private:
  size_t max_line_;
  std::string partial_;
  bool skipping_ = false;  // inside an overlong line, until its '\n'
  uint64_t overlong_ = 0;
};

class AgentClient {
 public:
  struct StateResult {
    bool ok = false;
    std::string body;   // when ok
    std::string error;  // when !ok: curl's reason or "HTTP 404"-style text
  };

  explicit AgentClient(std::string base_url);
  ~AgentClient();
  AgentClient(const AgentClient&) = delete;
  AgentClient& operator=(const AgentClient&) = delete;

  const std::string& base_url() const { return base_url_; }

  // Opens GET /v1/records unless it is already open. After a failure, call again to reconnect.
  void StartRecords();
  // Starts GET /v1/state unless one is in flight.
  void StartState();

  // Waits up to `timeout_ms` for network progress or for one of `fds` to be readable (their
  // `revents` are set on return), then runs the transfers. Returns early on either.
  void Poll(int timeout_ms, std::span<pollfd> fds);

  // Complete record lines received since the last call.
  std::vector<std::string> TakeRecordLines();
  // True from the moment the agent answered /v1/records with 2xx until the stream fails.
  bool records_open() const;
  // The reason the record stream stopped (once per stop), or nullopt while it runs or is idle.
  std::optional<std::string> TakeRecordsFailure();
  // The last failure in a few words ("Couldn't connect to server"), for a footer.
  const std::string& records_failure_brief() const { return records_failure_brief_; }
  // True when the stream failed before the agent ever answered (nothing listening, refused...).
  bool records_never_opened() const { return records_never_opened_; }
  // The finished /v1/state fetch, once.
  std::optional<StateResult> TakeStateResult();
  bool state_in_flight() const;
  uint64_t overlong_record_lines() const;

 private:
  struct Transfer;
  void Finish(Transfer& t, int curl_code);

  std::string base_url_;
  void* multi_ = nullptr;  // CURLM*, opaque here so that callers do not include curl.h
  std::unique_ptr<Transfer> records_;
  std::unique_ptr<Transfer> state_;
  std::optional<std::string> records_failure_;
  std::string records_failure_brief_;
  bool records_never_opened_ = false;
  std::optional<StateResult> state_result_;
};

}  // namespace infertap::cli
