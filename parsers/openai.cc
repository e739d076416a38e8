#include "parsers/openai.hpp"

#include <cstring>

#include "parsers/utf8.hpp"

namespace infertap {
namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;

// Model names end up as Prometheus label values; keep them short.
constexpr size_t kMaxModelName = 256;

std::optional<uint64_t> UintField(object o, std::string_view key) {
  element e;
  if (o[key].get(e) != simdjson::SUCCESS) return std::nullopt;
  uint64_t v;
  if (e.get_uint64().get(v) == simdjson::SUCCESS) return v;
  // Some servers send token counts as floats (1.0e2); accept integral non-negative ones.
  double d;
  if (e.get_double().get(d) == simdjson::SUCCESS && d >= 0 && d < 1.8e19 &&
      d == double(uint64_t(d)))
    return uint64_t(d);
  return std::nullopt;
}

bool ObjectField(object o, std::string_view key, object* out) {
  return o[key].get_object().get(*out) == simdjson::SUCCESS;
}

bool StringField(object o, std::string_view key, std::string_view* out) {
  return o[key].get_string().get(*out) == simdjson::SUCCESS;
}

bool BoolField(object o, std::string_view key) {
  bool b = false;
  return o[key].get_bool().get(b) == simdjson::SUCCESS && b;
}

void ReadUsage(object usage, OpenAiResponseInfo* info) {
  info->has_usage = true;
  info->input_tokens = UintField(usage, "prompt_tokens");
  if (!info->input_tokens) info->input_tokens = UintField(usage, "input_tokens");
  info->output_tokens = UintField(usage, "completion_tokens");
  if (!info->output_tokens) info->output_tokens = UintField(usage, "output_tokens");
  object details;
  if (ObjectField(usage, "prompt_tokens_details", &details) ||
      ObjectField(usage, "input_tokens_details", &details)) {
    info->cached_tokens = UintField(details, "cached_tokens");
  } else {
    info->cached_tokens.reset();
  }
}

bool NonEmptyString(object o, std::string_view key) {
  std::string_view s;
  return StringField(o, key, &s) && !s.empty();
}

bool NonEmptyArray(object o, std::string_view key) {
  array a;
  return o[key].get_array().get(a) == simdjson::SUCCESS && a.begin() != a.end();
}

bool ChoicesHaveContent(element choices_el) {
  array choices;
  if (choices_el.get_array().get(choices) != simdjson::SUCCESS) return false;
  for (element c : choices) {
    object choice;
    if (c.get_object().get(choice) != simdjson::SUCCESS) continue;
    object delta;
    if (ObjectField(choice, "delta", &delta)) {
      if (NonEmptyString(delta, "content") || NonEmptyString(delta, "reasoning") ||
          NonEmptyString(delta, "reasoning_content") || NonEmptyArray(delta, "tool_calls"))
        return true;
    }
    if (NonEmptyString(choice, "text")) return true;
  }
  return false;
}

void SetModel(std::string_view m, std::string* out) {
  if (out->empty() && !m.empty()) out->assign(m.substr(0, kMaxModelName));
}

}  // namespace

OpenAiExtractor::OpenAiExtractor(size_t max_bytes) : max_bytes_(max_bytes), parser_(max_bytes) {}

simdjson::error_code OpenAiExtractor::Parse(std::string_view json, bool padded, element* out) {
  if (json.size() > max_bytes_) return simdjson::CAPACITY;
  return parser_.parse(json.data(), json.size(), !padded).get(*out);
}

OpenAiRequestInfo OpenAiExtractor::ParseRequest(std::string_view json, bool padded) {
  OpenAiRequestInfo info;
  element doc;
  object root;
  if (Parse(json, padded, &doc) != simdjson::SUCCESS) return info;
  if (doc.get_object().get(root) != simdjson::SUCCESS) return info;
  info.valid = true;
  std::string_view model;
  if (StringField(root, "model", &model)) SetModel(model, &info.model);
  info.stream = BoolField(root, "stream");
  object opts;
  if (ObjectField(root, "stream_options", &opts)) {
    info.include_usage = BoolField(opts, "include_usage");
    info.continuous_usage = BoolField(opts, "continuous_usage_stats");
  }
  return info;
}

OpenAiResponseInfo OpenAiExtractor::ParseResponse(std::string_view json, bool padded) {
  OpenAiResponseInfo info;
  element doc;
  object root;
  if (Parse(json, padded, &doc) != simdjson::SUCCESS) return info;
  if (doc.get_object().get(root) != simdjson::SUCCESS) return info;
  info.valid = true;

  // One pass over the top-level keys (this runs once per SSE event: separate lookups would
  // rescan the keys for each field). The first occurrence of a duplicated key wins, as with
  // keyed lookups.
  enum Seen : unsigned {
    kError = 1, kObject = 2, kModel = 4, kUsage = 8, kType = 16, kDelta = 32, kResponse = 64,
    kChoices = 128, kDetail = 256
  };
  unsigned seen = 0;
  auto first = [&seen](Seen f) {
    if (seen & f) return false;
    seen |= f;
    return true;
  };
  std::string_view type;
  element delta, response_el, choices_el;
  for (const auto field : root) {
    const std::string_view k = field.key;
    const element v = field.value;
    if (k == "error") {
      if (first(kError) && !v.is_null()) info.error = true;
    } else if (k == "object") {
      std::string_view s;
      if (first(kObject) && v.get_string().get(s) == simdjson::SUCCESS && s == "error")
        info.error = true;
    } else if (k == "detail") {
      if (first(kDetail)) info.detail = true;
    } else if (k == "model") {
      std::string_view s;
      if (first(kModel) && v.get_string().get(s) == simdjson::SUCCESS) SetModel(s, &info.model);
    } else if (k == "usage") {
      object usage;
      if (first(kUsage) && v.get_object().get(usage) == simdjson::SUCCESS) ReadUsage(usage, &info);
    } else if (k == "type") {
      if (first(kType) && v.get_string().get(type) != simdjson::SUCCESS) type = {};
    } else if (k == "delta") {
      if (first(kDelta)) delta = v;
    } else if (k == "response") {
      if (first(kResponse)) response_el = v;
    } else if (k == "choices") {
      if (first(kChoices)) choices_el = v;
    }
  }

  // Responses API: the event name is repeated in `type`; the final usage sits in
  // response.usage of `response.completed` (and of response.incomplete/failed).
  if (!type.empty()) {
    if (type == "error" || type == "response.failed") info.error = true;
    if (type.size() > 6 && type.ends_with(".delta") && (seen & kDelta)) {
      std::string_view d;
      info.generated = delta.get_string().get(d) != simdjson::SUCCESS || !d.empty();
    }
  }
  object response;
  if ((seen & kResponse) && response_el.get_object().get(response) == simdjson::SUCCESS) {
    std::string_view s;
    if (StringField(response, "model", &s)) SetModel(s, &info.model);
    object rusage;
    if (!info.has_usage && ObjectField(response, "usage", &rusage)) ReadUsage(rusage, &info);
  }
  if (!info.generated && (seen & kChoices)) info.generated = ChoicesHaveContent(choices_el);
  return info;
}

std::optional<std::string> ScanTopLevelModel(std::string_view in) {
  // A tiny tokenizer: tracks nesting depth outside strings and looks at depth-1 keys only.
  int depth = 0;
  size_t i = 0;
  auto read_string = [&](std::string* out) -> bool {  // at opening quote
    ++i;
    while (i < in.size()) {
      char c = in[i++];
      if (c == '"') return true;
      if (c == '\\') {
        if (i >= in.size()) return false;
        char e = in[i++];
        if (out && out->size() < kMaxModelName) {
          // Model names with escapes other than these are not worth decoding here.
          if (e == '"' || e == '\\' || e == '/')
            out->push_back(e);
          else
            return false;
        }
        continue;
      }
      if (out && out->size() < kMaxModelName) out->push_back(c);
    }
    return false;
  };
  bool expect_key = false;
  while (i < in.size()) {
    char c = in[i];
    if (c == '{') {
      ++depth;
      expect_key = depth == 1;
      ++i;
    } else if (c == '[') {
      ++depth;
      ++i;
    } else if (c == '}' || c == ']') {
      --depth;
      ++i;
      if (depth <= 0) return std::nullopt;
    } else if (c == ',') {
      expect_key = depth == 1;
      ++i;
    } else if (c == '"') {
      if (depth == 1 && expect_key) {
        std::string key;
        if (!read_string(&key)) return std::nullopt;
        expect_key = false;
        if (key != "model") continue;
        while (i < in.size() && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r'))
          ++i;
        if (i >= in.size() || in[i] != ':') return std::nullopt;
        ++i;
        while (i < in.size() && (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r'))
          ++i;
        if (i >= in.size() || in[i] != '"') return std::nullopt;
        std::string value;
        if (!read_string(&value)) return std::nullopt;
        return value;
      }
      if (!read_string(nullptr)) return std::nullopt;
    } else {
      ++i;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// StreamEventCache

namespace {

// Whether `s` is the body of a JSON string the parser accepts (RFC 8259 escapes, no raw control
// characters or quotes, valid UTF-8). Conservative: a \u escape of a surrogate half is left to
// the parser (false), whose pairing rules decide.
bool WellFormedStringBody(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = uint8_t(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c == '\\') {
      if (i + 1 >= s.size()) return false;
      const char e = s[i + 1];
      if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
          e == 't') {
        i += 2;
        continue;
      }
      if (e != 'u' || i + 6 > s.size()) return false;
      unsigned cp = 0;
      for (size_t k = i + 2; k < i + 6; ++k) {
        const char h = s[k];
        unsigned d;
        if (h >= '0' && h <= '9') d = unsigned(h - '0');
        else if (h >= 'a' && h <= 'f') d = unsigned(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') d = unsigned(h - 'A' + 10);
        else return false;
        cp = cp * 16 + d;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) return false;
      i += 6;
      continue;
    }
    if (c < 0x80) return false;  // a quote or a control character
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Walks a document the parser has accepted, so it checks bounds but not grammar.
class ValidJsonCursor {
 public:
  explicit ValidJsonCursor(std::string_view s) : s_(s) {}

  size_t pos() const { return i_; }
  bool At(char c) {
    SkipSpace();
    return i_ < s_.size() && s_[i_] == c;
  }
  void Take() { ++i_; }
  // At an opening quote: the raw body, and the cursor after the closing quote.
  std::string_view String() {
    const size_t begin = ++i_;
    for (;;) {
      const void* q = i_ < s_.size() ? std::memchr(s_.data() + i_, '"', s_.size() - i_) : nullptr;
      if (q == nullptr) {
        i_ = s_.size() + 1;
        return s_.substr(begin);
      }
      const size_t quote = size_t(static_cast<const char*>(q) - s_.data());
      size_t backslashes = 0;  // an odd run before the quote escapes it
      while (quote - backslashes > begin && s_[quote - backslashes - 1] == '\\') ++backslashes;
      i_ = quote + 1;
      if (backslashes % 2 == 0) return s_.substr(begin, quote - begin);
    }
  }
  void SkipValue() {
    SkipSpace();
    if (i_ >= s_.size()) return;
    const char c = s_[i_];
    if (c == '"') {
      String();
      return;
    }
    if (c != '{' && c != '[') {  // number or literal
      while (i_ < s_.size() && !IsEnd(s_[i_])) ++i_;
      return;
    }
    size_t depth = 0;
    while (i_ < s_.size()) {
      const char d = s_[i_];
      if (d == '"') {
        String();
        continue;
      }
      ++i_;
      if (d == '{' || d == '[') {
        ++depth;
      } else if ((d == '}' || d == ']') && --depth == 0) {
        return;
      }
    }
  }
  // Calls f(key) for each member of the object at the cursor, with the cursor on the value;
  // f consumes the value (or not: then it is skipped). Stops early when f returns true.
  template <typename F>
  bool Members(F&& f) {
    if (!At('{')) return false;
    Take();
    while (!At('}') && i_ < s_.size()) {
      if (!At('"')) return false;
      const std::string_view key = String();
      if (!At(':')) return false;
      Take();
      SkipSpace();
      const size_t before = i_;
      if (f(key)) return true;
      if (i_ == before) SkipValue();
      if (At(',')) Take();
    }
    if (At('}')) Take();
    return false;
  }

 private:
  static bool IsEnd(char c) {
    return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
  }
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// The body of the first string at choices[0].delta.{content,reasoning,reasoning_content} or
// choices[0].text (the first top-level `choices`), as [begin, end) offsets into json.
bool FindSlot(std::string_view json, size_t* begin, size_t* end) {
  ValidJsonCursor cur(json);
  bool found = false;
  auto string_here = [&]() {
    if (!cur.At('"')) return false;  // not a string: skipped
    *begin = cur.pos() + 1;
    *end = *begin + cur.String().size();
    found = true;
    return true;
  };
  auto in_delta = [&](std::string_view key) {
    return (key == "content" || key == "reasoning" || key == "reasoning_content") &&
           string_here();
  };
  auto in_choice = [&](std::string_view key) {
    if (key == "text") return string_here();
    return key == "delta" && cur.At('{') && cur.Members(in_delta);
  };
  cur.Members([&](std::string_view key) {
    if (key != "choices" || !cur.At('[')) return false;
    cur.Take();
    if (cur.At('{')) cur.Members(in_choice);
    return true;  // stop at the first `choices`, whatever it held
  });
  return found;
}

// Events in a row that changed shape before the cache stops relearning for this response (a
// stream whose every event differs outside the slot, e.g. vLLM's continuous usage stats).
constexpr uint32_t kMaxFailedLearns = 4;

}  // namespace

void StreamEventCache::Reset() {
  active_ = false;
  std::string().swap(bytes_);
  prefix_ = 0;
  empty_.reset();
  nonempty_.reset();
  failed_learns_ = 0;
}

bool StreamEventCache::Learn(std::string_view json, const OpenAiResponseInfo& info) {
  size_t begin = 0, end = 0;
  active_ = false;
  if (!FindSlot(json, &begin, &end) || begin == 0 || end >= json.size()) return false;
  bytes_.assign(json.substr(0, begin));
  bytes_.append(json.substr(end));
  prefix_ = begin;
  empty_.reset();
  nonempty_.reset();
  (begin == end ? empty_ : nonempty_) = info;
  active_ = true;
  return true;
}

const OpenAiResponseInfo& StreamEventCache::FieldsFor(OpenAiExtractor& extractor, bool empty) {
  std::optional<OpenAiResponseInfo>& slot = empty ? empty_ : nonempty_;
  if (!slot) {
    // Any well-formed text stands for all non-empty ones.
    std::string doc = bytes_.substr(0, prefix_);
    if (!empty) doc += 'x';
    doc.append(bytes_, prefix_);
    slot = extractor.ParseResponse(doc);
  }
  return *slot;
}

const OpenAiResponseInfo& StreamEventCache::Parse(OpenAiExtractor& extractor,
                                                  std::string_view json, bool padded) {
  if (active_ && json.size() >= bytes_.size() && json.size() <= extractor.max_bytes()) {
    const size_t text_len = json.size() - bytes_.size();
    const size_t suffix = bytes_.size() - prefix_;
    if (std::memcmp(json.data(), bytes_.data(), prefix_) == 0 &&
        std::memcmp(json.data() + prefix_ + text_len, bytes_.data() + prefix_, suffix) == 0 &&
        WellFormedStringBody(json.substr(prefix_, text_len))) {
      const OpenAiResponseInfo& info = FieldsFor(extractor, text_len == 0);
      if (info.valid) {
        ++stats_.hits;
        failed_learns_ = 0;
        return info;
      }
      active_ = false;  // cannot happen for a template the parser accepted; parse instead
    }
  }
  ++stats_.misses;
  parsed_ = extractor.ParseResponse(json, padded);
  if (parsed_.valid && failed_learns_ < kMaxFailedLearns) {
    ++failed_learns_;
    Learn(json, parsed_);
  }
  return parsed_;
}

}  // namespace infertap
