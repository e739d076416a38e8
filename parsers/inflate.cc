#include "parsers/inflate.hpp"

namespace infertap {

Inflater::Encoding Inflater::EncodingFor(std::string_view v) {
  if (v.empty() || v == "identity") return Encoding::kIdentity;
  if (v == "gzip" || v == "x-gzip") return Encoding::kGzip;
  if (v == "deflate") return Encoding::kDeflate;
  return Encoding::kUnsupported;
}

Inflater::~Inflater() { End(); }

void Inflater::End() {
  if (active_) inflateEnd(&zs_);
  active_ = false;
}

bool Inflater::Init(int window_bits) {
  End();
  zs_ = z_stream{};
  if (inflateInit2(&zs_, window_bits) != Z_OK) return false;
  active_ = true;
  return true;
}

void Inflater::Start(Encoding enc) {
  End();
  enc_ = enc;
  produced_ = 0;
  done_ = false;
  failed_ = enc != Encoding::kGzip && enc != Encoding::kDeflate;
}

bool Inflater::Feed(std::span<const uint8_t> in, const Output& out) {
  if (failed_) return false;
  if (done_ || in.empty()) return true;  // bytes after the end of the stream are ignored
  if (!active_) {
    int bits = 15 + 16;  // gzip wrapper only
    if (enc_ == Encoding::kDeflate) {
      // "deflate" should be zlib-wrapped (RFC 9110 §8.4.1.2) but many servers send raw deflate;
      // a zlib header has CM=8 in the low nibble of the first byte.
      bits = (in[0] & 0x0f) == 8 ? 15 : -15;
    }
    if (!Init(bits)) {
      failed_ = true;
      return false;
    }
  }
  uint8_t buf[16 * 1024];
  zs_.next_in = const_cast<Bytef*>(in.data());
  zs_.avail_in = uInt(in.size());
  // Loop until zlib has consumed all input AND had spare output room (a full buffer may hide
  // pending output even with no input left).
  for (;;) {
    zs_.next_out = buf;
    zs_.avail_out = sizeof(buf);
    int rc = inflate(&zs_, Z_NO_FLUSH);
    size_t n = sizeof(buf) - zs_.avail_out;
    produced_ += n;
    if (produced_ > max_output_) {
      failed_ = true;
      End();
      return false;
    }
    if (n > 0) out({buf, n});
    if (rc == Z_STREAM_END) {
      done_ = true;
      End();
      break;
    }
    if (rc == Z_BUF_ERROR) break;  // no progress possible: needs more input
    if (rc != Z_OK) {
      failed_ = true;
      End();
      return false;
    }
    if (zs_.avail_in == 0 && zs_.avail_out != 0) break;
  }
  return true;
}

}  // namespace infertap
