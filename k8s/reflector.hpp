// List + watch of one Kubernetes resource into a small in-memory store (docs/kubernetes.md), as
// client-go's reflector does it:
//
//  - list with `limit` pagination (`continue`), then watch from the list's resourceVersion with
//    `allowWatchBookmarks=true` and a server-side `timeoutSeconds` (jittered, so a fleet of agents
//    does not re-watch in lockstep); a client-side idle timeout catches a silently dead stream;
//  - BOOKMARK events advance the resourceVersion; a watch that ends (server timeout, dropped
//    connection) resumes from the last resourceVersion without a relist;
//  - 410 Gone (HTTP 410 or an ERROR event with code 410) relists;
//  - failures back off exponentially with jitter (0.5 s → 30 s by default), never a tight loop;
//  - an optional resource whose CRD is not installed (404) is logged once, counted as synced and
//    empty, and retried slowly (every 60 s by default);
//  - memory is bounded: only the decoded fields (objects.hpp) are kept, at most max_objects of
//    them, and one watch event may be at most RestOptions::max_line_bytes.
//
// One thread per reflector. OnChange is called on that thread after the store changed (after a
// full list, after each watch event that changed something); it must not block for long.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "k8s/backoff.hpp"
#include "k8s/objects.hpp"
#include "k8s/rest_client.hpp"

namespace infertap::k8s {

struct ResourceSpec {
  Kind kind = Kind::kPod;
  std::string api_prefix;        // "/api/v1", "/apis/inference.networking.k8s.io/v1"
  std::string resource;          // plural: "pods", "inferencepools"
  std::string ns;                // "" = all namespaces
  std::string field_selector;    // "spec.nodeName=node-1" or ""
  bool optional = false;         // a 404 means "CRD not installed", not an error
  std::string Describe() const;  // "inferencepools.inference.networking.k8s.io/v1"
};

struct ReflectorOptions {
  int page_limit = 500;
  std::chrono::seconds watch_timeout{300};  // server-side; each watch uses [t, 2t)
  std::chrono::seconds idle_slack{30};      // client idle limit = server timeout + slack
  Backoff::ms backoff_initial{500};
  Backoff::ms backoff_cap{30000};
  std::chrono::seconds missing_retry{60};  // re-list of a missing CRD
  size_t max_objects = 50000;
};

struct ReflectorStats {
  uint64_t lists = 0;            // completed full lists (every page)
  uint64_t list_requests = 0;    // list page requests sent
  uint64_t watches = 0;          // watch requests sent
  uint64_t relists_gone = 0;     // relists caused by 410 Gone
  uint64_t events = 0;           // watch events applied (incl. bookmarks)
  uint64_t errors = 0;           // failed requests (each one backed off)
  uint64_t dropped_objects = 0;  // over max_objects or undecodable
  std::string resource_version;
  std::string last_error;
  bool synced = false;   // a first list completed (or the CRD is known missing)
  bool missing = false;  // optional resource answered 404
};

class Reflector {
 public:
  using OnChange = std::function<void()>;
  Reflector(RestClient& client, ResourceSpec spec, ReflectorOptions options, OnChange on_change);
  ~Reflector();
  Reflector(const Reflector&) = delete;
  Reflector& operator=(const Reflector&) = delete;

  void Start();
  // Ends the thread promptly (an in-flight list or watch is aborted). Idempotent.
  void Stop();

  std::vector<Object> Snapshot() const;
  ReflectorStats stats() const;
  bool synced() const { return synced_.load(); }
  const ResourceSpec& spec() const { return spec_; }
  // True while the reflector sleeps after a failed request (its backoff).
  bool backing_off() const { return backing_off_.load(); }
  // Cuts the current backoff sleep short (the API server is known to answer again): the next
  // request goes out now. A wake that arrives while no sleep is running ends the next one.
  void Wake();

 private:
  enum class ListOutcome { kOk, kMissing, kGone, kError, kStopped };
  void Run();
  ListOutcome List();
  // Watches from rv_; returns true when the watch ended normally (re-watch at once) and false
  // after an error (back off first). Sets need_list_ on 410.
  bool WatchOnce();
  bool HandleEvent(std::string_view line, bool* changed);
  std::string Path(bool watch, const std::string& cont) const;
  void SleepFor(std::chrono::milliseconds d);
  void Fail(const std::string& what);
  void Succeeded();

  RestClient& client_;
  const ResourceSpec spec_;
  const ReflectorOptions options_;
  const OnChange on_change_;
  Backoff backoff_;
  std::mt19937_64 rng_;

  mutable std::mutex mu_;
  std::map<std::string, Object> store_;
  ReflectorStats stats_;
  std::string rv_;  // guarded by mu_ for stats; written only by the thread
  bool need_list_ = true;
  bool logged_missing_ = false;

  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<bool> backing_off_{false};
  bool wake_ = false;  // guarded by mu_
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace infertap::k8s
