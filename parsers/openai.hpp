// Extraction of the few OpenAI-API fields infertap needs from JSON bodies and SSE event payloads
// (docs/parsing.md, docs/records.md, docs/wire-formats.md), with simdjson's DOM parser on bounded input.
//
// Nothing here keeps text from the payload except model names: prompts and completions are only
// looked at (is this delta non-empty?) and never copied.
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace infertap {

// What a request body says about the exchange.
struct OpenAiRequestInfo {
  bool valid = false;  // the body parsed as a JSON object
  std::string model;   // "" when absent or not a string
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  bool continuous_usage = false;  // stream_options.continuous_usage_stats (vLLM)
};

// What a response body, or one SSE event payload, says.
struct OpenAiResponseInfo {
  bool valid = false;  // parsed as a JSON object
  std::string model;   // `model`, or `response.model` (Responses API events)
  // A non-null usage object was present (chat/completions/embeddings `usage`, or Responses
  // `response.usage`). `usage: null` does not count; neither does `choices: []` alone.
  bool has_usage = false;
  std::optional<uint64_t> input_tokens;   // prompt_tokens | input_tokens
  std::optional<uint64_t> output_tokens;  // completion_tokens | output_tokens
  std::optional<uint64_t> cached_tokens;  // {prompt,input}_tokens_details.cached_tokens
  // The payload reports a failure: a top-level non-null `error` (object or string; vLLM current,
  // TGI, OpenAI), vLLM's legacy flat `"object":"error"`, or a Responses `error`/`response.failed`
  // event.
  bool error = false;
  bool detail = false;  // FastAPI-style `{"detail": ...}` (Triton frontend errors)
  // The payload carries generated output (docs/records.md TTFT): a non-empty delta.content,
  // delta.reasoning / reasoning_content, a non-empty delta.tool_calls, a non-empty completions
  // `text`, or a Responses `*.delta` event.
  bool generated = false;
};

// Reusable extractor. One simdjson parser grows to the largest document it has seen (bounded by
// max_bytes), so the agent keeps one per thread rather than one per connection.
class OpenAiExtractor {
 public:
  explicit OpenAiExtractor(size_t max_bytes);

  // `padded`: the caller guarantees SIMDJSON_PADDING readable bytes after json (saves a copy).
  OpenAiRequestInfo ParseRequest(std::string_view json, bool padded = false);
  OpenAiResponseInfo ParseResponse(std::string_view json, bool padded = false);

 private:
  simdjson::error_code Parse(std::string_view json, bool padded, simdjson::dom::element* out);

  size_t max_bytes_;
  simdjson::dom::parser parser_;
};

// Best effort for a body cut at the capture cap (long prompts): the value of the top-level
// "model" key if it appears, as a plain string, within `prefix`. simdjson cannot parse a
// truncated document, and the model name is what attribution needs most.
std::optional<std::string> ScanTopLevelModel(std::string_view prefix);

}  // namespace infertap
