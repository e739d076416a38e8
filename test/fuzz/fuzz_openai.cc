// libFuzzer target: OpenAI field extraction (request, response/event, truncated-body scan).
#include <cstdint>
#include <string>
#include <string_view>

#include "parsers/openai.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static infertap::OpenAiExtractor extractor(1 << 20);
  std::string_view json(reinterpret_cast<const char*>(data), size);
  auto req = extractor.ParseRequest(json);
  auto resp = extractor.ParseResponse(json);
  // Also the zero-copy path, with the padding the contract requires.
  std::string padded(json);
  padded.reserve(size + simdjson::SIMDJSON_PADDING);
  auto resp2 = extractor.ParseResponse(std::string_view(padded.data(), size), true);
  if (resp.valid != resp2.valid || resp.has_usage != resp2.has_usage ||
      resp.input_tokens != resp2.input_tokens || resp.error != resp2.error)
    __builtin_trap();
  if (req.model.size() > 256 || resp.model.size() > 256) __builtin_trap();
  auto m = infertap::ScanTopLevelModel(json);
  if (m && m->size() > 256) __builtin_trap();
  return 0;
}
