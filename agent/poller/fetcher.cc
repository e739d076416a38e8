#include "agent/poller/fetcher.hpp"

#include <curl/curl.h>

namespace infertap::poller {

struct HttpFetcher::Transfer {
  uint64_t id = 0;
  CURL* easy = nullptr;
  std::string body;
  size_t cap = 0;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};
};

HttpFetcher::HttpFetcher(FetchOptions options) : options_(options) {
  // Reference-counted, and thread-safe in libcurl >= 7.84 (Debian 12 ships 7.88).
  curl_global_init(CURL_GLOBAL_DEFAULT);
  multi_ = curl_multi_init();
  // Ask for 0.0.4 first (what every engine serves); OpenMetrics is parsed too if a server insists.
  curl_slist* h = nullptr;
  h = curl_slist_append(
      h,
      "Accept: text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,"
      "*/*;q=0.1");
  headers_ = h;
}

HttpFetcher::~HttpFetcher() {
  for (auto& [id, t] : transfers_) {
    curl_multi_remove_handle(static_cast<CURLM*>(multi_), t->easy);
    curl_easy_cleanup(t->easy);
  }
  transfers_.clear();
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
  curl_slist_free_all(static_cast<curl_slist*>(headers_));
  curl_global_cleanup();
}

size_t HttpFetcher::OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (t->body.size() + n > t->cap) {
    t->too_large = true;
    return 0;  // makes libcurl abort the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(data, n);
  return n;
}

bool HttpFetcher::Start(uint64_t id, const std::string& url) {
  if (!multi_ || transfers_.count(id)) return false;
  auto t = std::make_unique<Transfer>();
  t->id = id;
  t->cap = options_.max_body_bytes;
  CURL* e = curl_easy_init();
  if (!e) return false;
  t->easy = e;
  const long timeout_ms = static_cast<long>(options_.timeout.count());
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(headers_));
  curl_easy_setopt(e, CURLOPT_USERAGENT, "infertap-pool-poller");
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options_.max_body_bytes));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpFetcher::OnBody);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
  if (curl_multi_add_handle(static_cast<CURLM*>(multi_), e) != CURLM_OK) {
    curl_easy_cleanup(e);
    return false;
  }
  transfers_.emplace(id, std::move(t));
  return true;
}

void HttpFetcher::Cancel(uint64_t id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return;
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), it->second->easy);
  curl_easy_cleanup(it->second->easy);
  transfers_.erase(it);
}

void HttpFetcher::Wakeup() {
  if (multi_) curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

void HttpFetcher::Poll(std::chrono::milliseconds max_wait,
                       const std::function<void(uint64_t, FetchResult&&)>& on_done) {
  auto* multi = static_cast<CURLM*>(multi_);
  int running = 0;
  curl_multi_perform(multi, &running);
  // curl_multi_poll returns early on socket activity, timer expiry or Wakeup().
  if (running > 0 || transfers_.empty()) {
    curl_multi_poll(multi, nullptr, 0, static_cast<int>(max_wait.count()), nullptr);
    curl_multi_perform(multi, &running);
  }
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    Transfer* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
    if (!t) continue;
    FetchResult r;
    CURLcode code = msg->data.result;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r.http_status);
    if (char* ct = nullptr;
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct) {
      r.content_type = ct;
    }
    if (code == CURLE_OK && r.http_status == 200) {
      r.ok = true;
      r.body = std::move(t->body);
    } else if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
      r.error = "body larger than " + std::to_string(options_.max_body_bytes) + " bytes";
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
      r.error = "timeout after " + std::to_string(options_.timeout.count()) + " ms";
    } else if (code != CURLE_OK) {
      r.error = t->error[0] ? t->error : curl_easy_strerror(code);
    } else {
      r.error = "HTTP " + std::to_string(r.http_status);
    }
    uint64_t id = t->id;
    curl_multi_remove_handle(multi, t->easy);
    curl_easy_cleanup(t->easy);
    transfers_.erase(id);  // destroys t
    on_done(id, std::move(r));
  }
}

}  // namespace infertap::poller
