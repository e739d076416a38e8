// libFuzzer target: SseParser on arbitrary bytes in arbitrary splits, with a small event cap.
// Input: [piece size][cap] then the stream.
#include <cstdint>

#include "fuzz_input.hpp"
#include "parsers/sse_parser.hpp"

namespace {

struct Sink : infertap::SseSink {
  size_t cap;
  explicit Sink(size_t c) : cap(c) {}
  void OnEvent(const infertap::SseEvent& e) override {
    // A dispatched event never exceeds the cap, and its data is readable up to the padding.
    if (e.data.size() > cap) __builtin_trap();
    volatile char sink = 0;
    for (size_t i = 0; i < infertap::SseParser::kReadPadding; ++i)
      sink = sink ^ e.data.data()[e.data.size() + i];
    (void)sink;
  }
  void OnOversize() override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infertap::fuzz::Input in(data, size);
  size_t piece = size_t(in.Byte()) + 1;
  size_t cap = 16 + size_t(in.Byte()) * 8;
  Sink sink(cap);
  infertap::SseParser p(cap);
  while (!in.empty()) p.Feed(in.Take(piece), sink);
  p.Finish(sink);
  return 0;
}
