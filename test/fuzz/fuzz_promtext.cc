// libFuzzer entry point for the Prometheus text / OpenMetrics parser. The input is fed in two
// formats and in two splits (whole, and cut at a byte chosen from the input) because the
// incremental line joining is where buffer bugs would hide; both splits must agree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "parsers/promtext/promtext.hpp"

namespace {

using infertap::promtext::Format;
using infertap::promtext::Limits;
using infertap::promtext::Parser;
using infertap::promtext::Status;

size_t CountSamples(const Parser& p) {
  size_t n = 0;
  for (const auto& f : p.families()) n += f.samples.size();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Limits limits;
  limits.max_input_bytes = 1 << 20;
  limits.max_line_bytes = 4096;
  limits.max_labels = 16;
  for (Format format : {Format::kText004, Format::kOpenMetrics}) {
    Parser whole(format, limits);
    whole.Feed(text);
    Status a = whole.Finish();

    size_t cut = size == 0 ? 0 : data[0] % (size + 1);
    Parser split(format, limits);
    split.Feed(text.substr(0, cut));
    split.Feed(text.substr(cut));
    Status b = split.Finish();

    if (a != b || CountSamples(whole) != CountSamples(split)) std::abort();
    if (a == Status::kEnd) {
      for (const auto& f : whole.families()) {
        for (const auto& s : f.samples) {
          if (s.labels.size() > limits.max_labels) std::abort();
        }
      }
    }
  }
  return 0;
}
