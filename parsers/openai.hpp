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
  size_t max_bytes() const { return max_bytes_; }

 private:
  simdjson::error_code Parse(std::string_view json, bool padded, simdjson::dom::element* out);

  size_t max_bytes_;
  simdjson::dom::parser parser_;
};

// The SSE events of one stream are, as servers write them, the same bytes but for the token
// text: `{"id":"c1",...,"choices":[{"index":0,"delta":{"content":"<text>"},...}]}`. Parsing a
// whole DOM for each is most of the agent's CPU per streamed request (bench/RESULTS.md
// "Profile"). A StreamEventCache keeps the last parsed event cut around that one string (the
// "slot"); an event that equals it byte for byte outside the slot, with a well-formed JSON string
// inside, is valid JSON exactly when the cached one was, and ParseResponse would return for it
// the same fields: what it reads at the slot's paths (`choices[].delta.content` | `reasoning` |
// `reasoning_content`, `choices[].text`) is only whether the string is empty. So the cache
// answers from the fields it saw for an empty or a non-empty slot, and anything else (another
// shape, a changed byte outside the slot, a string it does not check itself) goes to the parser.
// Results are those of ParseResponse for every input; one cache per response stream.
class StreamEventCache {
 public:
  // What extractor.ParseResponse(json, padded) returns; valid until the next call.
  const OpenAiResponseInfo& Parse(OpenAiExtractor& extractor, std::string_view json, bool padded);
  // Forgets the template (a new response, or the end of one: frees its bytes).
  void Reset();

  struct Stats {
    uint64_t hits = 0, misses = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  // Cuts `json` (valid: the parser accepted it) around its slot; false when it has none.
  bool Learn(std::string_view json, const OpenAiResponseInfo& info);
  // The fields for a slot of the given emptiness, parsed once from the template if not yet seen.
  const OpenAiResponseInfo& FieldsFor(OpenAiExtractor& extractor, bool empty);

  std::string bytes_;   // the template without the slot's text: prefix + suffix
  size_t prefix_ = 0;   // prefix = bytes_[0, prefix_) ends with the slot's opening quote
  bool active_ = false;
  std::optional<OpenAiResponseInfo> empty_, nonempty_;
  OpenAiResponseInfo parsed_;   // the last event the parser saw
  uint32_t failed_learns_ = 0;  // events in a row that changed the template: give up after a few
  Stats stats_;
};

// Best effort for a body cut at the capture cap (long prompts): the value of the top-level
// "model" key if it appears, as a plain string, within `prefix`. simdjson cannot parse a
// truncated document, and the model name is what attribution needs most.
std::optional<std::string> ScanTopLevelModel(std::string_view prefix);

}  // namespace infertap
