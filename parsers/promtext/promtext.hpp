// Prometheus exposition parser: text format 0.0.4 and OpenMetrics 1.0.0 (docs/pool-gauges.md).
//
// Used by the pool poller to read model-server /metrics pages, and by tests to read our own
// exposition back. Pure C++: bytes in, families out; no sockets, no exceptions across the API.
//
// The parser is incremental: Feed() any split of the input (each call may end mid-line), then
// Finish(). Every buffer is bounded by `Limits`; exceeding one is kTooLarge, a malformed line is
// kInvalid with the 1-based line number. Both are sticky: once a parser failed it stays failed.
//
// What is accepted (and why it matters for the servers we scrape):
//  - `# HELP`, `# TYPE`, `# UNIT` (OpenMetrics), `# EOF` (required in OpenMetrics), any other
//    `#` line is a comment; blank lines are ignored; CRLF line ends are tolerated.
//  - Label values with `\\`, `\"`, `\n` escapes; whitespace around labels and after commas (the
//    upstream EPP golden files have `{a="x", b="y"}`); a trailing comma before `}`.
//  - Values as Go/Python print them, including NaN, +Inf, -Inf; optional timestamps (integer
//    milliseconds in 0.0.4, float seconds in OpenMetrics, stored as milliseconds).
//  - OpenMetrics exemplars (` # {...} v [ts]` after the value) are skipped.
//  - Samples are grouped into families by the declared family name and the type's suffixes
//    (`_bucket`, `_sum`, `_count`, `_total`, `_created`, `_gsum`, `_gcount`, `_info`), so
//    prometheus_client's separate `_created` gauge families and OpenMetrics counter families both
//    come out as the server declared them. Samples without metadata form untyped families.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace infertap::promtext {

enum class Format : uint8_t {
  kText004,      // text/plain; version=0.0.4
  kOpenMetrics,  // application/openmetrics-text; version=1.0.0
};

// Picks the format from a Content-Type header value; anything that is not OpenMetrics is read as
// 0.0.4 (which is also what servers send when no Content-Type is given).
Format FormatFromContentType(std::string_view content_type);

enum class MetricType : uint8_t {
  kUntyped,  // 0.0.4 "untyped", OpenMetrics "unknown", or no TYPE line at all
  kCounter,
  kGauge,
  kHistogram,
  kGaugeHistogram,
  kSummary,
  kInfo,
  kStateSet,
};
std::string_view MetricTypeName(MetricType type);

// Sorted by label name, names unique.
using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string name;  // full sample name, e.g. `foo_bucket`
  Labels labels;
  double value = 0;
  std::optional<int64_t> timestamp_ms;

  // Value of label `name`, or nullptr.
  const std::string* Label(std::string_view label_name) const;
};

struct Family {
  std::string name;
  MetricType type = MetricType::kUntyped;
  std::string help;  // unescaped
  std::string unit;  // OpenMetrics only
  std::vector<Sample> samples;
};

// Bounds on what one exposition may cost us. The defaults fit the largest real model-server pages
// (vLLM with many LoRA adapters is a few hundred KiB) with wide margin.
struct Limits {
  size_t max_input_bytes = 16u << 20;
  size_t max_line_bytes = 1u << 20;
  size_t max_labels = 64;  // per sample
  size_t max_samples = 200'000;
};

enum class Status : uint8_t {
  kNeedMoreData,  // everything so far is valid; feed more or Finish()
  kEnd,           // complete and valid (Finish() done, or OpenMetrics `# EOF` seen)
  kInvalid,       // a malformed line; see error()
  kTooLarge,      // a Limits bound was exceeded; see error()
};

struct Error {
  size_t line = 0;  // 1-based; 0 when not tied to a line (e.g. total size)
  std::string message;
};

class Parser {
 public:
  explicit Parser(Format format, Limits limits = {});

  // Consumes `bytes` (any split). Returns kNeedMoreData while valid, kEnd after an OpenMetrics
  // `# EOF` (only blank lines may follow), or the sticky failure status.
  Status Feed(std::string_view bytes);
  // Parses a final line without a newline and checks completeness (OpenMetrics needs `# EOF`).
  // Returns kEnd on success.
  Status Finish();

  Status status() const { return status_; }
  const Error& error() const { return error_; }
  const std::vector<Family>& families() const { return families_; }
  std::vector<Family> TakeFamilies() { return std::move(families_); }

 private:
  Status ParseLine(std::string_view line);
  Status ParseMetadata(std::string_view rest);
  Status ParseSample(std::string_view line);
  Family& FamilyForSample(std::string_view sample_name);
  Family& FamilyNamed(std::string_view name);
  Status Fail(Status status, std::string message);

  const Format format_;
  const Limits limits_;
  Status status_ = Status::kNeedMoreData;
  Error error_;
  bool eof_seen_ = false;
  size_t line_no_ = 0;
  size_t total_bytes_ = 0;
  size_t total_samples_ = 0;
  std::string pending_;  // an incomplete line carried to the next Feed()
  std::vector<Family> families_;
  std::unordered_map<std::string, size_t> by_name_;
  std::optional<size_t> current_;  // family of the previous line; samples usually continue it
};

struct Result {
  Status status = Status::kNeedMoreData;
  Error error;
  std::vector<Family> families;
  bool ok() const { return status == Status::kEnd; }
};

// Whole-buffer convenience: Feed(text) + Finish().
Result Parse(std::string_view text, Format format, const Limits& limits = {});

// First family called `name`, or nullptr.
const Family* FindFamily(const std::vector<Family>& families, std::string_view name);

}  // namespace infertap::promtext
