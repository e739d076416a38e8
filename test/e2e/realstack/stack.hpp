// The real stack of realstack_e2e_test (docs/testing.md): model servers of other projects' wire
// formats (uvicorn + FastAPI in vLLM's and SGLang's, cpp-httplib in llama.cpp's) in the server
// namespace, HAProxy and nginx in the client namespace, `infertap run` tracing the servers, the
// /v1/records stream, and the Python client load. Every process is a Child (accuracy_util.hpp):
// own process group, ended by its pid, output in the run's temp dir.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "test/e2e/accuracy_util.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e::realstack {

using json = nlohmann::json;

// Why this machine cannot run the real stack ("" when it can). A missing tool is a broken
// machine (scripts/install-deps.sh installs them all), so callers FAIL on it, never skip.
std::string MissingTools();

struct Server {
  std::string name;    // also the `server` field of its ground truth
  std::string flavor;  // vllm, sglang, llamacpp
  std::string http;    // uvicorn --http (h11, httptools); "" for llamacpp
  uint16_t port = 0;   // in the server namespace, on srv_v4
  std::string served_model() const { return "served-" + name; }
};

// How a client reaches a server: directly or through a gateway listening in the client namespace.
struct Route {
  std::string name, server;
  std::string gateway;  // "", haproxy, nginx
  uint16_t port = 0;    // the gateway's port on 127.0.0.1 of the client namespace
  bool no_slow = false;
};

class Stack {
 public:
  Stack(const NetnsPair& ns, const std::string& dir) : ns_(ns), dir_(dir) {}
  ~Stack();

  // Each returns false with *error set when the process did not come up.
  bool StartServer(const Server& s, std::string* error);
  bool StartHaproxy(const std::vector<Route>& routes, std::string* error);
  bool StartNginx(const Route& route, std::string* error);
  // `infertap run` tracing every server started so far, plus `extra` flags; `nice` > 0 runs it
  // at that lower CPU priority (an agent that loses the race for CPU against the load).
  bool StartAgent(const std::vector<std::string>& extra, std::string* error, int nice = 0);
  // Sets the running agent's CPU priority (root may raise it back).
  bool ReniceAgent(int nice);
  // Subscribes to /v1/records (JSON lines) into records.jsonl.
  bool StartRecords(std::string* error);
  void StopRecords();
  bool StopAgent(std::string* log_tail);

  // Runs load.py with `plan` (routes filled in here) in the client namespace, views to
  // `views_file`. Returns false with *error when it failed or hung.
  bool RunLoad(json plan, const std::vector<Route>& routes, const std::string& views_file,
               double timeout_s, std::string* error);

  std::string Metrics() const;        // GET /metrics ("" on failure)
  std::vector<json> Records() const;  // everything on the record stream so far
  std::vector<json> Truth() const;    // every server's ground-truth lines
  std::vector<json> Views(const std::string& views_file) const;
  const Server* FindServer(const std::string& name) const;
  std::string Tail(const std::string& file, size_t n = 3000) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string RouteUrl(const Route& r) const;

  const NetnsPair& ns_;
  std::string dir_;
  std::vector<Server> servers_;
  std::vector<std::unique_ptr<Child>> children_;
  std::unique_ptr<Child> agent_, records_;
  std::string metrics_addr_, inspect_addr_;
};

// ---- the comparison ------------------------------------------------------------------------

// One request as the test knows it: the client's view joined with the server's ground truth.
struct Truth {
  json view, server;  // server is null when the server logged nothing for it
  std::string model;  // the label pair the request must be counted under (model = target)
  std::string expected_error;
};

// Joins views and ground truth by request id. Requests without `model` take the served model.
std::map<std::string, Truth> JoinTruth(const std::vector<json>& views,
                                       const std::vector<json>& server_truth, const Stack& stack);

// The record that belongs to each request: by (target_model_name, request_bytes) - the load makes
// that pair unique (a model per request, or a body length per request where models are shared or
// absent) - or by a model used by one request only. Records of no request go to *unmatched.
std::map<std::string, std::vector<json>> MatchRecords(const std::vector<json>& records,
                                                      const std::map<std::string, Truth>& truth,
                                                      std::vector<json>* unmatched);

// Field by field differences between a record and the truth of its request (empty: exact).
// Timing within `timing_tol_s` of the server's own clock; `check_timing` off skips it.
std::vector<std::string> RecordDiffs(const json& record, const Truth& t, double timing_tol_s,
                                     bool check_timing);

// Metric families per label pair, summed over the truth vs read from the exposition.
struct FamilySums {
  std::map<std::string, double> values;   // "family|pair" → counts, bytes, tokens: exact
  std::map<std::string, double> seconds;  // "family|pair" → sums of seconds: within a tolerance
  std::set<std::string> untimed;          // pairs whose truth has no exact clock (slow uploads)
};
FamilySums SumsFromTruth(const std::map<std::string, Truth>& truth);
// Only pairs with a side in `models` (every pair when it is empty).
FamilySums SumsFromMetrics(const std::string& exposition, const std::set<std::string>& models);
FamilySums SumsFromRecords(const std::vector<json>& records);
// Differences of the seconds sums, each within `tol_s` per observation of `want` plus
// `extra_s[pair]` (the allowance of that pair's accepted timing outliers; pairs that `want`
// marks untimed are skipped); "" when none.
std::string DiffSeconds(const FamilySums& got, const FamilySums& want, double tol_s,
                        const std::string& got_name, const std::string& want_name,
                        const std::map<std::string, double>& extra_s = {});
// The "pair" key the sums use for a model and its target.
std::string PairKey(const std::string& model, const std::string& target);

}  // namespace infertap::e2e::realstack
