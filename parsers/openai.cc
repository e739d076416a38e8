#include "parsers/openai.hpp"

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

}  // namespace infertap
