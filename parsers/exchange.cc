#include "parsers/exchange.hpp"

#include <memory>
#include <utility>

namespace infertap {
namespace {

constexpr std::string_view kInferencePaths[] = {"/v1/completions", "/v1/chat/completions",
                                                "/v1/embeddings", "/v1/responses"};
// Paths are record fields, never label values; still, keep them short.
constexpr size_t kMaxPath = 1024;
// Buffers larger than this are freed after each body (10k idle connections, docs/performance.md).
constexpr size_t kKeepCapacity = 16 * 1024;

std::string_view PathOf(std::string_view target) {
  size_t q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool StatusIsError(int status) { return ErrorCodeForStatus(status) != ErrorCode::kNone; }

}  // namespace

ExchangeAssembler::ExchangeAssembler(const ExchangeConfig& config, ExchangeObserver& observer)
    : config_(config),
      observer_(observer),
      req_side_(*this),
      resp_side_(*this),
      req_parser_(HttpParser::Kind::kRequest, config.max_header_bytes, req_side_),
      resp_parser_(HttpParser::Kind::kResponse, config.max_header_bytes, resp_side_),
      sse_(config.max_sse_event_bytes),
      req_inflate_(config.max_decoded_bytes),
      resp_inflate_(config.max_decoded_bytes) {}

OpenAiExtractor& ExchangeAssembler::Extractor() {
  if (config_.extractor) return *config_.extractor;
  // Bounded by the capture caps, not by the extractor: it never sees more than they let through.
  thread_local OpenAiExtractor shared(size_t(64) * 1024 * 1024);
  return shared;
}

bool ExchangeAssembler::IsInferencePath(std::string_view target) const {
  std::string_view path = PathOf(target);
  for (std::string_view p : kInferencePaths)
    if (path == p) return true;
  for (const std::string& p : config_.extra_inference_paths)
    if (path == p) return true;
  return false;
}

void ExchangeAssembler::Capture::Append(std::span<const uint8_t> bytes, size_t cap) {
  if (overflow) return;
  if (buf.size() + bytes.size() > cap) {
    overflow = true;
    size_t room = cap - buf.size();
    buf.append(reinterpret_cast<const char*>(bytes.data()), room);
    return;
  }
  buf.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void ExchangeAssembler::Capture::Release() {
  buf.clear();
  if (buf.capacity() > kKeepCapacity) buf.shrink_to_fit();
  overflow = false;
}

void ExchangeAssembler::SetError(Exchange& ex, ErrorCode code) {
  if (ex.rec.error == ErrorCode::kNone) ex.rec.error = code;
}

void ExchangeAssembler::Emit(Exchange& ex) {
  if (ex.emitted) return;
  ex.emitted = true;
  if (ex.kind == Exchange::Kind::kOther) {
    observer_.OnIgnoredExchange();
  } else if (ex.kind == Exchange::Kind::kInference) {
    if (ex.rec.target_model_name.empty()) ex.rec.target_model_name = ex.response_model;
    RequestRecord rec = std::move(ex.rec);
    ex.rec = RequestRecord{};
    observer_.OnRecord(std::move(rec));
  }
}

void ExchangeAssembler::Abort(Exchange& ex, uint64_t end_ns) {
  if (ex.emitted) return;
  SetError(ex, ErrorCode::kIncomplete);
  ex.rec.end_ns = end_ns;
  Emit(ex);
}

void ExchangeAssembler::Reap() {
  while (!queue_.empty()) {
    Exchange& f = queue_.front();
    if (!(f.request_done && f.response_done && f.emitted)) break;
    if (&f == req_ex_) req_ex_ = nullptr;
    if (&f == resp_ex_) resp_ex_ = nullptr;
    queue_.pop_front();
  }
}

ExchangeAssembler::Exchange* ExchangeAssembler::FirstAwaitingResponse() {
  for (Exchange& ex : queue_)
    if (!ex.response_done) return &ex;
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Request direction

void ExchangeAssembler::RequestSide::OnMessageBegin() { a_.req_begin_ns_ = a_.now_ns_; }

bool ExchangeAssembler::RequestSide::OnHeadersComplete(const HttpMessageHead& head) {
  ExchangeAssembler& a = a_;
  if (a.queue_.size() >= a.config_.max_pipelined) {
    // Nothing answers this connection's requests (or we lost track): drop the oldest.
    a.observer_.OnParseError("pipeline_cap");
    Exchange& old = a.queue_.front();
    a.Abort(old, a.now_ns_);
    old.request_done = old.response_done = true;
    if (&old == a.resp_ex_) a.resp_ex_ = nullptr;
    a.Reap();
  }
  Exchange& ex = a.queue_.emplace_back();
  ex.kind = (head.method == "POST" && a.IsInferencePath(head.target)) ? Exchange::Kind::kInference
                                                                      : Exchange::Kind::kOther;
  ex.rec.start_ns = a.req_begin_ns_;
  ex.rec.method = head.method;
  ex.rec.path = std::string(PathOf(head.target).substr(0, kMaxPath));
  a.req_ex_ = &ex;
  a.ResetRequestBody();
  if (ex.kind == Exchange::Kind::kInference) {
    Inflater::Encoding enc = Inflater::EncodingFor(head.content_encoding);
    if (enc != Inflater::Encoding::kIdentity) {
      a.req_decode_ = true;
      a.req_inflate_.Start(enc);
    }
  }
  return false;
}

void ExchangeAssembler::ResetRequestBody() {
  req_json_.Release();
  req_inflate_.End();
  req_decode_ = false;
}

void ExchangeAssembler::RequestBodyBytes(std::span<const uint8_t> decoded) {
  bool was_overflow = req_json_.overflow;
  req_json_.Append(decoded, config_.max_json_body_bytes);
  if (req_json_.overflow && !was_overflow) observer_.OnParseError("body_cap");
}

void ExchangeAssembler::RequestSide::OnBody(std::span<const uint8_t> bytes) {
  ExchangeAssembler& a = a_;
  Exchange* ex = a.req_ex_;
  if (ex == nullptr) return;
  ex->rec.request_bytes += bytes.size();
  if (ex->kind != Exchange::Kind::kInference) return;
  if (!a.req_decode_) {
    a.RequestBodyBytes(bytes);
  } else if (!a.req_inflate_.failed()) {
    a.req_inflate_.Feed(bytes, [&a](std::span<const uint8_t> d) { a.RequestBodyBytes(d); });
  }
}

void ExchangeAssembler::RequestSide::OnMessageComplete() {
  ExchangeAssembler& a = a_;
  Exchange* ex = a.req_ex_;
  a.req_ex_ = nullptr;
  if (ex == nullptr) return;
  ex->request_done = true;
  if (ex->kind == Exchange::Kind::kInference) {
    bool decode_failed = a.req_decode_ && (a.req_inflate_.failed() || !a.req_inflate_.finished());
    if (decode_failed) {
      a.observer_.OnParseError("decode_error");
    } else if (a.req_json_.overflow) {
      if (auto m = ScanTopLevelModel(a.req_json_.buf)) ex->rec.target_model_name = *m;
    } else if (ex->rec.request_bytes > 0) {
      OpenAiRequestInfo info = a.Extractor().ParseRequest(a.req_json_.buf);
      if (!info.valid) a.observer_.OnParseError("json_invalid");
      ex->rec.target_model_name = std::move(info.model);
    }
    ex->rec.request_complete = true;
    if (!ex->emitted) a.observer_.OnRequestReceived(ex->rec);
  }
  a.ResetRequestBody();
  a.Reap();
}

void ExchangeAssembler::RequestSide::OnError(std::string_view reason) {
  ExchangeAssembler& a = a_;
  a.observer_.OnParseError(reason);
  Exchange* ex = a.req_ex_;
  a.req_ex_ = nullptr;
  a.ResetRequestBody();
  if (ex == nullptr) return;
  // The request was cut by malformed bytes: it ends Incomplete now, and stays queued so that
  // whatever the server answers to it is not paired with the next request.
  ex->request_done = true;
  a.Abort(*ex, a.now_ns_);
  a.Reap();
}

// ---------------------------------------------------------------------------------------------
// Response direction

void ExchangeAssembler::ResetResponseBody() {
  sse_.Reset();
  resp_json_.Release();
  resp_inflate_.End();
  resp_decode_ = false;
  resp_stream_ = false;
  resp_json_type_ = false;
  resp_json_reported_ = false;
}

void ExchangeAssembler::ResponseSide::OnMessageBegin() {
  a_.resp_begin_ns_ = a_.now_ns_;
  a_.resp_interim_ = false;
  a_.resp_ex_ = nullptr;
}

bool ExchangeAssembler::ResponseSide::OnHeadersComplete(const HttpMessageHead& head) {
  ExchangeAssembler& a = a_;
  a.ResetResponseBody();
  if (head.status >= 100 && head.status < 200 && head.status != 101) {
    // 100 Continue, 102, 103: interim, the final response follows for the same request.
    a.resp_interim_ = true;
    return false;
  }
  Exchange* ex = a.FirstAwaitingResponse();
  // Causality: a server cannot answer a request it has not received yet, so a response that
  // began before the oldest waiting request belongs to a request we never saw (capture started
  // mid-connection, or lost in a gap).
  if (ex == nullptr || ex->rec.start_ns > a.resp_begin_ns_) {
    a.observer_.OnParseError("orphan_response");
    return false;
  }
  a.resp_ex_ = ex;
  bool skip_body = ex->rec.method == "HEAD";
  if (ex->emitted || ex->kind != Exchange::Kind::kInference) return skip_body;
  ex->rec.status = head.status;
  if (StatusIsError(head.status)) a.SetError(*ex, ErrorCodeForStatus(head.status));
  a.resp_stream_ = std::string_view(head.content_type).starts_with("text/event-stream");
  a.resp_json_type_ = head.content_type.find("json") != std::string::npos;
  ex->rec.stream = a.resp_stream_;
  Inflater::Encoding enc = Inflater::EncodingFor(head.content_encoding);
  if (enc != Inflater::Encoding::kIdentity) {
    a.resp_decode_ = true;
    a.resp_inflate_.Start(enc);
  }
  return skip_body;
}

void ExchangeAssembler::ResponseBodyBytes(std::span<const uint8_t> decoded) {
  if (resp_stream_) {
    sse_.Feed(decoded, resp_side_);
    return;
  }
  bool was_overflow = resp_json_.overflow;
  resp_json_.Append(decoded, config_.max_json_body_bytes);
  if (resp_json_.overflow && !was_overflow) observer_.OnParseError("body_cap");
}

void ExchangeAssembler::ResponseSide::OnBody(std::span<const uint8_t> bytes) {
  ExchangeAssembler& a = a_;
  Exchange* ex = a.resp_ex_;
  if (ex == nullptr || a.resp_interim_ || ex->emitted) return;
  ex->rec.response_bytes += bytes.size();
  if (ex->kind != Exchange::Kind::kInference) return;
  if (!a.resp_decode_) {
    a.ResponseBodyBytes(bytes);
  } else if (!a.resp_inflate_.failed()) {
    a.resp_inflate_.Feed(bytes, [&a](std::span<const uint8_t> d) { a.ResponseBodyBytes(d); });
  }
}

void ExchangeAssembler::ApplyResponseInfo(Exchange& ex, const OpenAiResponseInfo& info) {
  if (info.error) {
    ex.body_error = true;
    SetError(ex, ErrorCode::kModelServerError);
  }
  if (ex.response_model.empty() && !info.model.empty()) ex.response_model = info.model;
  if (info.has_usage) {
    // Continuous usage stats repeat the cumulative usage on every chunk: the last one wins.
    ex.rec.input_tokens = info.input_tokens;
    ex.rec.output_tokens = info.output_tokens;
    ex.rec.cached_tokens = info.cached_tokens;
  }
}

void ExchangeAssembler::FinishResponseBody() {
  Exchange* ex = resp_ex_;
  if (ex == nullptr || ex->emitted || ex->kind != Exchange::Kind::kInference) return;
  if (resp_decode_ && (resp_inflate_.failed() || !resp_inflate_.finished())) {
    // Sizes and timing stay; whatever was decoded before the failure is still used below, but a
    // broken stream is reported.
    observer_.OnParseError("decode_error");
  }
  if (resp_stream_) {
    sse_.Finish(resp_side_);
    return;
  }
  if (resp_json_.overflow || resp_json_.buf.empty()) return;
  OpenAiResponseInfo info = Extractor().ParseResponse(resp_json_.buf);
  if (!info.valid) {
    // Plain-text error pages are normal; only a body that claims to be JSON is malformed.
    if (resp_json_type_) observer_.OnParseError("json_invalid");
    return;
  }
  ApplyResponseInfo(*ex, info);
}

void ExchangeAssembler::ResponseSide::OnMessageComplete() {
  ExchangeAssembler& a = a_;
  if (a.resp_interim_) {
    a.resp_interim_ = false;
    return;
  }
  Exchange* ex = a.resp_ex_;
  if (ex == nullptr) return;
  if (!ex->emitted) {
    a.FinishResponseBody();
    ex->rec.end_ns = a.now_ns_;
    ex->rec.response_complete = true;
    a.Emit(*ex);
  }
  ex->response_done = true;
  a.resp_ex_ = nullptr;
  a.ResetResponseBody();
  a.Reap();
}

void ExchangeAssembler::ResponseSide::OnError(std::string_view reason) {
  ExchangeAssembler& a = a_;
  a.observer_.OnParseError(reason);
  Exchange* ex = a.resp_ex_;
  a.resp_ex_ = nullptr;
  a.resp_interim_ = false;
  a.ResetResponseBody();
  if (ex == nullptr) return;
  a.Abort(*ex, a.now_ns_);
  ex->response_done = true;
  a.Reap();
}

void ExchangeAssembler::ResponseSide::OnEvent(const SseEvent& ev) {
  ExchangeAssembler& a = a_;
  Exchange* ex = a.resp_ex_;
  if (ex == nullptr || ex->emitted || ex->kind != Exchange::Kind::kInference) return;
  if (ev.error_line || ev.type == "error") {
    ex->body_error = true;
    a.SetError(*ex, ErrorCode::kModelServerError);
    return;
  }
  if (ev.data == "[DONE]") return;
  OpenAiResponseInfo info = a.Extractor().ParseResponse(ev.data, /*padded=*/true);
  if (!info.valid) {
    if (!a.resp_json_reported_) a.observer_.OnParseError("json_invalid");
    a.resp_json_reported_ = true;
    return;
  }
  a.ApplyResponseInfo(*ex, info);
  if (info.generated) {
    ++ex->rec.chunks;
    if (!ex->rec.first_token_ns) ex->rec.first_token_ns = a.now_ns_;
  }
}

void ExchangeAssembler::ResponseSide::OnOversize() { a_.observer_.OnParseError("sse_oversize"); }

// ---------------------------------------------------------------------------------------------
// Entry points

void ExchangeAssembler::OnRequestBytes(uint64_t ts_ns, std::span<const uint8_t> bytes) {
  now_ns_ = ts_ns;
  req_parser_.Feed(bytes);
}

void ExchangeAssembler::OnResponseBytes(uint64_t ts_ns, std::span<const uint8_t> bytes) {
  now_ns_ = ts_ns;
  resp_last_ns_ = ts_ns;
  if (resp_parser_.Feed(bytes) == ParseState::kEnd) {
    // 101 Switching Protocols: what follows on both directions is not HTTP/1.1.
    req_parser_.SetOpaque();
  }
}

void ExchangeAssembler::OnRequestGap(uint64_t ts_ns, uint64_t len) {
  if (len == 0) return;
  now_ns_ = ts_ns;
  observer_.OnParseError("gap");
  if (req_ex_ != nullptr) {
    Exchange* ex = req_ex_;
    req_ex_ = nullptr;
    ex->request_done = true;
    Abort(*ex, ts_ns);
  } else {
    // The lost bytes began a request we will never see; queue a stand-in so that its response
    // is absorbed instead of being paired with the next request.
    if (queue_.size() >= config_.max_pipelined) {
      observer_.OnParseError("pipeline_cap");
      Exchange& old = queue_.front();
      Abort(old, ts_ns);
      old.request_done = old.response_done = true;
      if (&old == resp_ex_) resp_ex_ = nullptr;
      Reap();
    }
    Exchange& ph = queue_.emplace_back();
    ph.rec.start_ns = ts_ns;
    ph.request_done = true;
    ph.emitted = true;
  }
  ResetRequestBody();
  req_parser_.OnGap();
  Reap();
}

void ExchangeAssembler::OnResponseGap(uint64_t ts_ns, uint64_t len) {
  if (len == 0) return;
  now_ns_ = ts_ns;
  observer_.OnParseError("gap");
  Exchange* ex = resp_ex_;
  if (ex == nullptr) {
    // Between responses (or inside a 1xx): the lost bytes began the next final response.
    ex = FirstAwaitingResponse();
    if (ex != nullptr && ex->rec.start_ns > ts_ns) ex = nullptr;
  }
  resp_ex_ = nullptr;
  resp_interim_ = false;
  ResetResponseBody();
  if (ex != nullptr) {
    Abort(*ex, ts_ns);
    ex->response_done = true;
  }
  resp_parser_.OnGap();
  Reap();
}

void ExchangeAssembler::OnClose(uint64_t ts_ns) {
  // A close may complete a close-delimited body: the body (and any event dispatched while
  // finishing) ended with the last bytes received, not at the close.
  now_ns_ = resp_last_ns_;
  if (resp_parser_.Finish() == ParseState::kInvalid && resp_ex_ != nullptr) {
    Exchange* ex = resp_ex_;
    // A usage chunk written just before the connection closed still counts (docs/parsing.md).
    if (resp_stream_ && !ex->emitted) FinishResponseBody();
    Abort(*ex, ts_ns);
    ex->response_done = true;
  }
  now_ns_ = ts_ns;
  if (req_parser_.Finish() == ParseState::kInvalid && req_ex_ != nullptr) {
    req_ex_->request_done = true;
    Abort(*req_ex_, ts_ns);
  }
  for (Exchange& ex : queue_) Abort(ex, ts_ns);
  queue_.clear();
  req_ex_ = nullptr;
  resp_ex_ = nullptr;
  resp_interim_ = false;
  ResetRequestBody();
  ResetResponseBody();
}

}  // namespace infertap
