// libFuzzer target: the agent servers' request-head parser (agent/serve/head_parser.hpp) on
// arbitrary bytes in arbitrary pieces, pipelined. Input: [piece size][max head / 16] then bytes.
#include <cstdint>
#include <string_view>

#include "agent/serve/head_parser.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infertap::fuzz::Input in(data, size);
  size_t piece = size_t{in.Byte()} + 1;
  size_t max_head = (size_t{in.Byte()} + 1) * 16;
  auto rest = in.Rest();
  std::string_view stream(reinterpret_cast<const char*>(rest.data()), rest.size());
  infertap::serve::HeadParser parser(max_head);
  std::string_view chunk;
  size_t fed = 0;  // bytes of the current head
  while (!stream.empty() || !chunk.empty()) {
    if (chunk.empty()) {
      chunk = stream.substr(0, piece);
      stream.remove_prefix(chunk.size());
    }
    size_t used = 0;
    infertap::serve::HeadParse r = parser.Feed(chunk, &used);
    if (used > chunk.size()) __builtin_trap();
    fed += used;
    if (fed > max_head) __builtin_trap();  // a head never grows past the bound
    if (r == infertap::serve::HeadParse::kInvalid || r == infertap::serve::HeadParse::kTooLarge) {
      return 0;  // the server answers 400/431 and closes
    }
    chunk.remove_prefix(used);
    if (r == infertap::serve::HeadParse::kOk) {
      infertap::serve::RequestHead h = parser.Take();
      if (h.target.empty() || h.target[0] != '/' || h.headers.size() > 100) __builtin_trap();
      if (h.minor_version != 0 && h.minor_version != 1) __builtin_trap();
      parser.Reset();
      fed = 0;
    } else if (used == 0 && !chunk.empty()) {
      __builtin_trap();  // kNeedMore must take every byte it was given
    }
  }
  return 0;
}
