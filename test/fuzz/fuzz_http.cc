// libFuzzer target: HttpParser (either direction) on arbitrary bytes in arbitrary splits.
// Input: [flags][piece size][gap period] then the stream.
#include <cstdint>

#include "fuzz_input.hpp"
#include "parsers/http_parser.hpp"

namespace {

struct Sink : infertap::HttpSink {
  bool in_message = false;
  uint64_t body = 0;
  void OnMessageBegin() override { in_message = true; }
  bool OnHeadersComplete(const infertap::HttpMessageHead& h) override {
    // The parser promises bounded heads; check it.
    if (h.target.size() > 4096 || h.content_type.size() > 4096) __builtin_trap();
    return (h.target.size() & 1) != 0;  // exercise the skip-body path (HEAD responses)
  }
  void OnBody(std::span<const uint8_t> b) override {
    if (!in_message) __builtin_trap();  // body outside a message
    body += b.size();
  }
  void OnMessageComplete() override { in_message = false; }
  void OnError(std::string_view) override { in_message = false; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infertap::fuzz::Input in(data, size);
  uint8_t flags = in.Byte();
  size_t piece = size_t(in.Byte()) + 1;
  uint8_t gap_period = in.Byte();
  Sink sink;
  infertap::HttpParser p(
      flags & 1 ? infertap::HttpParser::Kind::kResponse : infertap::HttpParser::Kind::kRequest,
      4096, sink);
  unsigned n = 0;
  while (!in.empty()) {
    p.Feed(in.Take(piece));
    if (gap_period != 0 && ++n % gap_period == 0) {
      p.OnGap();
      sink.in_message = false;
    }
  }
  p.Finish();
  return 0;
}
