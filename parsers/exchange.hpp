// Per-connection exchange assembler: the piece the agent calls for every traced connection.
//
// It receives the two ordered byte streams of one connection (client→server "request" bytes and
// server→client "response" bytes, each piece stamped with the CLOCK_MONOTONIC time of the syscall
// that carried it), parses them with two HttpParsers, pairs requests with responses in FIFO order
// (HTTP/1.1 pipelining), interprets inference bodies (JSON, SSE, gzip/deflate) and reports one
// RequestRecord per inference exchange (docs/parsing.md, docs/records.md,
// docs/metrics.md#error-codes).
//
// Usage (the agent, one assembler per connection, all calls on one thread):
//
//   ExchangeAssembler a(config, observer);
//   a.OnRequestBytes(ts, bytes);   // in stream order, any split
//   a.OnResponseBytes(ts, bytes);
//   a.OnRequestGap(ts, n);         // n bytes of a direction were lost in capture
//   a.OnClose(ts);                 // connection closed/reset: finishes everything pending
//
// Callbacks to ExchangeObserver happen synchronously inside those calls.
//
// Record rules:
//  - start_ns: ts of the bytes carrying the first byte of the request line. end_ns: ts of the
//    bytes carrying the last byte of the response body (terminal chunk, Content-Length reached,
//    last byte before a close that delimits the body), or of the close/gap that cut the exchange.
//  - first_token_ns: ts of the bytes that completed the first SSE event with generated content
//    (never the response headers: vLLM sends them before prefill).
//  - error: the first error wins. An HTTP error status is known at the response headers, so it
//    wins over an error event in the body and over a later cut. In a 2xx response, an error
//    object/event in the body gives ModelServerError. A response cut by close or gap (or a
//    request cut before its response) gives Incomplete.
//  - target_model_name: request body `model`, else the response's `model`, else "".
//  - Only POST to an inference path (/v1/completions, /v1/chat/completions, /v1/embeddings,
//    /v1/responses, plus ExchangeConfig::extra_inference_paths; query string ignored) yields
//    records. Every other exchange yields one OnIgnoredExchange when it ends.
//
// Early responses (docs/parsing.md): a server may answer from the headers alone (401) before the
// request body has arrived, and even finish its response first. The exchange then ends (OnRecord)
// when BOTH the response has ended and the request has been fully received, or when the
// connection ends; request_bytes and the request's `model` are those of the whole request.
//
// Loss and garbage (docs/parsing.md#pairing-and-loss): a record is never paired with bytes of another
// exchange. Pairing is FIFO and is only used where it is provable from the two byte streams:
//  - A request-direction gap (or malformed request bytes) hides an unknown number of requests. It
//    leaves a "hidden" marker in the queue: requests queued before it are still answered in FIFO
//    order, every response that reaches the marker is dropped ("unpaired_response"), and requests
//    queued after it wait in doubt. The marker goes at a quiet point: a request begins while the
//    response direction is at a message boundary, no response byte was written at or after that
//    request began, and the connection was never seen pipelining (a later request began before an
//    earlier response had ended). A client that does not pipeline sends a request only after the
//    previous response ended, so at that point every earlier request has been answered; the
//    exchanges in doubt end Incomplete and pairing is exact again. A pipelining connection stays
//    in doubt until it closes (or the pipeline cap), because no byte count or timestamp bounds
//    how many of its requests the gap hid.
//  - A response-direction gap (or malformed response bytes) whose following bytes were written at
//    time t: the response being parsed is cut (Incomplete); at a message boundary the lost bytes
//    begin the next final response, which answers the oldest waiting exchange or (after earlier
//    losses) a later one: the oldest is answered either way and is cut too (unless a 100
//    Continue may still be due). The lost bytes can also hold whole responses, but only to
//    requests that began by t (a response starts after its request): after the gap the next
//    response answers waiting exchange k, 0 <= k <= skip_hi_ = (waiting exchanges whose request
//    began by t). While that count is above 0 no response is provably paired (requests whose
//    events were lost after the newest one seen would be candidates too): each response is
//    dropped ("unpaired_response") and ends the oldest waiting exchange, until a quiet point.
//  - Causality: a response that began before the oldest waiting request began is dropped
//    ("orphan_response").
// Memory per connection is bounded whatever the peer sends: header blocks (max_header_bytes),
// one captured JSON body per direction (max_json_body_bytes; the rest is only counted), one SSE
// event (max_sse_event_bytes), at most max_pipelined queued exchanges. Large buffers are released
// after each body. No prompt or completion text outlives the parse buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/http_parser.hpp"
#include "parsers/inflate.hpp"
#include "parsers/openai.hpp"
#include "parsers/record.hpp"
#include "parsers/sse_parser.hpp"

namespace infertap {

struct ExchangeConfig {
  size_t max_header_bytes = 64 * 1024;
  size_t max_json_body_bytes = 1024 * 1024;
  size_t max_sse_event_bytes = 1024 * 1024;
  std::vector<std::string> extra_inference_paths;  // exact paths, e.g. "/v2/generate"
  // Requests queued without a finished response (pipelining). Beyond this the oldest is ended
  // Incomplete: a peer cannot grow the queue without bound.
  size_t max_pipelined = 64;
  // Decoded (gunzipped) bytes per body; past this tokens are left unknown (decompression bombs).
  uint64_t max_decoded_bytes = 256ull * 1024 * 1024;
  // JSON extractor to use; nullptr means one shared per thread (a simdjson parser grows to the
  // largest document it saw, so one per connection would multiply that by the connections).
  OpenAiExtractor* extractor = nullptr;
};

class ExchangeObserver {
 public:
  virtual ~ExchangeObserver() = default;
  // The request (headers + body) of an inference exchange was fully received AND its final
  // target_model_name is known while the exchange is still in flight: from the request body's
  // `model`, or else from the first response `model` seen (docs/metrics.md#seed-metrics). Drives
  // request_total, request_sizes and running_requests+1 under the final label pair. `partial` has
  // method, path, start_ns, request_bytes, target_model_name (never changed afterwards) and
  // counted_in_flight = true. Called at most once per exchange and always before its OnRecord;
  // not called when the pair is only known when the exchange ends (then OnRecord counts).
  virtual void OnRequestReceived(const RequestRecord& partial) = 0;
  // The exchange finished or was aborted; exactly once per inference exchange.
  // rec.counted_in_flight tells whether OnRequestReceived was called for it.
  virtual void OnRecord(RequestRecord&& rec) = 0;
  // A non-inference HTTP exchange ended (GET /metrics, /health, /v1/models...).
  virtual void OnIgnoredExchange() = 0;
  // Short fixed label: "http_invalid", "header_cap", "json_invalid", "sse_oversize", "gap",
  // "body_cap", "decode_error", "orphan_response", "pipeline_cap".
  virtual void OnParseError(std::string_view reason) = 0;
};

class ExchangeAssembler {
 public:
  // `config` and `observer` are referenced, not copied: one config is normally shared by every
  // connection of the agent and must outlive its assemblers. After OnClose() the assembler has
  // no pending state; the agent destroys it (feeding it again is safe but starts from a parser
  // that may still be resynchronising).
  ExchangeAssembler(const ExchangeConfig& config, ExchangeObserver& observer);
  ExchangeAssembler(const ExchangeAssembler&) = delete;
  ExchangeAssembler& operator=(const ExchangeAssembler&) = delete;

  void OnRequestBytes(uint64_t ts_ns, std::span<const uint8_t> bytes);
  void OnResponseBytes(uint64_t ts_ns, std::span<const uint8_t> bytes);
  void OnRequestGap(uint64_t ts_ns, uint64_t len);
  void OnResponseGap(uint64_t ts_ns, uint64_t len);
  void OnClose(uint64_t ts_ns);

  // Exchanges queued (requests seen, response not finished). For the inspection API and tests.
  size_t pending() const { return queue_.size(); }

 private:
  struct Exchange {
    // kHidden: marker for the requests a request-direction gap hid (unknown number). It never
    // gets a response: every response reaching it is dropped until a quiet point removes it.
    enum class Kind { kHidden, kInference, kOther };
    Kind kind = Kind::kHidden;
    RequestRecord rec;
    bool request_done = false;     // request complete or abandoned
    bool response_done = false;    // response complete or abandoned
    bool emitted = false;          // OnRecord / OnIgnoredExchange already called
    bool body_error = false;       // error object/event seen in the response body
    bool counted = false;          // OnRequestReceived already called
    bool expect_continue = false;  // request carried Expect: 100-continue
    bool got_interim = false;      // a 1xx was paired with it
    std::string response_model;
  };

  // Request direction.
  class RequestSide : public HttpSink {
   public:
    explicit RequestSide(ExchangeAssembler& a) : a_(a) {}
    void OnMessageBegin() override;
    bool OnHeadersComplete(const HttpMessageHead& head) override;
    void OnBody(std::span<const uint8_t> bytes) override;
    void OnMessageComplete() override;
    void OnError(std::string_view reason) override;

   private:
    ExchangeAssembler& a_;
  };

  // Response direction (HTTP and, for streams, SSE).
  class ResponseSide : public HttpSink, public SseSink {
   public:
    explicit ResponseSide(ExchangeAssembler& a) : a_(a) {}
    void OnMessageBegin() override;
    bool OnHeadersComplete(const HttpMessageHead& head) override;
    void OnBody(std::span<const uint8_t> bytes) override;
    void OnMessageComplete() override;
    void OnError(std::string_view reason) override;
    void OnEvent(const SseEvent& event) override;
    void OnOversize() override;

   private:
    ExchangeAssembler& a_;
  };

  // Bounded capture of a JSON body.
  struct Capture {
    std::string buf;
    bool overflow = false;
    void Append(std::span<const uint8_t> bytes, size_t cap);
    void Release();
  };

  bool IsInferencePath(std::string_view target) const;
  OpenAiExtractor& Extractor();
  void SetError(Exchange& ex, ErrorCode code);
  // Bytes of `ex` were lost in capture (or skipped as malformed) or its pairing is in doubt: it
  // is Incomplete whatever status it had (docs/faults.md: affected exchanges end Incomplete), so
  // a damaged record never presents itself as a complete answer.
  void MarkDamaged(Exchange& ex);
  // Ends an exchange that was cut (gap, close, malformed bytes): Incomplete unless it already
  // has an error, then emits it.
  void Abort(Exchange& ex, uint64_t end_ns);
  void Emit(Exchange& ex);
  // Emits once both directions of the exchange are over.
  void MaybeEmit(Exchange& ex);
  // Calls OnRequestReceived once the request is complete and its final label pair is known.
  void MaybeCount(Exchange& ex);
  // The response of `ex` was cut (gap, malformed bytes, dropped as unprovable): Incomplete.
  void CutResponse(Exchange& ex, uint64_t end_ns);
  // Pops finished exchanges from the front of the queue.
  void Reap();
  Exchange* FirstAwaitingResponse();
  // The exchange a final response that began at resp_begin_ns_ answers, or nullptr to drop it.
  Exchange* PairResponse();
  // Appends a hidden marker (unless the newest entry already is one).
  void PushHidden(uint64_t ts_ns);
  // Request bytes were lost or malformed: cut the request being parsed, hide what follows.
  void LoseRequests(uint64_t ts_ns);
  // Response bytes were lost or malformed (the bytes after them at ts_ns): cut what they cut and
  // widen skip_hi_.
  static constexpr uint64_t kUnbounded = ~uint64_t(0) >> 1;
  uint64_t CountStartedBy(uint64_t ts_ns) const;
  // Whether one of the first candidates + 1 waiting exchanges may still get a 1xx.
  bool MayAwaitInterim(uint64_t candidates) const;
  void LoseResponses(uint64_t ts_ns);
  // A request begins: removes hidden markers at a provable quiet point.
  void MaybeQuietPoint();
  // Nothing can be paired any more (pipeline cap): everything queued ends, a marker remains.
  void DropPairing(uint64_t ts_ns);
  void ResetResponseBody();
  void ResetRequestBody();
  void RequestBodyBytes(std::span<const uint8_t> decoded);
  void ResponseBodyBytes(std::span<const uint8_t> decoded);
  void FinishResponseBody();
  void ApplyResponseInfo(Exchange& ex, const OpenAiResponseInfo& info);

  const ExchangeConfig& config_;
  ExchangeObserver& observer_;
  RequestSide req_side_;
  ResponseSide resp_side_;
  HttpParser req_parser_;
  HttpParser resp_parser_;
  SseParser sse_;
  std::deque<Exchange> queue_;  // FIFO; references stay valid across push_back/pop_front
  uint64_t now_ns_ = 0;         // ts of the bytes being parsed right now
  // A later request began before an earlier response ended normally: this client pipelines, so
  // a request-direction gap can never be resolved by a quiet point on this connection.
  bool pipelining_seen_ = false;

  // Request-direction state of the message being parsed.
  uint64_t req_begin_ns_ = 0;
  Exchange* req_ex_ = nullptr;  // exchange whose request is being parsed
  Capture req_json_;
  Inflater req_inflate_;
  bool req_decode_ = false;

  // Response-direction state of the message being parsed.
  uint64_t resp_begin_ns_ = 0;
  uint64_t resp_last_ns_ = 0;    // ts of the last response body bytes
  Exchange* resp_ex_ = nullptr;  // exchange being answered (nullptr: discard this response)
  bool resp_interim_ = false;    // current response is a 1xx
  // What the response being parsed is (for a gap cutting it). kNone: at a message boundary;
  // kResync: skipping bytes after a gap or malformed bytes (not at a known boundary); kPending:
  // a message began, its head is not complete.
  enum class RespMsg { kNone, kResync, kPending, kInterim, kPaired, kDropped };
  RespMsg resp_msg_ = RespMsg::kNone;
  // Pairing offset after response-direction loss (docs/parsing.md#pairing-and-loss): the next final response
  // answers waiting exchange k for some 0 <= k <= skip_hi_ (the k before it were answered in
  // lost bytes). 0: pairing is exact. Only causality (a response starts after its request) or a
  // quiet point brings it back to 0.
  uint64_t skip_hi_ = 0;
  bool resp_stream_ = false;
  bool resp_decode_ = false;
  bool resp_json_type_ = false;      // response Content-Type mentions json
  bool resp_json_reported_ = false;  // one json_invalid per response is enough
  Capture resp_json_;
  Inflater resp_inflate_;
  StreamEventCache resp_events_;  // the stream's SSE events, parsed once per shape
};

}  // namespace infertap
