#include "k8s/rest_client.hpp"

#include <curl/curl.h>

#include <cctype>
#include <mutex>
#include <nlohmann/json.hpp>

namespace infertap::k8s {
namespace {

std::once_flag g_curl_init;

void GlobalInit() {
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

long long NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string UrlEncode(std::string_view v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += {'%', hex[c >> 4], hex[c & 15]};
    }
  }
  return out;
}

std::string HttpResult::Describe() const {
  if (stopped) return "stopped";
  if (status == 0) return error.empty() ? "no response" : error;
  std::string msg;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    msg = j["message"].get<std::string>();
  }
  if (msg.size() > 200) msg.resize(200);
  return "HTTP " + std::to_string(status) + (msg.empty() ? "" : ": " + msg);
}

// Per-call state reachable from curl's callbacks.
struct RestClient::Transfer {
  const RestClient* client = nullptr;
  const std::atomic<bool>* cancel = nullptr;
  // Plain calls: the body, capped.
  std::string body;
  size_t max_body = 0;
  bool body_too_large = false;
  // Watch: line splitting.
  bool streaming = false;
  const std::function<bool(std::string_view)>* on_line = nullptr;
  std::string pending;
  size_t max_line = 0;
  size_t lines = 0;
  bool line_too_long = false;
  bool aborted_by_caller = false;
  long status = 0;  // known once headers are in
  CURL* easy = nullptr;
  // Idle timeout (watch): last time a byte arrived.
  long long idle_ms = 0;
  long long last_data_ms = 0;
  bool idle_expired = false;
  curl_slist* headers = nullptr;

  ~Transfer() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }

  static size_t OnData(char* data, size_t size, size_t nmemb, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t n = size * nmemb;
    t->last_data_ms = NowMs();
    if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    if (!t->streaming || t->status != 200) {
      if (t->body.size() + n > t->max_body) {
        t->body_too_large = true;
        return 0;  // aborts the transfer
      }
      t->body.append(data, n);
      return n;
    }
    std::string_view in(data, n);
    while (!in.empty()) {
      size_t nl = in.find('\n');
      std::string_view piece = nl == std::string_view::npos ? in : in.substr(0, nl);
      if (t->pending.size() + piece.size() > t->max_line) {
        t->line_too_long = true;
        return 0;
      }
      if (nl == std::string_view::npos) {
        t->pending.append(piece);
        break;
      }
      std::string_view line;
      if (t->pending.empty()) {
        line = piece;
      } else {
        t->pending.append(piece);
        line = t->pending;
      }
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (!line.empty()) {
        ++t->lines;
        if (!(*t->on_line)(line)) {
          t->aborted_by_caller = true;
          return 0;
        }
      }
      t->pending.clear();
      in.remove_prefix(nl + 1);
    }
    return n;
  }

  static int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(user);
    if (t->client->stop_.load() || (t->cancel != nullptr && t->cancel->load())) return 1;
    if (t->idle_ms > 0 && NowMs() - t->last_data_ms > t->idle_ms) {
      t->idle_expired = true;
      return 1;
    }
    return 0;
  }
};

RestClient::RestClient(ClusterConfig config, RestOptions options)
    : config_(std::move(config)), options_(options), tokens_(config_) {
  GlobalInit();
}

RestClient::~RestClient() = default;

void RestClient::Stop() { stop_.store(true); }

void* RestClient::NewHandle(Transfer* t, const std::string& method, const std::string& path,
                            const std::string& token, const std::string* body,
                            const std::string& content_type) const {
  CURL* h = curl_easy_init();
  if (h == nullptr) return nullptr;
  t->easy = h;
  std::string url = config_.server + path;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // never an environment proxy
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");  // gzip if the server wants
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Transfer::OnData);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &Transfer::OnProgress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (config_.insecure_skip_tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.ca_pem.empty()) {
    curl_blob blob{const_cast<char*>(config_.ca_pem.data()), config_.ca_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!config_.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, config_.ca_file.c_str());
  }
  if (!config_.client_cert_pem.empty()) {
    curl_blob cert{const_cast<char*>(config_.client_cert_pem.data()),
                   config_.client_cert_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!config_.client_key_pem.empty()) {
    curl_blob key{const_cast<char*>(config_.client_key_pem.data()), config_.client_key_pem.size(),
                  CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!config_.client_key_file.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLKEY, config_.client_key_file.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  t->headers = curl_slist_append(t->headers, "Accept: application/json");
  t->headers = curl_slist_append(t->headers, "User-Agent: infertap");
  if (!token.empty()) {
    std::string auth = "Authorization: Bearer " + token;
    t->headers = curl_slist_append(t->headers, auth.c_str());
  }
  if (body != nullptr) {
    std::string ct = "Content-Type: " + content_type;
    t->headers = curl_slist_append(t->headers, ct.c_str());
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  if (method != "GET" && method != "POST") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method.c_str());
  } else if (method == "POST" && body == nullptr) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers);
  return h;
}

namespace {

std::string CurlError(CURLcode rc, const char* errbuf) {
  std::string e = curl_easy_strerror(rc);
  if (errbuf != nullptr && errbuf[0] != '\0') e += std::string(": ") + errbuf;
  return e;
}

}  // namespace

HttpResult RestClient::Do(const std::string& method, const std::string& path,
                          const std::string* body, const std::atomic<bool>* cancel,
                          const std::string& content_type) {
  HttpResult r;
  for (int attempt = 0; attempt < 2; ++attempt) {
    r = HttpResult();
    if (stop_.load() || (cancel != nullptr && cancel->load())) {
      r.stopped = true;
      return r;
    }
    Transfer t;
    t.client = this;
    t.cancel = cancel;
    t.max_body = options_.max_body_bytes;
    std::string token_err;
    std::string token = tokens_.Get(&token_err);
    CURL* h = static_cast<CURL*>(NewHandle(&t, method, path, token, body, content_type));
    if (h == nullptr) {
      r.error = "curl_easy_init failed";
      return r;
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    if (rc != CURLE_OK) {
      r.stopped = rc == CURLE_ABORTED_BY_CALLBACK &&
                  (stop_.load() || (cancel != nullptr && cancel->load()));
      r.error = t.body_too_large
                    ? "response larger than " + std::to_string(options_.max_body_bytes) + " bytes"
                    : CurlError(rc, errbuf);
      r.status = 0;
      return r;
    }
    r.body = std::move(t.body);
    // A 401 may mean the kubelet rotated the token: re-read it and try once more.
    if (r.status == 401 && attempt == 0 && !config_.token_file.empty() && config_.token.empty()) {
      tokens_.Invalidate();
      continue;
    }
    break;
  }
  return r;
}

HttpResult RestClient::Get(const std::string& path, const std::atomic<bool>* cancel) {
  return Do("GET", path, nullptr, cancel, "");
}

HttpResult RestClient::PostJson(const std::string& path, const std::string& json_body) {
  return Do("POST", path, &json_body, nullptr, "application/json");
}

HttpResult RestClient::Request(const std::string& method, const std::string& path,
                               const std::string* body, const std::string& content_type) {
  return Do(method, path, body, nullptr, content_type);
}

WatchResult RestClient::Watch(const std::string& path, std::chrono::milliseconds idle_timeout,
                              const std::function<bool(std::string_view line)>& on_line,
                              const std::atomic<bool>* cancel) {
  WatchResult w;
  if (stop_.load() || (cancel != nullptr && cancel->load())) {
    w.stopped = true;
    return w;
  }
  Transfer t;
  t.client = this;
  t.streaming = true;
  t.cancel = cancel;
  t.on_line = &on_line;
  t.max_line = options_.max_line_bytes;
  t.max_body = 1 << 20;  // a non-200 answer (Status object) is small
  t.idle_ms = idle_timeout.count();
  t.last_data_ms = NowMs();
  std::string token = tokens_.Get();
  CURL* h = static_cast<CURL*>(NewHandle(&t, "GET", path, token, nullptr, ""));
  if (h == nullptr) {
    w.error = "curl_easy_init failed";
    return w;
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &w.status);
  w.lines = t.lines;
  w.aborted_by_caller = t.aborted_by_caller;
  if (w.status != 200) w.body = std::move(t.body);
  if (w.status == 401 && config_.token.empty() && !config_.token_file.empty()) {
    tokens_.Invalidate();  // the next attempt re-reads the file
  }
  if (rc != CURLE_OK) {
    if (t.line_too_long) {
      w.line_too_long = true;
      w.error = "watch event larger than " + std::to_string(options_.max_line_bytes) + " bytes";
    } else if (t.idle_expired) {
      w.error = "watch idle for " + std::to_string(idle_timeout.count() / 1000) + " s";
    } else if (rc == CURLE_ABORTED_BY_CALLBACK &&
               (stop_.load() || (cancel != nullptr && cancel->load()))) {
      w.stopped = true;
    } else if (!t.aborted_by_caller) {
      w.error = CurlError(rc, errbuf);
    }
  }
  return w;
}

}  // namespace infertap::k8s
