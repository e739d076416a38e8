// Helpers for tests that run the real infertap-sim binary and talk to it over raw sockets.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace infertap::sim::testing {

// Starts build/infertap-sim on an ephemeral loopback port; SIGTERM + reap on destruction.
class SimProcess {
 public:
  explicit SimProcess(std::vector<std::string> args = {});
  ~SimProcess();
  SimProcess(const SimProcess&) = delete;
  SimProcess& operator=(const SimProcess&) = delete;
  int port() const { return port_; }
  const std::string& listening_line() const { return line_; }
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string line_;
};

// One parsed HTTP response, with the raw bytes kept for byte-exact checks.
struct RawResponse {
  std::string raw;   // everything, head + framing
  std::string head;  // status line and headers, without the final CRLFCRLF
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // in wire order
  bool chunked = false;
  std::vector<std::string> chunk_size_lines;  // as sent, e.g. "11d"
  std::vector<std::string> chunks;            // payload of each non-empty chunk
  std::string body;                           // de-chunked
  bool complete = false;                      // terminal chunk / full length seen
  std::string Header(std::string_view name) const;
  std::vector<std::string> HeaderNames() const;
};

class Client {
 public:
  explicit Client(int port, bool ipv6 = false);
  ~Client();
  void Send(std::string_view data);
  // Reads one response (skipping none: a 100 Continue is returned as its own response).
  // Returns complete=false if the connection ended first; `error` then holds errno or 0 for EOF.
  RawResponse Read(int timeout_ms = 5000);
  // Waits for EOF or reset; returns 0 on EOF, errno (ECONNRESET) on reset, -1 on timeout.
  int WaitClosed(int timeout_ms = 3000);
  // Bytes that arrived within `ms` (0 if none).
  size_t BytesWithin(int ms);
  int fd() const { return fd_; }
  int last_error() const { return error_; }
  const std::string& buffered() const { return buf_; }

 private:
  bool Fill(int timeout_ms);  // one recv into buf_; false on EOF/error/timeout
  int fd_ = -1;
  std::string buf_;
  int error_ = 0;
  bool eof_ = false;
};

// A POST with a JSON body and extra header lines ("name: value").
std::string Post(std::string_view path, std::string_view body,
                 const std::vector<std::string>& headers = {});
std::string Get(std::string_view path);

// "data: <json>\n\n" -> <json>
std::string DataOf(std::string_view event);
std::string ReadFixture(std::string_view name);
// Lines of an .sse fixture that start with "data: " (each one event).
std::vector<std::string> FixtureEvents(std::string_view name);
std::string ReplaceAll(std::string s, std::string_view from, std::string_view to);
// The JSON string value of "key" in a flat-ish JSON text ("" if missing).
std::string JsonField(std::string_view json, std::string_view key);

}  // namespace infertap::sim::testing
