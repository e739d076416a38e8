// Incremental Content-Encoding decoder (gzip, x-gzip, deflate) on zlib, for bodies a proxy
// compressed. Output goes to a callback in fixed-size pieces, so memory stays constant whatever
// the compression ratio; a total output budget stops decompression bombs from burning CPU.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

namespace infertap {

class Inflater {
 public:
  enum class Encoding { kIdentity, kGzip, kDeflate, kUnsupported };
  // Maps a lower-case Content-Encoding header value. "" and "identity" are kIdentity; a list of
  // several codings (rare) is kUnsupported.
  static Encoding EncodingFor(std::string_view content_encoding);

  using Output = std::function<void(std::span<const uint8_t>)>;

  explicit Inflater(uint64_t max_output_bytes) : max_output_(max_output_bytes) {}
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Starts a new body. kIdentity/kUnsupported are accepted but Feed() then fails.
  void Start(Encoding enc);
  // Decodes `in`, passing output to `out`. Returns false once the stream is known to be bad
  // (corrupt data, output budget exhausted, unsupported coding); later calls keep returning false.
  bool Feed(std::span<const uint8_t> in, const Output& out);
  // True when the compressed stream ended properly (Z_STREAM_END seen).
  bool finished() const { return done_; }
  bool failed() const { return failed_; }
  // Frees zlib's state (about 40 KiB) between bodies.
  void End();

 private:
  bool Init(int window_bits);

  uint64_t max_output_;
  uint64_t produced_ = 0;
  z_stream zs_{};
  bool active_ = false;
  bool done_ = false;
  bool failed_ = false;
  Encoding enc_ = Encoding::kIdentity;
};

}  // namespace infertap
