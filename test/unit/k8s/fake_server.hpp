// Starts test/fake_apiserver/fake_apiserver.py for one test (docs/testing.md): a fresh CA,
// tokens and kubeconfigs in a temporary directory, waits for DIR/ready (15 s at most), and
// kills the server in the destructor. Control requests go to the control listener (which keeps
// answering while the API is stopped) with the admin token.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "k8s/config.hpp"
#include "k8s/rest_client.hpp"
#include "test/unit/k8s/test_util.hpp"

namespace infertap::k8s::testing {

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

class FakeApiServer {
 public:
  ~FakeApiServer() { Kill(); }

  // false with *err when the server did not come up.
  bool Start(const std::vector<std::string>& extra_args, std::string* err) {
    std::vector<std::string> args = {
        "python3", INFERTAP_FAKE_APISERVER, "--dir", dir_.path(), "--port",
        "0",       "--bookmark-interval",   "1"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    ::unlink((dir_.path() + "/ready").c_str());  // a restart must not read the old one
    url_.clear();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string log = dir_.path() + "/server.log";
      FILE* f = std::freopen(log.c_str(), "w", stderr);
      (void)f;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execvp("python3", argv.data());
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < deadline) {
      std::string ready = ReadFile(dir_.path() + "/ready");
      if (!ready.empty()) {
        url_ = ready;
        break;
      }
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *err = "fake API server exited: " + ReadFile(dir_.path() + "/server.log");
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (url_.empty()) {
      *err = "fake API server not ready after 15 s";
      return false;
    }
    admin_token_ = ReadFile(dir_.path() + "/admin.token");
    ClusterConfig c;
    c.server = ReadFile(dir_.path() + "/control");
    c.ca_file = dir_.path() + "/ca.crt";
    c.token = admin_token_;
    control_ = std::make_unique<RestClient>(c);
    return true;
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  const std::string& dir() const { return dir_.path(); }
  const TempDir& tmp() const { return dir_; }
  const std::string& url() const { return url_; }
  const std::string& admin_token() const { return admin_token_; }
  std::string kubeconfig() const { return dir_.path() + "/kubeconfig"; }

  ClusterConfig AdminConfig() const {
    ClusterConfig c;
    c.server = url_;
    c.ca_file = dir_.path() + "/ca.crt";
    c.token = admin_token_;
    return c;
  }

  HttpResult Control(const std::string& method, const std::string& path,
                     const std::string& body = "") {
    return control_->Request(method, path, body.empty() ? nullptr : &body);
  }
  // Loads objects (status kept; same name replaced) through the control API.
  // (A vector, not a json: `json{obj}` with one element would be the object, not a list.)
  HttpResult Apply(const std::vector<nlohmann::json>& objects) {
    nlohmann::json doc = nlohmann::json::object();
    doc["objects"] = nlohmann::json::array();
    for (const auto& o : objects) doc["objects"].push_back(o);
    return Control("POST", "/fake/objects", doc.dump());
  }
  HttpResult AddToken(const std::string& token, const std::string& user,
                      const std::vector<std::string>& groups) {
    return Control("POST", "/fake/tokens",
                   nlohmann::json{{"token", token}, {"user", user}, {"groups", groups}}.dump());
  }
  // The request log since the last ClearRequests().
  nlohmann::json Requests() {
    HttpResult r = Control("GET", "/fake/requests");
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    return j.is_object() ? j.value("requests", nlohmann::json::array()) : nlohmann::json::array();
  }
  // A failed clear needs no check here: it shows up as stale entries in the next Requests().
  void ClearRequests() { (void)Control("DELETE", "/fake/requests"); }
  // Requests (excluding /fake/ ones) whose path contains `fragment`.
  int CountRequests(const std::string& fragment, const std::string& method = "") {
    int n = 0;
    for (const auto& r : Requests()) {
      std::string p = r.value("path", "");
      if (p.rfind("/fake/", 0) == 0) continue;
      if (!method.empty() && r.value("method", "") != method) continue;
      if (p.find(fragment) != std::string::npos) ++n;
    }
    return n;
  }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::string url_, admin_token_;
  std::unique_ptr<RestClient> control_;
};

inline nlohmann::json PodJson(const std::string& ns, const std::string& name,
                              const std::string& node, const std::string& ip,
                              const nlohmann::json& labels, bool ready = true) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec", {{"nodeName", node}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}},
          {"status",
           {{"phase", "Running"},
            {"podIP", ip},
            {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}}}}};
}

inline nlohmann::json PoolV1Json(const std::string& ns, const std::string& name,
                                 const nlohmann::json& match_labels, std::vector<int> ports) {
  nlohmann::json tps = nlohmann::json::array();
  for (int p : ports) tps.push_back({{"number", p}});
  return {{"apiVersion", "inference.networking.k8s.io/v1"},
          {"kind", "InferencePool"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec", {{"selector", {{"matchLabels", match_labels}}}, {"targetPorts", tps}}}};
}

// Polls `pred` every 20 ms until true or `timeout`.
template <class Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace infertap::k8s::testing
