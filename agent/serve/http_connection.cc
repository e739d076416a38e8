#include "agent/serve/http_connection.hpp"

#include <sys/epoll.h>

#include <charconv>

namespace infertap::serve {
namespace {

std::string HexSize(size_t n) {
  char buf[32];
  // 32 bytes hold any size_t in hex: to_chars cannot fail here.
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), n, 16);
  (void)ec;
  return std::string(buf, p);
}

}  // namespace

HttpResponse RunHandler(const Handler& h, const RequestHead& req) {
  // A throwing handler is a bug on our side; the client gets a 500, the server keeps going.
  try {
    return h(req);
  } catch (const std::exception& e) {
    return HttpResponse::Text(500, std::string("internal error: ") + e.what());
  } catch (...) {
    return HttpResponse::Text(500, "internal error");
  }
}

HttpConnection::HttpConnection(uint64_t id, std::unique_ptr<Transport> transport,
                               const ConnectionLimits& limits, const Routes& routes,
                               ConnectionHost* host, ConnectionCounters* counters,
                               Clock::time_point now)
    : id_(id),
      transport_(std::move(transport)),
      limits_(limits),
      routes_(routes),
      host_(host),
      counters_(counters),
      parser_(limits.max_head_bytes) {
  // The first request must arrive within head_timeout of the accept (a silent connection is a
  // slow-loris too); later keep-alive requests get idle_timeout to start.
  head_started_ = true;
  head_deadline_ = now + limits_.head_timeout;
  idle_since_ = now;
  last_write_progress_ = now;
}

HttpConnection::~HttpConnection() {
  // Destroying the source unsubscribes it from its producer; after that no wake can name us.
  stream_.reset();
}

bool HttpConnection::ReadSome(std::string* buf, size_t max, Io* io) {
  size_t old = buf->size();
  buf->resize(old + max);
  size_t n = 0;
  *io = transport_->Read(buf->data() + old, max, &n);
  buf->resize(*io == Io::kData ? old + n : old);
  return *io == Io::kData;
}

bool HttpConnection::Flush(Clock::time_point now) {
  while (pending_output() > 0) {
    size_t len = std::min<size_t>(pending_output(), 1 << 20);
    size_t n = 0;
    Io io = transport_->Write(out_.data() + out_off_, len, &n);
    if (io == Io::kAgain) return true;
    if (io != Io::kData) return false;
    out_off_ += n;
    last_write_progress_ = now;
  }
  out_.clear();
  out_off_ = 0;
  return true;
}

void HttpConnection::Progress(Clock::time_point now) {
  if (closed_) return;
  transport_->ClearWantsWrite();
  if (transport_->handshaking()) {
    Io io = transport_->Handshake();
    if (io == Io::kAgain) return;
    if (io != Io::kData) {
      counters_->tls_handshake_failures++;
      Close();
      return;
    }
  }
  for (int guard = 0; guard < 64 && !closed_; ++guard) {
    switch (state_) {
      case State::kHead: {
        if (TryHead(now)) continue;  // dispatched or answered: go on with the new state
        if (closed_) return;
        // Need more bytes: never more than one head's worth beyond what the parser has taken.
        size_t room =
            limits_.max_head_bytes + 1 - std::min(parser_.head_bytes(), limits_.max_head_bytes);
        Io io;
        if (ReadSome(&in_, std::min<size_t>(16384, room), &io)) {
          if (!head_started_) {
            head_started_ = true;
            head_deadline_ = now + limits_.head_timeout;
          }
          continue;
        }
        if (io == Io::kAgain) break;
        Close();  // EOF between requests is the normal end of a keep-alive connection
        return;
      }
      case State::kWaitHandler:
        break;
      case State::kWriting:
        if (!Flush(now)) {
          Close();
          return;
        }
        if (pending_output() > 0) break;
        if (close_after_write_) {
          Close();
          return;
        }
        state_ = State::kHead;
        head_started_ = !in_.empty();
        head_deadline_ = now + limits_.head_timeout;
        idle_since_ = now;
        continue;  // a pipelined request may be waiting in in_
      case State::kStreaming: {
        // The client sends nothing during a stream; reading detects its close and keeps a chatty
        // one from filling the socket buffer. Discarded bytes are bounded per call.
        std::string sink;
        Io io;
        (void)ReadSome(&sink, 4096, &io);  // the outcome is in `io`; the bytes are discarded
        if (io == Io::kEof || io == Io::kError) {
          Close();
          return;
        }
        FillStream(now);
        if (!Flush(now)) {
          Close();
          return;
        }
        if (state_ == State::kWriting) continue;  // the stream ended
        // The socket took everything and the source had more than the cap: pull again.
        if (stream_more_ && pending_output() == 0) continue;
        if (io == Io::kData) continue;
        break;
      }
    }
    break;
  }
}

void HttpConnection::OnHandlerDone(HttpResponse resp, Clock::time_point now) {
  if (closed_ || state_ != State::kWaitHandler) return;
  Respond(std::move(resp), head_only_, now);
  Progress(now);
}

// Parses what has arrived. true when the connection moved on (handler dispatched or response
// queued); false when more bytes are needed (or the connection was closed).
bool HttpConnection::TryHead(Clock::time_point now) {
  if (in_.empty()) return false;
  size_t consumed = 0;
  HeadParse r = parser_.Feed(in_, &consumed);
  if (r == HeadParse::kNeedMore) {
    in_.clear();  // the parser has taken every byte
    return false;
  }
  head_started_ = false;
  counters_->requests++;
  if (r == HeadParse::kInvalid) return Reject(400, "malformed request", now);
  if (r == HeadParse::kTooLarge) return Reject(431, "request header too large", now);
  in_.erase(0, consumed);
  RequestHead req = parser_.Take();
  parser_.Reset();
  if (req.minor_version == 1 && req.HeaderCount("Host") != 1) {
    return Reject(400, "HTTP/1.1 request needs exactly one Host header", now);
  }
  // No endpoint takes a body; refusing them (and closing) means we never have to find where a
  // body ends, which is where request smuggling lives. (llhttp has already refused conflicting
  // or malformed framing headers with a 400.)
  if (req.Header("Transfer-Encoding") != nullptr) {
    return Reject(413, "request bodies are not accepted", now);
  }
  if (const std::string* cl = req.Header("Content-Length")) {
    if (cl->find_first_not_of('0') != std::string::npos) {
      return Reject(413, "request bodies are not accepted", now);
    }
  }
  keep_alive_ = req.KeepAlive() && !host_->stopping();
  minor_version_ = req.minor_version;
  head_only_ = req.method == "HEAD";
  auto route = routes_.find(req.path);
  if (route == routes_.end()) {
    Respond(HttpResponse::Text(404, "not found"), head_only_, now);
    return true;
  }
  if (req.method != "GET" && !head_only_) {
    HttpResponse resp = HttpResponse::Text(405, "method not allowed");
    resp.headers.emplace_back("Allow", "GET, HEAD");
    Respond(std::move(resp), false, now);
    return true;
  }
  const Route& rt = route->second;
  if (!rt.may_block) {
    Respond(RunHandler(rt.handler, req), head_only_, now);
    return true;
  }
  if (!host_->SubmitHandler(id_, &rt.handler, std::move(req))) {
    keep_alive_ = false;
    Respond(HttpResponse::Text(503, "server busy"), head_only_, now);
    return true;
  }
  state_ = State::kWaitHandler;
  return true;
}

bool HttpConnection::Reject(int status, const char* why, Clock::time_point now) {
  counters_->bad_requests++;
  in_.clear();
  keep_alive_ = false;
  Respond(HttpResponse::Text(status, why), false, now);
  return true;
}

void HttpConnection::Respond(HttpResponse resp, bool head_only, Clock::time_point now) {
  bool stream = resp.stream != nullptr && !head_only;
  // HTTP/1.0 clients get no chunked framing; their stream ends with the close.
  chunked_ = stream && minor_version_ >= 1;
  std::string& o = out_;
  o += "HTTP/1.1 ";
  o += std::to_string(resp.status);
  o += ' ';
  o += ReasonPhrase(resp.status);
  o += "\r\n";
  if (!resp.content_type.empty()) {
    o += "Content-Type: ";
    o += resp.content_type;
    o += "\r\n";
  }
  for (const auto& [k, v] : resp.headers) {
    o += k;
    o += ": ";
    o += v;
    o += "\r\n";
  }
  if (resp.stream != nullptr) {
    if (chunked_ || head_only) o += "Transfer-Encoding: chunked\r\n";
  } else {
    o += "Content-Length: ";
    o += std::to_string(resp.body.size());
    o += "\r\n";
  }
  bool keep = keep_alive_ && (!stream || chunked_);
  o += keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  close_after_write_ = !keep;
  if (!head_only && resp.stream == nullptr) o += resp.body;
  last_write_progress_ = now;
  if (!stream) {
    state_ = State::kWriting;
    return;
  }
  stream_ = std::move(resp.stream);
  state_ = State::kStreaming;
  last_stream_send_ = now;
  auto pending = std::make_shared<std::atomic<bool>>(false);
  wake_pending_ = pending;
  ConnectionHost* host = host_;
  uint64_t id = id_;
  stream_->Start([host, id, pending] {
    // Coalesce: one queued wake per burst of publishes, however many records arrive.
    if (pending->exchange(true)) return;
    host->WakeStream(id);
  });
}

// Pulls from the stream while the output is below the cap. Sets stream_more_ when it stopped at
// the cap: the source may hold more, and no wake will come for it (producers signal only when they
// go from empty to non-empty), so interest() keeps EPOLLOUT on until it is pulled.
void HttpConnection::FillStream(Clock::time_point now) {
  if (wake_pending_) wake_pending_->store(false);
  stream_more_ = false;
  while (true) {
    if (pending_output() >= limits_.stream_output_cap) {
      stream_more_ = true;
      break;
    }
    std::string chunk;
    bool more = stream_->Pull(&chunk, limits_.stream_output_cap - pending_output());
    if (!chunk.empty()) AppendStreamBytes(chunk, now);
    if (!more) {
      if (chunked_) out_ += "0\r\n\r\n";
      stream_.reset();
      state_ = State::kWriting;
      // Without chunked framing (HTTP/1.0) only the close marks the end.
      close_after_write_ = close_after_write_ || !chunked_;
      return;
    }
    if (chunk.empty()) break;
  }
}

void HttpConnection::AppendStreamBytes(const std::string& bytes, Clock::time_point now) {
  if (chunked_) {
    out_ += HexSize(bytes.size());
    out_ += "\r\n";
    out_ += bytes;
    out_ += "\r\n";
  } else {
    out_ += bytes;
  }
  last_stream_send_ = now;
}

uint32_t HttpConnection::interest() const {
  uint32_t want = 0;
  if (transport_->handshaking()) {
    want = EPOLLIN;
  } else {
    switch (state_) {
      case State::kHead:
        want = EPOLLIN;
        break;
      case State::kWaitHandler:
        want = 0;
        break;
      case State::kWriting:
        want = pending_output() > 0 ? uint32_t{EPOLLOUT} : 0u;
        break;
      case State::kStreaming:
        want = EPOLLIN | (pending_output() > 0 || stream_more_ ? uint32_t{EPOLLOUT} : 0u);
        break;
    }
  }
  if (transport_->wants_write()) want |= EPOLLOUT;
  return want;
}

bool HttpConnection::Tick(Clock::time_point now) {
  if (closed_) return true;
  bool writing = (state_ == State::kWriting || state_ == State::kStreaming) && pending_output() > 0;
  if (writing) return now - last_write_progress_ <= limits_.write_timeout;
  if (state_ == State::kHead || transport_->handshaking()) {
    return head_started_ ? now <= head_deadline_ : now - idle_since_ <= limits_.idle_timeout;
  }
  if (state_ == State::kStreaming && now - last_stream_send_ >= limits_.heartbeat_interval) {
    AppendStreamBytes(stream_->Heartbeat(), now);
    Progress(now);
  }
  return true;
}

}  // namespace infertap::serve
