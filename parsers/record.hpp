// The request record (docs/records.md): one per completed or aborted inference exchange.
//
// Produced by the exchange assembler (parsers/), attributed by the agent (pool, pod, model_name),
// consumed by the metrics registry, the inspection API and `infertap replay --records`.
// Timestamps are kernel CLOCK_MONOTONIC nanoseconds from the syscalls that carried the bytes;
// the wall-clock `ts` is derived only when a record is printed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infertap {

// docs/metrics.md#error-codes. One error per request at most; kNone means success.
enum class ErrorCode : uint8_t {
  kNone = 0,
  kBadRequest,          // 400, 422, other 4xx
  kUnauthorized,        // 401
  kForbidden,           // 403
  kNotFound,            // 404
  kResourceExhausted,   // 429
  kServiceUnavailable,  // 503
  kModelServerError,    // other 5xx, or an error event inside a 200 stream
  kIncomplete,          // cut off before it completed (close/reset/capture gap)
};

// "" for kNone, otherwise the label value used in inference_model_request_error_total.
std::string_view ErrorCodeName(ErrorCode code);
// Maps an HTTP status of a final response to an error code (kNone for 1xx/2xx/3xx).
ErrorCode ErrorCodeForStatus(int status);

struct RequestRecord {
  // Timing (CLOCK_MONOTONIC ns). start: syscall that carried the first byte of the request line;
  // end: syscall that carried the last byte of the response body (or the close/gap that cut it).
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  // Syscall that carried the first SSE event with generated content (streaming only).
  std::optional<uint64_t> first_token_ns;

  // Attribution (docs/attribution.md), filled by the agent, empty in the parsers.
  std::string node, pool, ns, pod, role;
  std::string model_name;         // client-facing name (after alias / InferenceModel mapping)
  std::string target_model_name;  // request body `model`, else response `model`, else ""

  std::string method, path;
  int status = 0;       // 0 if no response
  bool stream = false;  // response was text/event-stream
  ErrorCode error = ErrorCode::kNone;

  uint64_t request_bytes = 0;   // body bytes after de-chunking
  uint64_t response_bytes = 0;  // body bytes after de-chunking
  std::optional<uint64_t> input_tokens, output_tokens, cached_tokens;
  uint32_t chunks = 0;  // SSE data events with generated content

  // True when the whole request (headers + body) reached the model server. Drives
  // inference_model_request_total (docs/metrics.md#seed-metrics recording rules).
  bool request_complete = false;
  // True when ExchangeObserver::OnRequestReceived was called for this exchange while it was still
  // in flight: request_total and request_sizes were counted then (under this record's final
  // label pair) and running_requests went +1, so OnRecord only takes running_requests −1. False
  // when the label pair was only known once the exchange ended: OnRecord does all the counting
  // (docs/metrics.md#seed-metrics recording rules).
  bool counted_in_flight = false;
  // True when the response ended normally (not cut by close/gap).
  bool response_complete = false;

  double duration_s() const { return end_ns > start_ns ? double(end_ns - start_ns) / 1e9 : 0.0; }
  std::optional<double> ttft_s() const {
    if (!first_token_ns || *first_token_ns < start_ns) return std::nullopt;
    return double(*first_token_ns - start_ns) / 1e9;
  }
  // (end − first-token) / (output_tokens − 1), when output_tokens > 1.
  std::optional<double> tpot_s() const {
    if (!first_token_ns || !output_tokens || *output_tokens <= 1 || end_ns < *first_token_ns)
      return std::nullopt;
    return double(end_ns - *first_token_ns) / 1e9 / double(*output_tokens - 1);
  }
};

// One JSON object (no trailing newline) with the docs/records.md field names. `wall_offset_ns` is
// added to the monotonic start to produce `ts` (RFC 3339 with nanoseconds, UTC). Optional fields
// that are unknown are omitted. Never contains payload text.
std::string RecordToJson(const RequestRecord& r, int64_t wall_offset_ns);

}  // namespace infertap
