// libFuzzer target: StreamEventCache against OpenAiExtractor::ParseResponse. The input is a
// stream of SSE event payloads, one per line; every event's fields from the cache must equal a
// fresh parse's (parsers/openai.hpp: the cache may only save work, never change an answer).
#include <cstdint>
#include <string>
#include <string_view>

#include "parsers/openai.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static infertap::OpenAiExtractor direct(4096), cached(4096);
  infertap::StreamEventCache cache;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string padded;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    const std::string_view event = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    padded.assign(event);
    padded.reserve(event.size() + simdjson::SIMDJSON_PADDING);
    const infertap::OpenAiResponseInfo want = direct.ParseResponse(event);
    const infertap::OpenAiResponseInfo& got =
        cache.Parse(cached, std::string_view(padded.data(), event.size()), true);
    if (want.valid != got.valid || want.model != got.model || want.has_usage != got.has_usage ||
        want.input_tokens != got.input_tokens || want.output_tokens != got.output_tokens ||
        want.cached_tokens != got.cached_tokens || want.error != got.error ||
        want.detail != got.detail || want.generated != got.generated)
      __builtin_trap();
  }
  return 0;
}
