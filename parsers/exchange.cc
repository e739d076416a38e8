#include "parsers/exchange.hpp"

#include <algorithm>
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

void ExchangeAssembler::MarkDamaged(Exchange& ex) {
  if (!ex.emitted) ex.rec.error = ErrorCode::kIncomplete;
}

// The one decision point for the label pair of an exchange (docs/metrics.md#seed-metrics): the
// request body's `model`, else the first `model` of the response. MaybeCount freezes it in
// rec.target_model_name before OnRequestReceived, Emit fills it the same way, so request_total
// and request_sizes (counted in MaybeCount, or by OnRecord when counted_in_flight is false) and
// every other series of the exchange use the same pair, and so does the record.
//
// When request_total is counted: once the request is fully received AND the pair is known while
// the exchange is in flight (body `model`: at once; no body `model`: at the first response chunk
// or body that names one — for a stream that is its first event). Otherwise, at the latest, when
// the exchange ends (OnRecord with counted_in_flight == false): then running_requests is not
// touched at all, so no series for an empty model is ever created for a request whose model
// only the end revealed.
void ExchangeAssembler::MaybeCount(Exchange& ex) {
  if (ex.kind != Exchange::Kind::kInference || ex.counted || ex.emitted ||
      !ex.rec.request_complete || ex.response_done) {
    return;
  }
  if (ex.rec.target_model_name.empty()) {
    if (ex.response_model.empty()) return;  // wait for the response (or the end)
    ex.rec.target_model_name = ex.response_model;
  }
  ex.counted = true;
  ex.rec.counted_in_flight = true;
  observer_.OnRequestReceived(ex.rec);
}

void ExchangeAssembler::Emit(Exchange& ex) {
  if (ex.emitted) return;
  ex.emitted = true;
  if (ex.kind == Exchange::Kind::kOther) {
    observer_.OnIgnoredExchange();
  } else if (ex.kind == Exchange::Kind::kInference) {
    if (ex.rec.target_model_name.empty()) ex.rec.target_model_name = ex.response_model;
    ex.rec.counted_in_flight = ex.counted;
    RequestRecord rec = std::move(ex.rec);
    ex.rec = RequestRecord{};
    observer_.OnRecord(std::move(rec));
  }
}

void ExchangeAssembler::MaybeEmit(Exchange& ex) {
  // docs/parsing.md#early-responses: the exchange ends when both directions are over.
  if (!ex.emitted && ex.request_done && ex.response_done) Emit(ex);
}

void ExchangeAssembler::Abort(Exchange& ex, uint64_t end_ns) {
  if (ex.emitted) return;
  SetError(ex, ErrorCode::kIncomplete);
  // A response that ended normally keeps its own end (only the request was cut).
  if (!ex.rec.response_complete) ex.rec.end_ns = end_ns;
  Emit(ex);
}

void ExchangeAssembler::CutResponse(Exchange& ex, uint64_t end_ns) {
  if (!ex.emitted) {
    SetError(ex, ErrorCode::kIncomplete);
    ex.rec.end_ns = end_ns;
  }
  ex.response_done = true;
  MaybeEmit(ex);  // an early response still waits for the end of its request
}

void ExchangeAssembler::PushHidden(uint64_t ts_ns) {
  if (!queue_.empty() && queue_.back().kind == Exchange::Kind::kHidden) return;
  if (!queue_.empty() && queue_.size() >= config_.max_pipelined) {
    // No room for the marker: the cap's rule (OnHeadersComplete) — end everything queued and
    // hide what follows. DropPairing comes back here with an empty queue.
    observer_.OnParseError("pipeline_cap");
    DropPairing(ts_ns);
    return;
  }
  Exchange& h = queue_.emplace_back();
  h.kind = Exchange::Kind::kHidden;
  h.rec.start_ns = ts_ns;
  h.request_done = true;
  h.emitted = true;
}

void ExchangeAssembler::DropPairing(uint64_t ts_ns) {
  for (Exchange& ex : queue_) {
    MarkDamaged(ex);
    Abort(ex, ts_ns);
  }
  queue_.clear();
  req_ex_ = nullptr;
  resp_ex_ = nullptr;
  skip_hi_ = 0;
  // Their responses may still come: they must not be paired with what follows.
  PushHidden(ts_ns);
}

void ExchangeAssembler::LoseRequests(uint64_t ts_ns) {
  if (req_ex_ != nullptr) {
    // Cut: it ends Incomplete now and stays queued (until its response ends) so that the answer
    // the server still sends to it is absorbed, not paired with a later request.
    Exchange* ex = req_ex_;
    req_ex_ = nullptr;
    ex->request_done = true;
    MarkDamaged(*ex);
    Abort(*ex, ts_ns);
  }
  // The lost bytes may also hold any number of whole requests.
  PushHidden(ts_ns);
  ResetRequestBody();
}

uint64_t ExchangeAssembler::CountStartedBy(uint64_t ts_ns) const {
  // Waiting exchanges (FIFO) whose request began by ts_ns. Starts grow along the queue (the
  // request stream is in order), so the count stops at the first later one. A hidden marker
  // stands for any number of requests that began before the bytes after its gap.
  uint64_t n = 0;
  for (const Exchange& ex : queue_) {
    if (ex.response_done) continue;
    if (ex.kind == Exchange::Kind::kHidden) return kUnbounded;
    if (ex.rec.start_ns > ts_ns) break;
    ++n;
  }
  // A request whose head is still arriving has no queue entry yet but may be answered too.
  if (req_parser_.in_message() && req_ex_ == nullptr && req_begin_ns_ <= ts_ns) ++n;
  return n;
}

bool ExchangeAssembler::MayAwaitInterim(uint64_t candidates) const {
  uint64_t i = 0;
  for (const Exchange& ex : queue_) {
    if (ex.response_done) continue;
    if (i++ > candidates) break;
    if (ex.kind == Exchange::Kind::kHidden || (ex.expect_continue && !ex.got_interim)) return true;
  }
  return false;
}

void ExchangeAssembler::LoseResponses(uint64_t ts_ns) {
  const RespMsg msg = resp_msg_;
  Exchange* paired = resp_ex_;
  resp_ex_ = nullptr;
  resp_interim_ = false;
  // Until the next message start the parser skips bytes it cannot place.
  resp_msg_ = RespMsg::kResync;
  ResetResponseBody();
  if (msg == RespMsg::kPaired && paired != nullptr) {
    MarkDamaged(*paired);
    CutResponse(*paired, ts_ns);
  } else if ((msg == RespMsg::kNone || msg == RespMsg::kPending) && !MayAwaitInterim(skip_hi_)) {
    // A final response was being parsed but not yet paired, or (at a message boundary) the lost
    // bytes begin one: it answers the next waiting exchange after skip_hi_ (unknown) others, so
    // the oldest waiting exchange is answered in any case. Inference servers send no unsolicited
    // 1xx, so unless a 100 Continue is due it is a final response.
    Exchange* first = FirstAwaitingResponse();
    if (first != nullptr && first->rec.start_ns <= ts_ns) {
      MarkDamaged(*first);
      CutResponse(*first, ts_ns);
    }
  }
  Reap();
  // The lost bytes were written no later than ts_ns (the bytes after them), and a response starts
  // after its request began, so they can only have answered exchanges whose request began by
  // then: the next response answers one of the first CountStartedBy(ts_ns) + 1 waiting ones.
  skip_hi_ = std::max(skip_hi_, CountStartedBy(ts_ns));
}

void ExchangeAssembler::MaybeQuietPoint() {
  bool hidden = false;
  for (const Exchange& ex : queue_) hidden = hidden || ex.kind == Exchange::Kind::kHidden;
  if ((!hidden && skip_hi_ == 0) || pipelining_seen_) return;
  // The response direction must be idle at a message boundary and nothing may have been written
  // at or after this request began (docs/parsing.md#pairing-and-loss: a client that does not pipeline sends
  // a request only after the previous response ended; the tracker delivers the other
  // direction's older bytes, and declares its older holes, before these request bytes).
  if ((resp_msg_ != RespMsg::kNone && resp_msg_ != RespMsg::kResync) ||
      resp_last_ns_ >= req_begin_ns_)
    return;
  for (Exchange& ex : queue_) {
    MarkDamaged(ex);
    Abort(ex, req_begin_ns_);
  }
  queue_.clear();
  resp_ex_ = nullptr;
  skip_hi_ = 0;
}

ExchangeAssembler::Exchange* ExchangeAssembler::PairResponse() {
  Exchange* first = FirstAwaitingResponse();
  if (first == nullptr) {
    observer_.OnParseError("orphan_response");
    return nullptr;
  }
  if (first->kind == Exchange::Kind::kHidden) {
    // Answers a hidden request, or one queued after the marker: not provable which.
    observer_.OnParseError("unpaired_response");
    return nullptr;
  }
  if (skip_hi_ > 0) {
    // It answers waiting exchange k for some 0 <= k <= skip_hi_ (the k before it were answered
    // in lost bytes): not provable which, so it is dropped. The oldest is answered either way
    // (by it or before it) and ends; the range stays, because requests whose events were lost
    // after the newest one seen would be candidates too, and nothing shows them yet. Only a
    // quiet point (MaybeQuietPoint) ends the doubt.
    observer_.OnParseError("unpaired_response");
    MarkDamaged(*first);
    CutResponse(*first, resp_begin_ns_);
    Reap();
    return nullptr;
  }
  // Causality: a server cannot answer a request it has not received yet, so a response that
  // began before the oldest waiting request belongs to a request we never saw (capture started
  // mid-connection).
  if (first->rec.start_ns > resp_begin_ns_) {
    observer_.OnParseError("orphan_response");
    return nullptr;
  }
  // A later request that began before this response began was sent before this one was
  // answered: the client pipelines (docs/parsing.md#pairing-and-loss).
  bool later = false;
  for (const Exchange& e : queue_) {
    if (&e == first) {
      later = true;
    } else if (later && e.kind != Exchange::Kind::kHidden && e.rec.start_ns < resp_begin_ns_) {
      pipelining_seen_ = true;
    }
  }
  return first;
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

// The bytes carrying the first byte of the message, also when its start was found by
// resynchronisation across several pieces (docs/records.md: start).
void ExchangeAssembler::RequestSide::OnMessageBegin() {
  a_.req_begin_ns_ = a_.req_parser_.begin_tag();
}

bool ExchangeAssembler::RequestSide::OnHeadersComplete(const HttpMessageHead& head) {
  ExchangeAssembler& a = a_;
  a.MaybeQuietPoint();
  if (a.queue_.size() >= a.config_.max_pipelined) {
    // Nothing answers this connection's requests (or we lost track). Dropping only the oldest
    // would pair its answer with the next request: end them all and hide what follows.
    a.observer_.OnParseError("pipeline_cap");
    a.DropPairing(a.now_ns_);
  }
  Exchange& ex = a.queue_.emplace_back();
  ex.expect_continue = head.expect_continue;
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
  if (ex->kind == Exchange::Kind::kInference && !ex->emitted) {
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
    a.MaybeCount(*ex);
  }
  a.MaybeEmit(*ex);
  a.ResetRequestBody();
  a.Reap();
}

void ExchangeAssembler::RequestSide::OnError(std::string_view reason) {
  ExchangeAssembler& a = a_;
  a.observer_.OnParseError(reason);
  // Malformed bytes are skipped up to the next plausible request start: like a gap, they may
  // hold requests the server answers.
  a.LoseRequests(a.now_ns_);
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
  resp_events_.Reset();
}

void ExchangeAssembler::ResponseSide::OnMessageBegin() {
  a_.resp_begin_ns_ = a_.resp_parser_.begin_tag();
  a_.resp_interim_ = false;
  a_.resp_ex_ = nullptr;
  a_.resp_msg_ = RespMsg::kPending;
}

bool ExchangeAssembler::ResponseSide::OnHeadersComplete(const HttpMessageHead& head) {
  ExchangeAssembler& a = a_;
  a.ResetResponseBody();
  if (head.status >= 100 && head.status < 200 && head.status != 101) {
    // 100 Continue, 102, 103: interim, the final response follows for the same request.
    a.resp_interim_ = true;
    a.resp_msg_ = RespMsg::kInterim;
    Exchange* first = a.FirstAwaitingResponse();
    if (a.skip_hi_ == 0 && first != nullptr && first->kind != Exchange::Kind::kHidden)
      first->got_interim = true;
    return false;
  }
  Exchange* ex = a.PairResponse();
  if (ex == nullptr) {
    a.resp_msg_ = RespMsg::kDropped;
    return false;
  }
  a.resp_msg_ = RespMsg::kPaired;
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
  if (ex.response_model.empty() && !info.model.empty()) {
    ex.response_model = info.model;
    MaybeCount(ex);
  }
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
  a.resp_msg_ = RespMsg::kNone;
  if (a.resp_interim_) {
    a.resp_interim_ = false;
    return;
  }
  Exchange* ex = a.resp_ex_;
  if (ex == nullptr) return;
  // Done before the body is interpreted: a model found now is the end of the exchange, counted
  // by OnRecord, not a request still running.
  ex->response_done = true;
  if (!ex->emitted) {
    a.FinishResponseBody();
    ex->rec.end_ns = a.now_ns_;
    ex->rec.response_complete = true;
  }
  // A later request that began before this response ended (both seen whole) proves the client
  // pipelines (docs/parsing.md#pairing-and-loss).
  bool later = false;
  for (const Exchange& e : a.queue_) {
    if (&e == ex) {
      later = true;
    } else if (later && e.kind != Exchange::Kind::kHidden && e.rec.start_ns < a.now_ns_) {
      a.pipelining_seen_ = true;
    }
  }
  ex->response_done = true;
  a.MaybeEmit(*ex);
  a.resp_ex_ = nullptr;
  a.ResetResponseBody();
  a.Reap();
}

void ExchangeAssembler::ResponseSide::OnError(std::string_view reason) {
  ExchangeAssembler& a = a_;
  a.observer_.OnParseError(reason);
  // Malformed bytes are skipped up to the next plausible response start: like a gap, they may
  // hold whole responses. HttpParser already left the message, so the boundary rule of a gap
  // does not apply; the response being parsed (if any) is cut.
  a.LoseResponses(a.now_ns_);
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
  const OpenAiResponseInfo& info = a.resp_events_.Parse(a.Extractor(), ev.data, /*padded=*/true);
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
  req_parser_.Feed(bytes, ts_ns);
}

void ExchangeAssembler::OnResponseBytes(uint64_t ts_ns, std::span<const uint8_t> bytes) {
  now_ns_ = ts_ns;
  resp_last_ns_ = ts_ns;
  if (resp_parser_.Feed(bytes, ts_ns) == ParseState::kEnd) {
    // 101 Switching Protocols: what follows on both directions is not HTTP/1.1.
    req_parser_.SetOpaque();
  }
}

void ExchangeAssembler::OnRequestGap(uint64_t ts_ns, uint64_t len) {
  if (len == 0) return;
  now_ns_ = ts_ns;
  observer_.OnParseError("gap");
  LoseRequests(ts_ns);
  req_parser_.OnGap();
  Reap();
}

void ExchangeAssembler::OnResponseGap(uint64_t ts_ns, uint64_t len) {
  if (len == 0) return;
  now_ns_ = ts_ns;
  observer_.OnParseError("gap");
  LoseResponses(ts_ns);
  resp_parser_.OnGap();
  Reap();
}

void ExchangeAssembler::OnClose(uint64_t ts_ns) {
  // A close may complete a close-delimited body: the body (and any event dispatched while
  // finishing) ended with the last bytes received, not at the close.
  now_ns_ = resp_last_ns_;
  if (resp_parser_.Finish() == ParseState::kInvalid && resp_ex_ != nullptr) {
    Exchange* ex = resp_ex_;
    ex->response_done = true;
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
  resp_msg_ = RespMsg::kNone;
  skip_hi_ = 0;
  ResetRequestBody();
  ResetResponseBody();
}

}  // namespace infertap
