#include "parsers/promtext/promtext.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>

#include "parsers/ascii.hpp"

namespace infertap::promtext {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view SkipSpace(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsSpace(s[i])) ++i;
  return s.substr(i);
}

bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

// Length of the metric name at the start of `s` (0 if none). Label names use the same rule minus
// ':', which the caller checks.
size_t NameLength(std::string_view s) {
  if (s.empty() || !IsNameStart(s[0])) return 0;
  size_t i = 1;
  while (i < s.size() && IsNameChar(s[i])) ++i;
  return i;
}

// Go's strconv.ParseFloat and Python's float repr are what servers emit; from_chars covers the
// decimal forms, the special values are spelled out because from_chars rejects a leading '+'.
bool ParseDouble(std::string_view s, double* out) {
  if (s.empty()) return false;
  std::string_view body = s;
  bool negative = false;
  if (body[0] == '+' || body[0] == '-') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (EqualsIgnoreCase(body, "inf") || EqualsIgnoreCase(body, "infinity")) {
    *out = negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
    return true;
  }
  if (EqualsIgnoreCase(body, "nan")) {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (body.empty() || !((body[0] >= '0' && body[0] <= '9') || body[0] == '.')) return false;
  double v = 0;
  auto [ptr, ec] =
      std::from_chars(body.data(), body.data() + body.size(), v, std::chars_format::general);
  // Out-of-range magnitudes come back as result_out_of_range; Go would give ±Inf or 0, but a
  // server printing 1e400 is broken, so rejecting is the clearer outcome.
  if (ec != std::errc() || ptr != body.data() + body.size()) return false;
  *out = negative ? -v : v;
  return true;
}

bool ParseInt64(std::string_view s, int64_t* out) {
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// HELP text: 0.0.4 escapes only `\\` and `\n`; OpenMetrics also `\"`. Unknown escapes are kept
// verbatim because HELP is informational and rejecting a page over it would lose real data.
std::string UnescapeHelp(std::string_view s, Format format) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char n = s[i + 1];
      if (n == '\\') {
        out.push_back('\\');
        ++i;
        continue;
      }
      if (n == 'n') {
        out.push_back('\n');
        ++i;
        continue;
      }
      if (n == '"' && format == Format::kOpenMetrics) {
        out.push_back('"');
        ++i;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

struct TypeName {
  std::string_view text;
  MetricType type;
  bool openmetrics_only;
  bool text004_only;
};
constexpr std::array<TypeName, 9> kTypeNames = {{
    {"counter", MetricType::kCounter, false, false},
    {"gauge", MetricType::kGauge, false, false},
    {"histogram", MetricType::kHistogram, false, false},
    {"summary", MetricType::kSummary, false, false},
    {"untyped", MetricType::kUntyped, false, true},
    {"unknown", MetricType::kUntyped, true, false},
    {"gaugehistogram", MetricType::kGaugeHistogram, true, false},
    {"info", MetricType::kInfo, true, false},
    {"stateset", MetricType::kStateSet, true, false},
}};

// Suffixes a sample of a family of `type` may carry besides the bare family name.
bool SuffixAllowed(MetricType type, std::string_view suffix) {
  switch (type) {
    case MetricType::kCounter:
      return suffix == "_total" || suffix == "_created";
    case MetricType::kHistogram:
      return suffix == "_bucket" || suffix == "_sum" || suffix == "_count" || suffix == "_created";
    case MetricType::kGaugeHistogram:
      return suffix == "_bucket" || suffix == "_gsum" || suffix == "_gcount";
    case MetricType::kSummary:
      return suffix == "_sum" || suffix == "_count" || suffix == "_created";
    case MetricType::kInfo:
      return suffix == "_info";
    default:
      return false;
  }
}

constexpr std::array<std::string_view, 8> kSuffixes = {"_bucket",  "_sum",  "_count",  "_total",
                                                       "_created", "_gsum", "_gcount", "_info"};

bool BelongsTo(const Family& f, std::string_view sample_name) {
  if (sample_name == f.name) return true;
  if (sample_name.size() <= f.name.size() || sample_name.substr(0, f.name.size()) != f.name) {
    return false;
  }
  return SuffixAllowed(f.type, sample_name.substr(f.name.size()));
}

}  // namespace

Format FormatFromContentType(std::string_view content_type) {
  constexpr std::string_view kOm = "application/openmetrics-text";
  std::string_view t = SkipSpace(content_type);
  if (t.size() >= kOm.size() && EqualsIgnoreCase(t.substr(0, kOm.size()), kOm)) {
    return Format::kOpenMetrics;
  }
  return Format::kText004;
}

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kUntyped:
      return "untyped";
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kGaugeHistogram:
      return "gaugehistogram";
    case MetricType::kSummary:
      return "summary";
    case MetricType::kInfo:
      return "info";
    case MetricType::kStateSet:
      return "stateset";
  }
  return "untyped";
}

const std::string* Sample::Label(std::string_view label_name) const {
  for (const auto& [k, v] : labels) {
    if (k == label_name) return &v;
  }
  return nullptr;
}

Parser::Parser(Format format, Limits limits) : format_(format), limits_(limits) {}

Status Parser::Fail(Status status, std::string message) {
  status_ = status;
  error_.line = line_no_;
  error_.message = std::move(message);
  return status_;
}

Status Parser::Feed(std::string_view bytes) {
  if (status_ == Status::kInvalid || status_ == Status::kTooLarge) return status_;
  total_bytes_ += bytes.size();
  if (total_bytes_ > limits_.max_input_bytes) {
    Fail(Status::kTooLarge,
         "input larger than " + std::to_string(limits_.max_input_bytes) + " bytes");
    error_.line = 0;
    return status_;
  }
  while (!bytes.empty()) {
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      if (pending_.size() + bytes.size() > limits_.max_line_bytes) {
        ++line_no_;
        return Fail(Status::kTooLarge,
                    "line longer than " + std::to_string(limits_.max_line_bytes) + " bytes");
      }
      pending_.append(bytes);
      break;
    }
    std::string_view line = bytes.substr(0, nl);
    bytes.remove_prefix(nl + 1);
    Status s;
    if (!pending_.empty()) {
      if (pending_.size() + line.size() > limits_.max_line_bytes) {
        ++line_no_;
        return Fail(Status::kTooLarge,
                    "line longer than " + std::to_string(limits_.max_line_bytes) + " bytes");
      }
      pending_.append(line);
      std::string joined = std::move(pending_);
      pending_.clear();
      s = ParseLine(joined);
    } else {
      if (line.size() > limits_.max_line_bytes) {
        ++line_no_;
        return Fail(Status::kTooLarge,
                    "line longer than " + std::to_string(limits_.max_line_bytes) + " bytes");
      }
      s = ParseLine(line);
    }
    if (s == Status::kInvalid || s == Status::kTooLarge) return s;
  }
  return status_;
}

Status Parser::Finish() {
  if (status_ == Status::kInvalid || status_ == Status::kTooLarge) return status_;
  if (!pending_.empty()) {
    std::string last = std::move(pending_);
    pending_.clear();
    Status s = ParseLine(last);
    if (s == Status::kInvalid || s == Status::kTooLarge) return s;
  }
  if (format_ == Format::kOpenMetrics && !eof_seen_) {
    return Fail(Status::kInvalid, "OpenMetrics exposition does not end with # EOF");
  }
  status_ = Status::kEnd;
  return status_;
}

Status Parser::ParseLine(std::string_view line) {
  ++line_no_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (SkipSpace(line).empty()) return status_;
  if (eof_seen_) return Fail(Status::kInvalid, "content after # EOF");
  if (line[0] == '#') return ParseMetadata(line.substr(1));
  return ParseSample(line);
}

Family& Parser::FamilyNamed(std::string_view name) {
  auto it = by_name_.find(std::string(name));
  if (it != by_name_.end()) {
    current_ = it->second;
    return families_[it->second];
  }
  families_.push_back(Family{.name = std::string(name)});
  by_name_.emplace(std::string(name), families_.size() - 1);
  current_ = families_.size() - 1;
  return families_.back();
}

Family& Parser::FamilyForSample(std::string_view sample_name) {
  if (current_ && BelongsTo(families_[*current_], sample_name)) return families_[*current_];
  if (auto it = by_name_.find(std::string(sample_name)); it != by_name_.end()) {
    current_ = it->second;
    return families_[it->second];
  }
  for (std::string_view suffix : kSuffixes) {
    if (sample_name.size() <= suffix.size() ||
        sample_name.substr(sample_name.size() - suffix.size()) != suffix) {
      continue;
    }
    auto it = by_name_.find(std::string(sample_name.substr(0, sample_name.size() - suffix.size())));
    if (it != by_name_.end() && SuffixAllowed(families_[it->second].type, suffix)) {
      current_ = it->second;
      return families_[it->second];
    }
  }
  return FamilyNamed(sample_name);
}

Status Parser::ParseMetadata(std::string_view rest) {
  // 0.0.4 allows any whitespace after '#'; OpenMetrics prescribes exactly one space, but a tolerant
  // reader costs nothing here.
  std::string_view s = SkipSpace(rest);
  size_t kw_len = 0;
  while (kw_len < s.size() && !IsSpace(s[kw_len])) ++kw_len;
  std::string_view keyword = s.substr(0, kw_len);
  std::string_view args = s.substr(kw_len);

  if (keyword == "EOF" && format_ == Format::kOpenMetrics && SkipSpace(args).empty()) {
    eof_seen_ = true;
    status_ = Status::kEnd;
    return status_;
  }
  const bool is_help = keyword == "HELP";
  const bool is_type = keyword == "TYPE";
  const bool is_unit = keyword == "UNIT" && format_ == Format::kOpenMetrics;
  if (!is_help && !is_type && !is_unit) return status_;  // a comment
  if (args.empty()) return Fail(Status::kInvalid, std::string(keyword) + " line without a name");

  args = SkipSpace(args);
  size_t name_len = NameLength(args);
  if (name_len == 0)
    return Fail(Status::kInvalid, "invalid metric name in " + std::string(keyword));
  std::string_view name = args.substr(0, name_len);
  std::string_view value = args.substr(name_len);
  if (!value.empty() && !IsSpace(value[0])) {
    return Fail(Status::kInvalid, "invalid metric name in " + std::string(keyword));
  }
  // HELP text keeps its inner spacing; only the separator space goes.
  if (!value.empty()) value.remove_prefix(1);

  Family& family = FamilyNamed(name);
  if (is_help) {
    family.help = UnescapeHelp(value, format_);
    return status_;
  }
  if (is_unit) {
    family.unit = std::string(SkipSpace(value));
    return status_;
  }
  std::string_view type_text = SkipSpace(value);
  while (!type_text.empty() && IsSpace(type_text.back())) type_text.remove_suffix(1);
  for (const TypeName& t : kTypeNames) {
    if (t.text != type_text) continue;
    if ((t.openmetrics_only && format_ != Format::kOpenMetrics) ||
        (t.text004_only && format_ != Format::kText004)) {
      break;
    }
    if (!family.samples.empty() && family.type != t.type) {
      return Fail(Status::kInvalid, "TYPE for " + std::string(name) + " after its samples");
    }
    family.type = t.type;
    return status_;
  }
  return Fail(Status::kInvalid, "unknown metric type '" + std::string(type_text) + "'");
}

Status Parser::ParseSample(std::string_view line) {
  size_t name_len = NameLength(line);
  if (name_len == 0) return Fail(Status::kInvalid, "line does not start with a metric name");
  Sample sample;
  sample.name = std::string(line.substr(0, name_len));
  std::string_view s = line.substr(name_len);
  if (std::string_view t = SkipSpace(s); !t.empty() && t[0] == '{') s = t;

  if (!s.empty() && s[0] == '{') {
    s.remove_prefix(1);
    while (true) {
      s = SkipSpace(s);
      if (s.empty()) return Fail(Status::kInvalid, "unterminated label set");
      if (s[0] == '}') {
        s.remove_prefix(1);
        break;
      }
      size_t ln = NameLength(s);
      if (ln == 0 || s.substr(0, ln).find(':') != std::string_view::npos) {
        return Fail(Status::kInvalid, "invalid label name");
      }
      std::string label_name(s.substr(0, ln));
      s = SkipSpace(s.substr(ln));
      if (s.empty() || s[0] != '=') return Fail(Status::kInvalid, "expected '=' after label name");
      s = SkipSpace(s.substr(1));
      if (s.empty() || s[0] != '"') return Fail(Status::kInvalid, "expected '\"' for label value");
      s.remove_prefix(1);
      std::string label_value;
      bool closed = false;
      while (!s.empty()) {
        char c = s[0];
        s.remove_prefix(1);
        if (c == '"') {
          closed = true;
          break;
        }
        if (c != '\\') {
          label_value.push_back(c);
          continue;
        }
        if (s.empty()) break;
        char e = s[0];
        s.remove_prefix(1);
        if (e == '\\') {
          label_value.push_back('\\');
        } else if (e == '"') {
          label_value.push_back('"');
        } else if (e == 'n') {
          label_value.push_back('\n');
        } else {
          return Fail(Status::kInvalid, "invalid escape sequence in label value");
        }
      }
      if (!closed) return Fail(Status::kInvalid, "unterminated label value");
      if (sample.labels.size() >= limits_.max_labels) {
        return Fail(Status::kTooLarge,
                    "more than " + std::to_string(limits_.max_labels) + " labels on a sample");
      }
      sample.labels.emplace_back(std::move(label_name), std::move(label_value));
      s = SkipSpace(s);
      if (!s.empty() && s[0] == ',') {
        s.remove_prefix(1);
      } else if (s.empty() || s[0] != '}') {
        return Fail(Status::kInvalid, "expected ',' or '}' after label value");
      }
    }
    std::sort(sample.labels.begin(), sample.labels.end());
    for (size_t i = 1; i < sample.labels.size(); ++i) {
      if (sample.labels[i].first == sample.labels[i - 1].first) {
        return Fail(Status::kInvalid, "duplicate label name " + sample.labels[i].first);
      }
    }
  }

  if (s.empty() || !IsSpace(s[0])) return Fail(Status::kInvalid, "missing sample value");
  s = SkipSpace(s);
  size_t vlen = 0;
  while (vlen < s.size() && !IsSpace(s[vlen])) ++vlen;
  if (vlen == 0) return Fail(Status::kInvalid, "missing sample value");
  if (!ParseDouble(s.substr(0, vlen), &sample.value)) {
    return Fail(Status::kInvalid, "invalid sample value '" + std::string(s.substr(0, vlen)) + "'");
  }
  s = SkipSpace(s.substr(vlen));

  const bool om = format_ == Format::kOpenMetrics;
  if (!s.empty() && s[0] != '#') {
    size_t tlen = 0;
    while (tlen < s.size() && !IsSpace(s[tlen])) ++tlen;
    std::string_view ts = s.substr(0, tlen);
    if (om) {
      double seconds = 0;
      if (!ParseDouble(ts, &seconds) || !std::isfinite(seconds) || std::fabs(seconds) > 9.2e15) {
        return Fail(Status::kInvalid, "invalid timestamp '" + std::string(ts) + "'");
      }
      sample.timestamp_ms = static_cast<int64_t>(std::llround(seconds * 1000.0));
    } else {
      int64_t ms = 0;
      if (!ParseInt64(ts, &ms)) {
        return Fail(Status::kInvalid, "invalid timestamp '" + std::string(ts) + "'");
      }
      sample.timestamp_ms = ms;
    }
    s = SkipSpace(s.substr(tlen));
  }
  if (!s.empty()) {
    // Only OpenMetrics has exemplars; their content does not matter to us.
    if (!(om && s[0] == '#')) {
      return Fail(Status::kInvalid, "unexpected text after sample value");
    }
  }

  if (++total_samples_ > limits_.max_samples) {
    return Fail(Status::kTooLarge, "more than " + std::to_string(limits_.max_samples) + " samples");
  }
  Family& family = FamilyForSample(sample.name);
  family.samples.push_back(std::move(sample));
  return status_;
}

Result Parse(std::string_view text, Format format, const Limits& limits) {
  Parser parser(format, limits);
  parser.Feed(text);
  Result r;
  r.status = parser.Finish();
  r.error = parser.error();
  r.families = parser.TakeFamilies();
  return r;
}

const Family* FindFamily(const std::vector<Family>& families, std::string_view name) {
  for (const Family& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace infertap::promtext
