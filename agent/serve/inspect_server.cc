#include "agent/serve/inspect_server.hpp"

#include <vector>

#include "agent/serve/listen_addr.hpp"

namespace infertap::serve {
namespace {

// One subscriber's stream: subscribes when the server starts it, unsubscribes when the server
// destroys it (client gone or server stopping), so the broadcaster never holds a dead client.
class RecordStream : public StreamSource {
 public:
  RecordStream(RecordBroadcaster& b, bool sse) : broadcaster_(b), sse_(sse) {}
  ~RecordStream() override {
    if (sub_) broadcaster_.Unsubscribe(sub_);
  }

  void Start(std::function<void()> wake) override {
    sub_ = broadcaster_.Subscribe(std::move(wake));
  }

  bool Pull(std::string* out, size_t max_bytes) override {
    if (sse_) {
      uint64_t dropped = sub_->dropped();
      if (dropped != reported_dropped_) {
        // Tell the reader that it missed records instead of letting it believe it saw them all.
        *out += ": dropped " + std::to_string(dropped - reported_dropped_) + "\n\n";
        reported_dropped_ = dropped;
      }
    }
    while (out->size() < max_bytes) {
      batch_.clear();
      sub_->Drain(&batch_, 256);
      if (batch_.empty()) break;
      for (const auto& json : batch_) {
        if (sse_) *out += "data: ";
        *out += *json;
        *out += sse_ ? "\n\n" : "\n";
      }
    }
    return true;  // a record stream ends only when the client or the server goes
  }

  std::string Heartbeat() override { return sse_ ? ": keep-alive\n\n" : "\n"; }

 private:
  RecordBroadcaster& broadcaster_;
  const bool sse_;
  std::shared_ptr<RecordBroadcaster::Subscription> sub_;
  std::vector<std::shared_ptr<const std::string>> batch_;
  uint64_t reported_dropped_ = 0;
};

}  // namespace

bool WantsSse(const RequestHead& req) {
  std::string format = req.QueryParam("format");
  if (format == "sse") return true;
  if (!format.empty()) return false;
  const std::string* accept = req.Header("Accept");
  return accept != nullptr && accept->find("text/event-stream") != std::string::npos;
}

InspectServer::InspectServer(InspectServerOptions options, RecordBroadcaster& records)
    : options_(std::move(options)), records_(records), http_(options_.http) {
  http_.Handle("/v1/state", [this](const RequestHead&) {
    HttpResponse r;
    r.content_type = "application/json";
    r.body = options_.state ? options_.state() : "{}";
    if (r.body.empty() || r.body.back() != '\n') r.body.push_back('\n');
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  });
  // Inline: creating the stream is cheap, and the subscription must start on the loop thread.
  http_.Handle(
      "/v1/records", [this](const RequestHead& req) { return ServeRecords(req); },
      /*may_block=*/false);
}

Status InspectServer::Start() {
  ListenAddr a;
  if (Status s = ParseListenAddr(options_.http.addr, &a); !s.ok()) return s;
  if (!IsLoopbackListenAddr(a) && !options_.allow_non_loopback) {
    return Status::Error("--inspect-addr " + options_.http.addr +
                         " is not a loopback address; the inspection API has no authentication "
                         "(use 127.0.0.1:PORT or [::1]:PORT, or set the explicit override)");
  }
  return http_.Start();
}

HttpResponse InspectServer::ServeRecords(const RequestHead& req) {
  std::string format = req.QueryParam("format");
  if (!format.empty() && format != "sse" && format != "json" && format != "ndjson") {
    return HttpResponse::Text(400, "unknown format \"" + format + "\" (want sse or json)");
  }
  bool sse = WantsSse(req);
  HttpResponse r;
  r.content_type = sse ? "text/event-stream" : "application/x-ndjson";
  r.headers.emplace_back("Cache-Control", "no-cache");
  // Tells nginx-style proxies not to buffer the stream.
  r.headers.emplace_back("X-Accel-Buffering", "no");
  r.stream = std::make_shared<RecordStream>(records_, sse);
  return r;
}

}  // namespace infertap::serve
