#include "parsers/sse_parser.hpp"

#include <cstring>

namespace infertap {
namespace {

// Released capacity threshold: a connection that once carried a big event must not keep a big
// buffer for the rest of its life (10k idle connections, docs/performance.md).
constexpr size_t kKeepCapacity = 16 * 1024;

void Release(std::string& s) {
  s.clear();
  if (s.capacity() > kKeepCapacity) s.shrink_to_fit();
}

}  // namespace

SseParser::SseParser(size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

void SseParser::Reset() {
  Release(line_);
  Release(data_);
  type_.clear();
  id_.clear();
  has_data_ = false;
  error_line_ = false;
  skipping_ = false;
  pending_cr_ = false;
  retry_ms_ = -1;
}

bool SseParser::Fits(size_t extra) const {
  return data_.size() + type_.size() + line_.size() + extra <= max_event_bytes_;
}

void SseParser::DropOversizeEvent(SseSink& sink) {
  // The event grows past max_event_bytes_: drop what it has and skip to its end (blank line).
  skipping_ = true;
  sink.OnOversize();
  Release(line_);
  Release(data_);
  type_.clear();
  has_data_ = error_line_ = false;
}

ParseState SseParser::Feed(std::span<const uint8_t> bytes, SseSink& sink) {
  const char* p = reinterpret_cast<const char*>(bytes.data());
  const char* end = p + bytes.size();
  bool oversize = false;
  if (p < end && pending_cr_) {
    pending_cr_ = false;
    if (*p == '\n') ++p;
  }
  while (p < end) {
    // Find the next CR or LF: memchr for LF (vectorised), then a second memchr for a bare CR
    // bounded by that line only. Measured (bench/parser) well ahead of a byte-by-byte scan.
    const char* lf = static_cast<const char*>(std::memchr(p, '\n', size_t(end - p)));
    const char* line_end = lf ? lf : end;
    const char* cr = static_cast<const char*>(std::memchr(p, '\r', size_t(line_end - p)));
    const char* q = cr ? cr : line_end;
    if (q == end) {
      if (skipping_) break;
      size_t n = size_t(end - p);
      if (!Fits(n)) {
        oversize = true;
        DropOversizeEvent(sink);
        break;
      }
      line_.append(p, n);
      break;
    }
    std::string_view line;
    if (line_.empty()) {
      line = std::string_view(p, size_t(q - p));
    } else {
      line_.append(p, size_t(q - p));
      line = line_;
    }
    if (*q == '\r') {
      if (q + 1 < end) {
        if (q[1] == '\n') ++q;
      } else {
        pending_cr_ = true;
      }
    }
    p = q + 1;
    if (skipping_) {
      if (line.empty()) skipping_ = false;
      line_.clear();
      continue;
    }
    if (!line.empty() && data_.size() + type_.size() + line.size() > max_event_bytes_) {
      oversize = true;
      DropOversizeEvent(sink);
      continue;
    }
    ProcessLine(line, sink);
    line_.clear();
  }
  if (oversize) return ParseState::kInvalid;
  bool pending = !line_.empty() || has_data_ || error_line_ || !type_.empty() || skipping_;
  return pending ? ParseState::kNeedMoreData : ParseState::kOk;
}

void SseParser::ProcessLine(std::string_view line, SseSink& sink) {
  if (line.empty()) {
    Dispatch(sink);
    return;
  }
  if (line.front() == ':') return;  // comment / keep-alive
  std::string_view field = line, value;
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    data_.reserve(data_.size() + value.size() + 1 + kReadPadding);
    data_.append(value);
    data_.push_back('\n');
    has_data_ = true;
  } else if (field == "event") {
    type_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) id_.assign(value.substr(0, 256));
  } else if (field == "retry") {
    if (!value.empty() && value.size() <= 18 &&
        value.find_first_not_of("0123456789") == std::string_view::npos) {
      retry_ms_ = 0;
      for (char c : value) retry_ms_ = retry_ms_ * 10 + (c - '0');
    }
  } else if (field == "error") {
    // llama.cpp (older builds) reports a mid-stream failure as `error: {json}`.
    error_line_ = true;
    data_.reserve(data_.size() + value.size() + 1 + kReadPadding);
    data_.append(value);
    data_.push_back('\n');
  }
  // Unknown fields are ignored, as the spec requires.
}

void SseParser::Dispatch(SseSink& sink) {
  if (has_data_ || error_line_) {
    std::string_view data = data_;
    if (!data.empty() && data.back() == '\n') data.remove_suffix(1);
    SseEvent ev{type_, data, id_, error_line_};
    sink.OnEvent(ev);
  }
  data_.clear();
  type_.clear();
  has_data_ = false;
  error_line_ = false;
}

void SseParser::Finish(SseSink& sink) {
  if (!skipping_ && !line_.empty()) {
    std::string line = std::move(line_);
    line_.clear();
    ProcessLine(line, sink);
  }
  if (!skipping_) Dispatch(sink);
  Reset();
}

}  // namespace infertap
