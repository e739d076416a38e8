#include "agent/poller/poller.hpp"

#include <algorithm>
#include <set>

namespace infertap::poller {
namespace {

using TimePoint = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

// Staleness has to be noticed without waiting for a scrape to complete (all pods may be hanging),
// so the worker recomputes the gauges at least this often.
constexpr milliseconds kMaxTickGap{200};

std::string Url(const PoolTarget& t) {
  std::string path = t.path.empty() ? "/metrics" : t.path;
  if (path[0] != '/') path.insert(path.begin(), '/');
  return "http://" + t.address + path;
}

}  // namespace

PoolPoller::PoolPoller(Metrics& metrics, Clock clock, PollerOptions options)
    : metrics_(metrics), clock_(std::move(clock)), options_(options) {}

PoolPoller::~PoolPoller() { Stop(); }

void PoolPoller::SetTargets(std::vector<PoolTarget> targets) {
  {
    std::lock_guard lock(mu_);
    std::map<Key, PodState> next;
    std::set<std::string> pools;
    for (PoolTarget& t : targets) {
      Key key{t.pool, t.pod};
      pools.insert(t.pool);
      auto old = pods_.find(key);
      if (old != pods_.end() && old->second.target == t) {
        next.emplace(key, std::move(old->second));
        pods_.erase(old);
        continue;
      }
      PodState fresh;
      if (old != pods_.end()) {
        // Same pod, new address/path/engine: old values say nothing about the new endpoint, but
        // the error counter is the pod's and stays.
        if (old->second.gauges_set)
          metrics_.SetPodGauges(t.pool, t.pod, std::nullopt, std::nullopt);
        fresh.scrape_errors = old->second.scrape_errors;
        pods_.erase(old);
      }
      fresh.target = std::move(t);
      next.insert_or_assign(key, std::move(fresh));
    }
    for (auto& [key, p] : pods_) {  // pods that left
      if (p.gauges_set) metrics_.SetPodGauges(key.first, key.second, std::nullopt, std::nullopt);
      metrics_.RemovePoolScrapeErrors(key.first, key.second);
    }
    pods_ = std::move(next);
    for (auto it = pools_.begin(); it != pools_.end();) {
      if (!pools.count(it->first)) {
        metrics_.RemovePool(it->first);
        it = pools_.erase(it);
      } else {
        ++it;
      }
    }
  }
  targets_changed_ = true;
  std::lock_guard run(run_mu_);
  if (fetcher_) fetcher_->Wakeup();
}

bool PoolPoller::FreshLocked(const PodState& p, TimePoint now) const {
  return p.last_ok && p.stats && now >= *p.last_ok && now - *p.last_ok <= options_.staleness;
}

void PoolPoller::OnScrapeResult(const std::string& pool, const std::string& pod, TimePoint now,
                                const FetchResult& result) {
  Engine engine;
  {
    std::lock_guard lock(mu_);
    auto it = pods_.find({pool, pod});
    if (it == pods_.end()) return;
    engine = it->second.target.engine;
  }
  // Parse outside the lock: a large page must not block SetTargets() or the inspection API.
  std::string error;
  std::optional<PodStats> stats;
  if (!result.ok) {
    error = result.error.empty() ? "scrape failed" : result.error;
  } else {
    promtext::Result parsed = promtext::Parse(
        result.body, promtext::FormatFromContentType(result.content_type), options_.parse_limits);
    if (!parsed.ok()) {
      error = "unparsable metrics at line " + std::to_string(parsed.error.line) + ": " +
              parsed.error.message;
    } else {
      ExtractResult extracted = ExtractPodStats(parsed.families, engine);
      if (extracted.stats) {
        stats = extracted.stats;
      } else {
        error = extracted.error;
      }
    }
  }

  std::lock_guard lock(mu_);
  auto it = pods_.find({pool, pod});
  if (it == pods_.end() || it->second.target.engine != engine) return;  // changed meanwhile
  PodState& p = it->second;
  if (stats) {
    p.stats = stats;
    p.last_ok = now;
    p.last_error.clear();
  } else {
    p.last_error = std::move(error);
    ++p.scrape_errors;
    metrics_.IncPoolScrapeErrors(pool, pod);
  }
}

void PoolPoller::Tick(TimePoint now) {
  struct Sums {
    size_t fresh = 0;
    double queue = 0, running = 0, kv = 0;
    size_t kv_pods = 0;
  };
  std::lock_guard lock(mu_);
  std::map<std::string, Sums> sums;
  for (auto& [key, p] : pods_) {
    Sums& s = sums[key.first];
    if (FreshLocked(p, now)) {
      ++s.fresh;
      s.queue += p.stats->queue;
      s.running += p.stats->running;
      if (p.stats->kv_cache_utilization) {
        s.kv += *p.stats->kv_cache_utilization;
        ++s.kv_pods;
      }
      metrics_.SetPodGauges(key.first, key.second, p.stats->queue, p.stats->kv_cache_utilization);
      p.gauges_set = true;
    } else if (p.gauges_set) {
      metrics_.SetPodGauges(key.first, key.second, std::nullopt, std::nullopt);
      p.gauges_set = false;
    }
  }
  for (const auto& [pool, s] : sums) {
    PoolGauges g;
    g.ready_pods = s.fresh;
    if (s.fresh > 0) {
      g.average_queue_size = s.queue / double(s.fresh);
      g.average_running_requests = s.running / double(s.fresh);
      if (s.kv_pods > 0) g.average_kv_cache_utilization = s.kv / double(s.kv_pods);
    }
    metrics_.SetPoolGauges(pool, g);
    pools_[pool] = g;
  }
  for (auto it = pools_.begin(); it != pools_.end();) {
    if (!sums.count(it->first)) {
      metrics_.RemovePool(it->first);
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

PollerSnapshot PoolPoller::Snapshot() const {
  std::lock_guard lock(mu_);
  PollerSnapshot out;
  out.pools = pools_;
  out.pods.reserve(pods_.size());
  for (const auto& [key, p] : pods_) {
    out.pods.push_back({.target = p.target,
                        .fresh = p.gauges_set,
                        .stats = p.stats,
                        .last_error = p.last_error,
                        .scrape_errors = p.scrape_errors});
  }
  return out;
}

void PoolPoller::Start() {
  std::lock_guard run(run_mu_);
  if (worker_.joinable()) return;
  stop_ = false;
  fetcher_ = std::make_unique<HttpFetcher>(
      FetchOptions{.timeout = options_.timeout, .max_body_bytes = options_.max_body_bytes});
  worker_ = std::thread([this] { Run(); });
}

void PoolPoller::Stop() {
  std::lock_guard run(run_mu_);
  if (!worker_.joinable()) return;
  stop_ = true;
  fetcher_->Wakeup();
  worker_.join();
  fetcher_.reset();  // cancels whatever was still in flight
  std::lock_guard lock(mu_);
  for (auto& [key, p] : pods_) {
    p.in_flight.reset();
    p.next_due = {};
  }
}

void PoolPoller::Run() {
  HttpFetcher& fetcher = *fetcher_;
  std::map<uint64_t, Key> in_flight;  // transfer id → pod
  uint64_t next_id = 1;
  TimePoint next_tick = clock_();

  while (!stop_) {
    TimePoint now = clock_();
    std::vector<std::pair<uint64_t, std::string>> to_start;
    std::vector<uint64_t> to_cancel;
    TimePoint wake = next_tick;
    {
      std::lock_guard lock(mu_);
      targets_changed_ = false;
      for (auto it = in_flight.begin(); it != in_flight.end();) {
        auto p = pods_.find(it->second);
        if (p == pods_.end() || p->second.in_flight != it->first) {
          to_cancel.push_back(it->first);
          it = in_flight.erase(it);
        } else {
          ++it;
        }
      }
      for (auto& [key, p] : pods_) {
        if (p.in_flight) continue;
        if (p.next_due <= now) {
          uint64_t id = next_id++;
          p.in_flight = id;
          // Schedule from the due time, not from completion, so a slow pod keeps its cadence;
          // if we fell behind (suspend, overload) restart from now instead of bursting.
          p.next_due = p.next_due + options_.poll_interval > now
                           ? p.next_due + options_.poll_interval
                           : now + options_.poll_interval;
          in_flight.emplace(id, key);
          to_start.emplace_back(id, Url(p.target));
        } else {
          wake = std::min(wake, p.next_due);
        }
      }
    }
    for (uint64_t id : to_cancel) fetcher.Cancel(id);
    for (const auto& [id, url] : to_start) {
      if (fetcher.Start(id, url)) continue;
      Key key = in_flight[id];
      in_flight.erase(id);
      {
        std::lock_guard lock(mu_);
        if (auto p = pods_.find(key); p != pods_.end() && p->second.in_flight == id) {
          p->second.in_flight.reset();
        }
      }
      OnScrapeResult(key.first, key.second, clock_(),
                     FetchResult{.error = "cannot start a transfer to " + url});
    }

    now = clock_();
    auto wait = std::chrono::duration_cast<milliseconds>(wake - now);
    wait = std::clamp(wait, milliseconds(0), kMaxTickGap);
    if (stop_ || targets_changed_) wait = milliseconds(0);
    bool completed = false;
    fetcher.Poll(wait, [&](uint64_t id, FetchResult&& result) {
      auto it = in_flight.find(id);
      if (it == in_flight.end()) return;
      Key key = it->second;
      in_flight.erase(it);
      {
        std::lock_guard lock(mu_);
        if (auto p = pods_.find(key); p != pods_.end() && p->second.in_flight == id) {
          p->second.in_flight.reset();
        } else {
          return;  // the pod changed while this transfer ran
        }
      }
      OnScrapeResult(key.first, key.second, clock_(), result);
      completed = true;
    });
    now = clock_();
    if (completed || now >= next_tick) {
      Tick(now);
      next_tick = now + kMaxTickGap;
    }
  }
}

}  // namespace infertap::poller
