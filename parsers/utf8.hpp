// UTF-8 validation shared by everything that writes text from the wire into our outputs (record
// JSON in parsers/record.cc, metric labels in agent/metrics/metrics.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace infertap {

// Length of the valid UTF-8 sequence starting at s[i] (i < s.size()), or 0 if it is not valid:
// overlongs, surrogates and code points past U+10FFFF are invalid, as RFC 3629 and Prometheus'
// own label validation treat them.
inline size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto cont = [&](size_t k) { return k < s.size() && (uint8_t(s[k]) & 0xC0) == 0x80; };
  uint8_t c = uint8_t(s[i]);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    uint8_t c1 = uint8_t(s[i + 1]);
    if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
    if (c == 0xED && c1 >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    uint8_t c1 = uint8_t(s[i + 1]);
    if (c == 0xF0 && c1 < 0x90) return 0;   // overlong
    if (c == 0xF4 && c1 >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace infertap
