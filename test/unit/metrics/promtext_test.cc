#include "parsers/promtext/promtext.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace infertap::promtext {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Fixture(const std::string& name) {
  return ReadFile(std::string(INFERTAP_FIXTURES_DIR) + "/wire/" + name);
}

const Sample* FindSample(const Family& f, std::string_view name, const Labels& subset = {}) {
  for (const Sample& s : f.samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : subset) {
      const std::string* got = s.Label(k);
      if (!got || *got != v) match = false;
    }
    if (match) return &s;
  }
  return nullptr;
}

TEST(PromText, VllmV1FixtureGroupsFamiliesAndCreatedGauges) {
  Result r = Parse(Fixture("vllm_metrics_v1_reconstructed.txt"), Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.line << ": " << r.error.message;

  const Family* running = FindFamily(r.families, "vllm:num_requests_running");
  ASSERT_NE(running, nullptr);
  EXPECT_EQ(running->type, MetricType::kGauge);
  EXPECT_EQ(running->help, "Number of requests in model execution batches.");
  ASSERT_EQ(running->samples.size(), 1u);
  EXPECT_EQ(running->samples[0].value, 3.0);
  EXPECT_EQ(running->samples[0].labels,
            (Labels{{"engine", "0"}, {"model_name", "meta-llama/Llama-3.1-8B-Instruct"}}));

  const Family* ttft = FindFamily(r.families, "vllm:time_to_first_token_seconds");
  ASSERT_NE(ttft, nullptr);
  EXPECT_EQ(ttft->type, MetricType::kHistogram);
  // 23 buckets + _count + _sum; the _created gauge is its own family, as declared.
  EXPECT_EQ(ttft->samples.size(), 25u);
  const Sample* inf =
      FindSample(*ttft, "vllm:time_to_first_token_seconds_bucket", {{"le", "+Inf"}});
  ASSERT_NE(inf, nullptr);
  EXPECT_EQ(inf->value, 133.0);
  const Sample* sum = FindSample(*ttft, "vllm:time_to_first_token_seconds_sum");
  ASSERT_NE(sum, nullptr);
  EXPECT_DOUBLE_EQ(sum->value, 6.42);

  const Family* created = FindFamily(r.families, "vllm:time_to_first_token_seconds_created");
  ASSERT_NE(created, nullptr);
  EXPECT_EQ(created->type, MetricType::kGauge);
  EXPECT_DOUBLE_EQ(created->samples.at(0).value, 1.7791919995e+09);

  const Family* lora = FindFamily(r.families, "vllm:lora_requests_info");
  ASSERT_NE(lora, nullptr);
  ASSERT_EQ(lora->samples.size(), 3u);
  EXPECT_EQ(*lora->samples[0].Label("running_lora_adapters"), "");
  EXPECT_EQ(*lora->samples[2].Label("running_lora_adapters"), "sql-lora,chat-lora");
}

TEST(PromText, UsageExcerptWithSumBeforeBucketsAndBlankLine) {
  Result r = Parse(Fixture("vllm_metrics_docs_usage_excerpt.txt"), Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.line << ": " << r.error.message;
  const Family* f = FindFamily(r.families, "vllm:iteration_tokens_total");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->type, MetricType::kHistogram);
  EXPECT_EQ(f->samples.front().name, "vllm:iteration_tokens_total_sum");
  EXPECT_GE(f->samples.size(), 8u);
}

TEST(PromText, DocsDesignExcerptIsRejectedAtTheShellPromptLine) {
  // The docs excerpt starts with a `$ curl ...` line: not exposition, and must say where.
  Result r = Parse(Fixture("vllm_metrics_docs_design_excerpt.txt"), Format::kText004);
  EXPECT_EQ(r.status, Status::kInvalid);
  EXPECT_EQ(r.error.line, 2u);
  EXPECT_NE(r.error.message.find("metric name"), std::string::npos) << r.error.message;
}

TEST(PromText, TritonReadmeSample) {
  // The README sample is verbatim markdown and carries a ``` fence inside; drop fence lines (no
  // Triton server sends them) and the rest must parse.
  std::string text = Fixture("triton_trtllm_metrics_readme_sample.txt");
  std::string cleaned;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) continue;
    cleaned += line + "\n";
  }
  EXPECT_EQ(Parse(text, Format::kText004).status, Status::kInvalid);
  Result r = Parse(cleaned, Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.line << ": " << r.error.message;
  const Family* kv = FindFamily(r.families, "nv_trt_llm_kv_cache_block_metrics");
  ASSERT_NE(kv, nullptr);
  const Sample* frac = FindSample(*kv, kv->name, {{"kv_cache_block_type", "fraction"}});
  ASSERT_NE(frac, nullptr);
  EXPECT_DOUBLE_EQ(frac->value, 0.4875);
  // A family with TYPE but no samples still exists (metadata only).
  const Family* pending = FindFamily(r.families, "nv_inference_pending_request_count");
  ASSERT_NE(pending, nullptr);
  EXPECT_TRUE(pending->samples.empty());
}

TEST(PromText, LabelAndHelpEscapes) {
  Result r = Parse(
      "# HELP m Line one\\nback\\\\slash \\\"kept\\\" \\t\n"
      "m{a=\"x\\\\y\",b=\"q\\\"uote\",c=\"new\\nline\"} 1\n",
      Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.message;
  const Family& f = r.families.at(0);
  // 0.0.4 HELP escapes only backslash and newline; other escapes stay as written.
  EXPECT_EQ(f.help, "Line one\nback\\slash \\\"kept\\\" \\t");
  EXPECT_EQ(f.samples.at(0).labels, (Labels{{"a", "x\\y"}, {"b", "q\"uote"}, {"c", "new\nline"}}));
}

TEST(PromText, SpecialValuesTimestampsAndWhitespace) {
  Result r = Parse(
      "a NaN\n"
      "b +Inf 1700000000000\n"
      "c -Inf\n"
      "d{ x = \"1\" , y=\"2\", }\t-1.5e-3   -42\n"
      "e 1e+09\n",
      Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.line << ": " << r.error.message;
  ASSERT_EQ(r.families.size(), 5u);
  EXPECT_TRUE(std::isnan(r.families[0].samples[0].value));
  EXPECT_EQ(r.families[1].samples[0].value, INFINITY);
  EXPECT_EQ(r.families[1].samples[0].timestamp_ms, 1700000000000);
  EXPECT_EQ(r.families[2].samples[0].value, -INFINITY);
  EXPECT_FALSE(r.families[2].samples[0].timestamp_ms.has_value());
  EXPECT_EQ(r.families[3].samples[0].labels, (Labels{{"x", "1"}, {"y", "2"}}));
  EXPECT_DOUBLE_EQ(r.families[3].samples[0].value, -1.5e-3);
  EXPECT_EQ(r.families[3].samples[0].timestamp_ms, -42);
  EXPECT_EQ(r.families[4].samples[0].value, 1e9);
  EXPECT_EQ(r.families[0].type, MetricType::kUntyped);
}

TEST(PromText, CrlfCommentsAndBlankLines) {
  Result r = Parse("# just a comment\r\n\r\n#\r\n# TYPE g gauge\r\ng 2\r\n   \r\ng{l=\"v\"} 3\r\n",
                   Format::kText004);
  ASSERT_TRUE(r.ok()) << r.error.message;
  ASSERT_EQ(r.families.size(), 1u);
  EXPECT_EQ(r.families[0].samples.size(), 2u);
  EXPECT_EQ(r.families[0].samples[1].value, 3.0);
}

TEST(PromText, FinalLineWithoutNewline) {
  Result r = Parse("a 1\nb 2", Format::kText004);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.families.at(1).samples.at(0).value, 2.0);
}

TEST(PromText, OpenMetricsCounterUnitExemplarAndEof) {
  Result r = Parse(
      "# TYPE foo counter\n"
      "# UNIT foo seconds\n"
      "# HELP foo Time \\\"spent\\\".\n"
      "foo_total{a=\"1\"} 17 1700000000.5 # {trace_id=\"abc\"} 1.0 1700000000\n"
      "foo_created{a=\"1\"} 1.6e9\n"
      "# TYPE i info\n"
      "i_info{version=\"1\"} 1\n"
      "# EOF\n",
      Format::kOpenMetrics);
  ASSERT_TRUE(r.ok()) << r.error.line << ": " << r.error.message;
  ASSERT_EQ(r.families.size(), 2u);
  const Family& foo = r.families[0];
  EXPECT_EQ(foo.type, MetricType::kCounter);
  EXPECT_EQ(foo.unit, "seconds");
  EXPECT_EQ(foo.help, "Time \"spent\".");
  ASSERT_EQ(foo.samples.size(), 2u);
  EXPECT_EQ(foo.samples[0].name, "foo_total");
  EXPECT_EQ(foo.samples[0].value, 17.0);
  EXPECT_EQ(foo.samples[0].timestamp_ms, 1700000000500);
  EXPECT_EQ(foo.samples[1].name, "foo_created");
  EXPECT_EQ(r.families[1].type, MetricType::kInfo);
}

TEST(PromText, OpenMetricsNeedsEofAndNothingAfterIt) {
  EXPECT_EQ(Parse("a 1\n", Format::kOpenMetrics).status, Status::kInvalid);
  Result after = Parse("a 1\n# EOF\nb 2\n", Format::kOpenMetrics);
  EXPECT_EQ(after.status, Status::kInvalid);
  EXPECT_EQ(after.error.line, 3u);
  EXPECT_TRUE(Parse("a 1\n# EOF", Format::kOpenMetrics).ok());
  // Exemplars are an OpenMetrics feature; in 0.0.4 text after the value is an error.
  EXPECT_EQ(Parse("a 1 # {x=\"y\"} 1\n", Format::kText004).status, Status::kInvalid);
  // `# EOF` in 0.0.4 is just a comment.
  EXPECT_TRUE(Parse("a 1\n# EOF\nb 2\n", Format::kText004).ok());
}

TEST(PromText, FormatFromContentType) {
  EXPECT_EQ(FormatFromContentType("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::kOpenMetrics);
  EXPECT_EQ(FormatFromContentType("text/plain; version=0.0.4; charset=utf-8"), Format::kText004);
  EXPECT_EQ(FormatFromContentType(""), Format::kText004);
}

struct BadLine {
  const char* text;
  size_t line;
  const char* message_part;
};

class PromTextInvalid : public ::testing::TestWithParam<BadLine> {};

TEST_P(PromTextInvalid, ReportsLineAndReason) {
  const BadLine& b = GetParam();
  Result r = Parse(b.text, Format::kText004);
  EXPECT_EQ(r.status, Status::kInvalid) << b.text;
  EXPECT_EQ(r.error.line, b.line) << b.text;
  EXPECT_NE(r.error.message.find(b.message_part), std::string::npos) << r.error.message;
}

INSTANTIATE_TEST_SUITE_P(
    Lines, PromTextInvalid,
    ::testing::Values(
        BadLine{"ok 1\n{a=\"b\"} 1\n", 2, "metric name"}, BadLine{"m{a=\"b\\x\"} 1\n", 1, "escape"},
        BadLine{"m{a=\"b} 1\n", 1, "unterminated"}, BadLine{"m{a=\"b\"\n", 1, "','"},
        BadLine{"m{a=b} 1\n", 1, "'\"'"}, BadLine{"m{1a=\"b\"} 1\n", 1, "label name"},
        BadLine{"m{a:b=\"b\"} 1\n", 1, "label name"},
        BadLine{"m{a=\"1\",a=\"2\"} 1\n", 1, "duplicate"},
        BadLine{"m\n", 1, "missing sample value"},
        BadLine{"m{a=\"1\"}1\n", 1, "missing sample value"},
        BadLine{"m 1x\n", 1, "invalid sample value"},
        BadLine{"m 0x10\n", 1, "invalid sample value"}, BadLine{"m 1 1.5\n", 1, "timestamp"},
        BadLine{"m 1 2 3\n", 1, "unexpected text"},
        BadLine{"a 1\n\n# TYPE m bogus\n", 3, "unknown metric type"},
        BadLine{"# TYPE m gauge\nm 1\n# TYPE m counter\n", 3, "after its samples"},
        BadLine{"# HELP\n", 1, "without a name"}, BadLine{"m-x 1\n", 1, "missing sample value"}));

TEST(PromText, LimitsAreEnforced) {
  Limits small;
  small.max_labels = 2;
  EXPECT_TRUE(Parse("m{a=\"1\",b=\"2\"} 1\n", Format::kText004, small).ok());
  Result labels = Parse("m{a=\"1\",b=\"2\",c=\"3\"} 1\n", Format::kText004, small);
  EXPECT_EQ(labels.status, Status::kTooLarge);

  small.max_line_bytes = 16;
  Result line = Parse("a 1\nthis_line_is_way_too_long 1\n", Format::kText004, small);
  EXPECT_EQ(line.status, Status::kTooLarge);
  EXPECT_EQ(line.error.line, 2u);

  small.max_line_bytes = 1024;
  small.max_input_bytes = 10;
  EXPECT_EQ(Parse("a 1\nb 2\nc 3\n", Format::kText004, small).status, Status::kTooLarge);

  small.max_input_bytes = 1024;
  small.max_samples = 2;
  EXPECT_EQ(Parse("a 1\nb 2\nc 3\n", Format::kText004, small).status, Status::kTooLarge);
}

TEST(PromText, IncrementalFeedAnySplitMatchesWhole) {
  std::string text = Fixture("vllm_metrics_v1_reconstructed.txt");
  Result whole = Parse(text, Format::kText004);
  ASSERT_TRUE(whole.ok());
  for (size_t step : {1u, 7u, 100u, 4096u}) {
    Parser p(Format::kText004);
    for (size_t i = 0; i < text.size(); i += step) {
      ASSERT_EQ(p.Feed(std::string_view(text).substr(i, step)), Status::kNeedMoreData);
    }
    ASSERT_EQ(p.Finish(), Status::kEnd);
    ASSERT_EQ(p.families().size(), whole.families.size());
    for (size_t f = 0; f < whole.families.size(); ++f) {
      const Family& a = p.families()[f];
      const Family& b = whole.families[f];
      EXPECT_EQ(a.name, b.name);
      ASSERT_EQ(a.samples.size(), b.samples.size());
      for (size_t s = 0; s < a.samples.size(); ++s) {
        EXPECT_EQ(a.samples[s].labels, b.samples[s].labels);
        EXPECT_EQ(a.samples[s].value, b.samples[s].value);
      }
    }
  }
}

TEST(PromText, FailureIsSticky) {
  Parser p(Format::kText004);
  EXPECT_EQ(p.Feed("bad{\n"), Status::kInvalid);
  EXPECT_EQ(p.Feed("good 1\n"), Status::kInvalid);
  EXPECT_EQ(p.Finish(), Status::kInvalid);
  EXPECT_EQ(p.error().line, 1u);
}

// The fuzz seed corpus replayed as a test: expected outcome per file, and split invariance.
TEST(PromText, SeedCorpusReplay) {
  const std::string dir = std::string(INFERTAP_SOURCE_DIR) + "/test/fuzz/corpus/promtext";
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string text = ReadFile(entry.path().string());
    std::string name = entry.path().filename().string();
    Format format =
        name.find("openmetrics") != std::string::npos ? Format::kOpenMetrics : Format::kText004;
    Result r = Parse(text, format);
    bool expect_ok = name.find("invalid") == std::string::npos;
    EXPECT_EQ(r.ok(), expect_ok) << name << ": " << r.error.message;
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      Parser p(format);
      p.Feed(std::string_view(text).substr(0, cut));
      p.Feed(std::string_view(text).substr(cut));
      ASSERT_EQ(p.Finish(), r.status) << name << " cut " << cut;
    }
    ++files;
  }
  EXPECT_GE(files, 5u);
}

}  // namespace
}  // namespace infertap::promtext
