#include "agent/cli/inspect/agent_client.hpp"

#include <curl/curl.h>

#include <mutex>

namespace infertap::cli {
namespace {

// /v1/state is a few KiB per pool; anything near this is not our agent.
constexpr size_t kMaxStateBytes = 16 << 20;
constexpr long kConnectTimeoutMs = 3000;
constexpr long kStateTimeoutMs = 5000;
// The agent sends a heartbeat every ~5 s; 30 s of silence means it (or a port-forward) is gone.
constexpr long kRecordsSilenceS = 30;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::optional<std::string> NormalizeAgentUrl(std::string_view url, std::string* error) {
  std::string scheme = "http";
  std::string_view rest = url;
  if (size_t end = url.find("://"); end != std::string_view::npos) {
    scheme = std::string(url.substr(0, end));
    rest = url.substr(end + 3);
    if (scheme != "http" && scheme != "https") {
      *error = "--agent " + std::string(url) + ": want an http:// or https:// URL";
      return std::nullopt;
    }
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) {
    *error = "--agent \"" + std::string(url) + "\": no host";
    return std::nullopt;
  }
  return scheme + "://" + std::string(rest);
}

std::string UnreachableMessage(std::string_view command, std::string_view url,
                               std::string_view reason) {
  return "infertap " + std::string(command) + ": cannot reach the agent at " + std::string(url) +
         ": " + std::string(reason) + " (is infertap run running? see --agent)";
}

void LineSplitter::Feed(std::string_view bytes, std::vector<std::string>* lines) {
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);
    if (!skipping_) {
      if (partial_.size() + piece.size() > max_line_) {
        skipping_ = true;
        partial_.clear();
        ++overlong_;
      } else {
        partial_.append(piece);
      }
    }
    if (nl == std::string_view::npos) return;
    bytes.remove_prefix(nl + 1);
    if (!skipping_) {
      if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
      if (!partial_.empty()) lines->push_back(std::move(partial_));
    }
    partial_.clear();
    skipping_ = false;
  }
}

struct AgentClient::Transfer {
  bool records = false;
  CURL* easy = nullptr;
  bool running = false;
  bool answered = false;  // response headers with a 2xx status were complete
  char errbuf[CURL_ERROR_SIZE] = {};
  LineSplitter splitter;
  std::vector<std::string> lines;
  std::string body;
  bool too_big = false;

  static CURL* NewEasy(const std::string& url, Transfer* transfer, char* errbuf);

  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }

  static size_t OnWrite(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * n;
    if (t->records) {
      t->splitter.Feed(std::string_view(data, len), &t->lines);
    } else {
      if (t->body.size() + len > kMaxStateBytes) {
        t->too_big = true;
        return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
      }
      t->body.append(data, len);
    }
    return len;
  }

  static size_t OnHeader(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t len = size * n;
    std::string_view line(data, len);
    // The empty line ends a header block; interim 1xx blocks come before the real one.
    if (line == "\r\n" || line == "\n") {
      long code = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
      if (code >= 200 && code < 300) t->answered = true;
    }
    return len;
  }
};

AgentClient::AgentClient(std::string base_url) : base_url_(std::move(base_url)) {
  GlobalInit();
  multi_ = curl_multi_init();
}

AgentClient::~AgentClient() {
  for (Transfer* t : {records_.get(), state_.get()}) {
    if (t != nullptr && t->running) curl_multi_remove_handle(multi_, t->easy);
  }
  records_.reset();
  state_.reset();
  curl_multi_cleanup(multi_);
}

CURL* AgentClient::Transfer::NewEasy(const std::string& url, Transfer* transfer, char* errbuf) {
  CURL* e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  // The API is loopback-only (docs/serving.md); an http_proxy from the environment can only get in
  // the way (a proxy cannot reach the agent's 127.0.0.1).
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, long(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(e, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "infertap-cli");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Transfer::OnWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, transfer);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Transfer::OnHeader);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, transfer);
  return e;
}

void AgentClient::StartRecords() {
  if (records_ && records_->running) return;
  records_ = std::make_unique<Transfer>();
  records_->records = true;
  // ?format=json asks for JSON lines explicitly instead of relying on the default.
  records_->easy =
      Transfer::NewEasy(base_url_ + "/v1/records?format=json", records_.get(), records_->errbuf);
  curl_easy_setopt(records_->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(records_->easy, CURLOPT_LOW_SPEED_TIME, kRecordsSilenceS);
  curl_easy_setopt(records_->easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_multi_add_handle(multi_, records_->easy);
  records_->running = true;
  records_failure_.reset();
  records_never_opened_ = false;
}

void AgentClient::StartState() {
  if (state_ && state_->running) return;
  state_ = std::make_unique<Transfer>();
  state_->easy = Transfer::NewEasy(base_url_ + "/v1/state", state_.get(), state_->errbuf);
  curl_easy_setopt(state_->easy, CURLOPT_TIMEOUT_MS, kStateTimeoutMs);
  curl_multi_add_handle(multi_, state_->easy);
  state_->running = true;
}

void AgentClient::Poll(int timeout_ms, std::span<pollfd> fds) {
  std::vector<curl_waitfd> extra(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) {
    extra[i].fd = fds[i].fd;
    extra[i].events = short(fds[i].events);
    extra[i].revents = 0;
  }
  curl_multi_poll(static_cast<CURLM*>(multi_), extra.data(), unsigned(extra.size()),
                  std::max(0, timeout_ms), nullptr);
  for (size_t i = 0; i < fds.size(); ++i) fds[i].revents = extra[i].revents;
  int running = 0;
  curl_multi_perform(static_cast<CURLM*>(multi_), &running);
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(static_cast<CURLM*>(multi_), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    for (Transfer* t : {records_.get(), state_.get()}) {
      if (t != nullptr && t->running && t->easy == msg->easy_handle) Finish(*t, msg->data.result);
    }
  }
}

void AgentClient::Finish(Transfer& t, int curl_code) {
  curl_multi_remove_handle(static_cast<CURLM*>(multi_), t.easy);
  t.running = false;
  long http = 0;
  curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &http);
  std::string reason;
  std::string brief;
  if (curl_code != CURLE_OK) {
    // curl's error buffer has the detail (address, port, timings); its code name is the gist.
    brief = curl_easy_strerror(CURLcode(curl_code));
    reason = t.errbuf[0] != '\0' ? t.errbuf : brief;
    if (t.too_big) reason = brief = "the state document is larger than 16 MiB";
  } else if (http < 200 || http >= 300) {
    reason = brief = "unexpected HTTP status " + std::to_string(http);
  }
  if (t.records) {
    if (reason.empty()) reason = brief = "the agent closed the record stream";
    records_failure_ = reason;
    records_failure_brief_ = brief;
    records_never_opened_ = !t.answered;
  } else {
    StateResult r;
    r.ok = reason.empty();
    r.error = reason;
    if (r.ok) r.body = std::move(t.body);
    state_result_ = std::move(r);
  }
}

std::vector<std::string> AgentClient::TakeRecordLines() {
  std::vector<std::string> out;
  if (records_) out.swap(records_->lines);
  return out;
}

bool AgentClient::records_open() const {
  return records_ && records_->running && records_->answered;
}

std::optional<std::string> AgentClient::TakeRecordsFailure() {
  auto f = std::move(records_failure_);
  records_failure_.reset();
  return f;
}

std::optional<AgentClient::StateResult> AgentClient::TakeStateResult() {
  auto r = std::move(state_result_);
  state_result_.reset();
  return r;
}

bool AgentClient::state_in_flight() const { return state_ && state_->running; }

uint64_t AgentClient::overlong_record_lines() const {
  return records_ ? records_->splitter.overlong_lines() : 0;
}

}  // namespace infertap::cli
