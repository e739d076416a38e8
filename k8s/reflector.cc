#include "k8s/reflector.hpp"

#include <nlohmann/json.hpp>

#include "agent/common/log.hpp"

namespace infertap::k8s {

using nlohmann::json;

std::string ResourceSpec::Describe() const {
  // "/api/v1" → "pods/v1"; "/apis/g/v" → "resource.g/v".
  std::string gv = api_prefix;
  if (gv.rfind("/apis/", 0) == 0) {
    gv = gv.substr(6);
    size_t slash = gv.find('/');
    return resource + "." + gv.substr(0, slash) + gv.substr(slash);
  }
  return resource + "/" + (gv.size() > 5 ? gv.substr(5) : gv);
}

Reflector::Reflector(RestClient& client, ResourceSpec spec, ReflectorOptions options,
                     OnChange on_change)
    : client_(client),
      spec_(std::move(spec)),
      options_(options),
      on_change_(std::move(on_change)),
      backoff_(options.backoff_initial, options.backoff_cap),
      rng_(std::random_device{}()) {}

Reflector::~Reflector() { Stop(); }

void Reflector::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void Reflector::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::vector<Object> Reflector::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Object> out;
  out.reserve(store_.size());
  for (const auto& [k, v] : store_) out.push_back(v);
  return out;
}

ReflectorStats Reflector::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ReflectorStats s = stats_;
  s.resource_version = rv_;
  s.synced = synced_.load();
  return s;
}

void Reflector::SleepFor(std::chrono::milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load() || wake_; });
  wake_ = false;
}

void Reflector::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void Reflector::Succeeded() { backoff_.Reset(); }

void Reflector::Fail(const std::string& what) {
  uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.errors;
    n = stats_.errors;
    stats_.last_error = what;
  }
  auto delay = backoff_.Next();
  // The first failures are worth a line each; after that one line in ten is enough.
  if (n <= 3 || n % 10 == 0) {
    LOG_WARN("k8s: %s: %s (retry in %lld ms, failure %llu)", spec_.Describe().c_str(), what.c_str(),
             static_cast<long long>(delay.count()), static_cast<unsigned long long>(n));
  }
  backing_off_.store(true);
  SleepFor(delay);
  backing_off_.store(false);
}

std::string Reflector::Path(bool watch, const std::string& cont) const {
  std::string p = spec_.api_prefix;
  if (!spec_.ns.empty()) p += "/namespaces/" + UrlEncode(spec_.ns);
  p += "/" + spec_.resource + "?";
  if (!spec_.field_selector.empty()) p += "fieldSelector=" + UrlEncode(spec_.field_selector) + "&";
  if (watch) {
    auto base = options_.watch_timeout.count();
    std::uniform_int_distribution<long long> u(0, base > 0 ? base - 1 : 0);
    auto* self = const_cast<Reflector*>(this);  // rng_ is only used on the reflector thread
    long long t = base + u(self->rng_);
    p += "watch=1&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(t) +
         "&resourceVersion=" + UrlEncode(rv_);
  } else {
    p += "limit=" + std::to_string(options_.page_limit);
    if (!cont.empty()) p += "&continue=" + UrlEncode(cont);
  }
  return p;
}

Reflector::ListOutcome Reflector::List() {
  std::map<std::string, Object> fresh;
  std::string cont, rv;
  uint64_t dropped = 0;
  do {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.list_requests;
    }
    HttpResult r = client_.Get(Path(false, cont), &stop_);
    if (r.stopped || stop_.load()) return ListOutcome::kStopped;
    if (r.status == 404 && spec_.optional) return ListOutcome::kMissing;
    if (r.status == 410) return ListOutcome::kGone;  // continue token expired
    if (!r.ok()) {
      Fail("list: " + r.Describe());
      return ListOutcome::kError;
    }
    json doc = json::parse(r.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("items") ||
        !(doc["items"].is_array() || doc["items"].is_null())) {
      Fail("list: response is not a list object");
      return ListOutcome::kError;
    }
    if (doc["items"].is_array()) {
      for (const auto& item : doc["items"]) {
        Object o;
        std::string err;
        if (!DecodeObject(spec_.kind, item, &o, &err) || fresh.size() >= options_.max_objects) {
          ++dropped;
          continue;
        }
        std::string key = ObjectKey(o);
        fresh.insert_or_assign(std::move(key), std::move(o));
      }
    }
    const json& meta = doc.value("metadata", json::object());
    rv = meta.is_object() ? meta.value("resourceVersion", std::string()) : "";
    cont = meta.is_object() ? meta.value("continue", std::string()) : "";
  } while (!cont.empty());
  {
    std::lock_guard<std::mutex> lock(mu_);
    store_ = std::move(fresh);
    rv_ = rv;
    ++stats_.lists;
    stats_.dropped_objects += dropped;
    stats_.missing = false;
  }
  if (dropped > 0) {
    LOG_WARN("k8s: %s: list dropped %llu objects (undecodable or over %zu)",
             spec_.Describe().c_str(), static_cast<unsigned long long>(dropped),
             options_.max_objects);
  }
  return ListOutcome::kOk;
}

bool Reflector::HandleEvent(std::string_view line, bool* changed) {
  json ev = json::parse(line, nullptr, false);
  if (!ev.is_object()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.last_error = "watch: undecodable event";
    return false;
  }
  std::string type = ev.value("type", std::string());
  const json& obj = ev.contains("object") ? ev["object"] : json();
  if (type == "ERROR") {
    long code = obj.is_object() ? obj.value("code", 0L) : 0L;
    std::lock_guard<std::mutex> lock(mu_);
    if (code == 410) {
      need_list_ = true;
      ++stats_.relists_gone;
    }
    stats_.last_error = "watch: ERROR event code " + std::to_string(code);
    return false;
  }
  std::string rv;
  if (obj.is_object() && obj.contains("metadata") && obj["metadata"].is_object()) {
    rv = obj["metadata"].value("resourceVersion", std::string());
  }
  if (type == "BOOKMARK") {
    std::lock_guard<std::mutex> lock(mu_);
    if (!rv.empty()) rv_ = rv;
    ++stats_.events;
    return true;
  }
  if (type != "ADDED" && type != "MODIFIED" && type != "DELETED") {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.last_error = "watch: unknown event type";
    return false;
  }
  Object o;
  std::string err;
  bool decoded = DecodeObject(spec_.kind, obj, &o, &err);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.events;
  if (!rv.empty()) rv_ = rv;
  if (!decoded) {
    ++stats_.dropped_objects;
    return true;
  }
  std::string key = ObjectKey(o);
  if (type == "DELETED") {
    *changed |= store_.erase(key) > 0;
    return true;
  }
  auto it = store_.find(key);
  if (it == store_.end()) {
    if (store_.size() >= options_.max_objects) {
      ++stats_.dropped_objects;
      return true;
    }
    store_.emplace(std::move(key), std::move(o));
    *changed = true;
  } else if (!(it->second == o)) {
    it->second = std::move(o);
    *changed = true;
  }
  return true;
}

bool Reflector::WatchOnce() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.watches;
  }
  auto started = std::chrono::steady_clock::now();
  auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(options_.watch_timeout * 2 +
                                                                    options_.idle_slack);
  bool bad_event = false;
  uint64_t w_lines = 0;
  WatchResult w = client_.Watch(
      Path(true, ""), idle,
      [&](std::string_view line) {
        // The stream delivers: the server is answering again, whatever the backoff reached.
        if (w_lines++ == 0) Succeeded();
        bool changed = false;
        bool ok = HandleEvent(line, &changed);
        if (changed && on_change_) on_change_();
        if (!ok) bad_event = true;
        return ok;
      },
      &stop_);
  if (w.stopped || stop_.load()) return true;
  if (w.status == 410) {
    std::lock_guard<std::mutex> lock(mu_);
    need_list_ = true;
    ++stats_.relists_gone;
    return true;
  }
  if (bad_event) {
    std::unique_lock<std::mutex> lock(mu_);
    if (need_list_) return true;  // 410 in an ERROR event: relist at once
    std::string e = stats_.last_error;
    need_list_ = true;  // anything else we did not understand: relist after a pause
    lock.unlock();
    Fail(e);
    return false;
  }
  if (w.status != 200) {
    HttpResult as{w.status, w.body, w.error, false};
    Fail("watch: " + as.Describe());
    return false;
  }
  if (!w.error.empty() && w.status == 0) {
    Fail("watch: " + w.error);  // no answer at all (API down, TLS failure)
    return false;
  }
  if (w.line_too_long) {
    // We could not apply an event: only a relist (whose body may be larger) makes the store
    // whole again. Pause first: the object may still be that large.
    {
      std::lock_guard<std::mutex> lock(mu_);
      need_list_ = true;
    }
    Fail("watch: " + w.error);
    return false;
  }
  if (!w.error.empty()) {
    // A broken stream or an idle timeout: resume from the last resourceVersion, after a pause
    // if the stream broke right away (a server or proxy that keeps dropping us).
    if (std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
      Fail("watch: " + w.error);
      return false;
    }
    LOG_INFO("k8s: %s: watch ended (%s); resuming", spec_.Describe().c_str(), w.error.c_str());
    return true;
  }
  // The server closed the stream (timeoutSeconds or a restart). A stream that ends at once
  // with nothing in it, again and again, must not become a tight loop.
  if (w.lines == 0 && std::chrono::steady_clock::now() - started < std::chrono::seconds(1)) {
    Fail("watch: stream closed immediately");
    return false;
  }
  return true;
}

void Reflector::Run() {
  while (!stop_.load()) {
    bool list_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      list_now = need_list_;
    }
    if (list_now) {
      ListOutcome out = List();
      if (out == ListOutcome::kStopped) break;
      if (out == ListOutcome::kGone) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++stats_.relists_gone;
        }
        Fail("list: continue token expired (410)");
        continue;
      }
      if (out == ListOutcome::kError) continue;
      if (out == ListOutcome::kMissing) {
        bool had;
        {
          std::lock_guard<std::mutex> lock(mu_);
          had = !store_.empty();
          store_.clear();
          rv_.clear();
          stats_.missing = true;
        }
        if (!logged_missing_) {
          LOG_INFO("k8s: %s is not installed (404); retrying every %lld s",
                   spec_.Describe().c_str(),
                   static_cast<long long>(options_.missing_retry.count()));
          logged_missing_ = true;
        }
        bool first = !synced_.exchange(true);
        if ((had || first) && on_change_) on_change_();
        Succeeded();
        SleepFor(options_.missing_retry);
        continue;
      }
      if (logged_missing_) {
        LOG_INFO("k8s: %s is now available", spec_.Describe().c_str());
        logged_missing_ = false;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        need_list_ = false;
      }
      synced_.store(true);
      Succeeded();
      if (on_change_) on_change_();
    }
    if (stop_.load()) break;
    if (WatchOnce()) Succeeded();
  }
}

}  // namespace infertap::k8s
