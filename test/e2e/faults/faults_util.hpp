// Helpers for the faults tier (faults_e2e_test.cc, docs/faults.md): sockets made inside a
// network namespace, the agent's BPF objects read from /proc/PID/fdinfo, its memory from
// /proc/PID/status, per-request truth from infertap-load, and metric families summed over every
// label pair.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace infertap::e2e::faults {

using Json = nlohmann::json;

// Runs `fn` on a thread that has entered network namespace `ns` (sockets it creates live there
// and keep working from any thread afterwards). Returns fn's result, -1 when entering failed.
int InNetnsThread(const std::string& ns, const std::function<int()>& fn);

// A blocking TCP connection to ip:port made inside `ns`; -1 on failure.
int ConnectIn(const std::string& ns, const std::string& ip, int port);
// A listening TCP socket on ip:port inside `ns`; -1 on failure.
int ListenIn(const std::string& ns, const std::string& ip, int port);

// Sends all of `data`, at most `piece` bytes per send() (the agent captures the first
// --syscall-cap bytes of each syscall, docs/capture.md).
bool SendAll(int fd, const std::string& data, size_t piece = SIZE_MAX);

// A raw TCP server of the test's own (a listening socket made in a namespace): each accepted
// connection is handed to the current handler on the server's thread, one at a time, and closed
// after it. Stopped and joined by the destructor.
class RawServer {
 public:
  using Handler = std::function<void(int fd)>;
  RawServer(const std::string& ns, const std::string& ip, int port);
  ~RawServer();
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;
  bool ok() const { return listen_fd_ >= 0; }
  void SetHandler(Handler h);
  // Connections handled to the end so far.
  int handled() const { return handled_.load(); }

 private:
  void Loop();
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> handled_{0};
  std::mutex mu_;
  Handler handler_;
  std::thread thread_;
};
// Reads until EOF, an error, or `limit` bytes; returns what was read.
std::string ReadAll(int fd, size_t limit = size_t(64) << 20);
// Reads one HTTP/1.1 response with a Content-Length body (the simulator's non-streaming
// answers). Returns false on EOF or a malformed head; *body gets the body.
bool ReadContentLengthResponse(int fd, int* status, std::string* body);

// The agent's BPF objects: ids from /proc/PID/fdinfo of its bpf fds.
struct BpfObjects {
  std::set<uint32_t> progs, maps, links;
  size_t total() const { return progs.size() + maps.size() + links.size(); }
};
BpfObjects BpfObjectsOf(pid_t pid);
// True when the kernel still knows a prog / map / link with this id (bpftool ... show id N).
bool BpfProgExists(uint32_t id);
bool BpfMapExists(uint32_t id);
bool BpfLinkExists(uint32_t id);
// The id of the agent's map named `name` (bpftool map show id N -j), 0 when none.
uint32_t FindMap(const BpfObjects& objects, const std::string& name);
// Entries in the map (bpftool map dump id N -j); -1 when it cannot be read.
long MapEntries(uint32_t id);

// VmRSS / VmHWM of a process in bytes (0 when it cannot be read).
uint64_t RssBytes(pid_t pid);
uint64_t PeakRssBytes(pid_t pid);

// JSON lines of a file; lines that are not objects (SSE comments of /v1/records, blanks) are
// skipped. `dropped` (when given) gets the sum of the record stream's ": dropped N" comments.
std::vector<Json> ReadJsonLines(const std::string& path, uint64_t* dropped = nullptr);

// Sum of every sample named `name` (all label sets), optionally only those whose label `label`
// equals `value`.
double SumSamples(const std::string& exposition, const std::string& name,
                  const std::string& label = "", const std::string& value = "");

// What one request's record may say, given what the client saw (infertap-load --truth line):
// "" when the record is exact, "incomplete" when it is a permitted Incomplete (claims nothing of
// another exchange: status 0 or its own, sizes and chunks at most its own, tokens absent or its
// own), otherwise a description of what is wrong.
std::string JudgeRecord(const Json& record, const Json& truth);

}  // namespace infertap::e2e::faults
