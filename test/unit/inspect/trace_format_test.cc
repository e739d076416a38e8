#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "agent/cli/inspect/trace.hpp"

namespace infertap::cli {
namespace {

class TraceFormat : public ::testing::Test {
 protected:
  // The human time column is local time; pin the zone so the expected strings hold anywhere.
  void SetUp() override {
    const char* tz = std::getenv("TZ");
    saved_tz_ = tz ? std::optional<std::string>(tz) : std::nullopt;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  void TearDown() override {
    if (saved_tz_) {
      setenv("TZ", saved_tz_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }
  std::optional<std::string> saved_tz_;
};

TEST_F(TraceFormat, StreamingRecordHasEveryColumn) {
  TopRecord r;
  r.ts = "2025-01-02T18:04:05.123456789Z";
  r.pool = "default";
  r.model_name = "llama";
  r.status = 200;
  r.stream = true;
  r.duration_s = 1.234;
  r.ttft_s = 0.08;
  r.input_tokens = 12;
  r.output_tokens = 64;
  EXPECT_EQ(FormatTraceLine(r),
            "18:04:05.123 default      llama                    200 stream  1.234s ttft  0.080s "
            "in     12 out     64 err -");
}

TEST_F(TraceFormat, FailedUnaryRecordWithUnknownsAndLongNames) {
  TopRecord r;
  r.ts = "2025-01-02T18:04:05Z";
  r.pool = "a-very-long-pool-name";
  r.model_name = "meta-llama/Llama-3.1-8B-Instruct";
  r.status = 0;
  r.stream = false;
  r.duration_s = 30.5;
  r.error_code = "Incomplete";
  EXPECT_EQ(FormatTraceLine(r),
            "18:04:05.000 a-very-long~ meta-llama/Llama-3.1-8B~   0 unary   30.50s ttft       - "
            "in      - out      - err Incomplete");
}

TEST_F(TraceFormat, ColumnsLineUpWhateverTheValues) {
  TopRecord a;
  a.ts = "2025-01-02T00:00:00Z";
  TopRecord b;
  b.ts = "2025-01-02T00:00:00.5Z";
  b.pool = "p";
  b.model_name = "m";
  b.status = 503;
  b.stream = true;
  b.duration_s = 123.4;
  b.ttft_s = 12.3;
  b.input_tokens = 123456;
  b.output_tokens = 1;
  b.error_code = "ServiceUnavailable";
  std::string la = FormatTraceLine(a);
  std::string lb = FormatTraceLine(b);
  for (const char* label : {" ttft ", " in ", " out ", " err "}) {
    EXPECT_EQ(la.find(label), lb.find(label)) << label << "\n" << la << "\n" << lb;
  }
  EXPECT_EQ(lb.substr(0, 12), "00:00:00.500");
}

TEST_F(TraceFormat, NamesFromTheWireCannotDriveTheTerminal) {
  TopRecord r;
  r.ts = "2025-01-02T18:04:05Z";
  r.pool = "p\x1b]0;pwned\x07";
  r.model_name = "\x1b[31mred";
  r.error_code = "Bad\nLine";
  std::string line = FormatTraceLine(r);
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_EQ(line.substr(13, 24), "p?]0;pwned?  ?[31mred   ");
  EXPECT_EQ(line.substr(line.size() - 8), "Bad?Line");
}

TEST_F(TraceFormat, TimeZonesAndBadTimestamps) {
  EXPECT_EQ(FormatTraceTime("2025-01-02T18:04:05.9999Z"),
            "18:04:05.999");  // truncated, not rounded
  EXPECT_EQ(FormatTraceTime("2025-01-02T20:04:05.1+02:00"), "18:04:05.100");
  EXPECT_EQ(FormatTraceTime("2025-01-02t16:34:05-01:30"), "18:04:05.000");
  setenv("TZ", "Asia/Kolkata", 1);  // +05:30, no DST
  tzset();
  if (FormatTraceTime("2025-01-02T00:00:00Z") != "00:00:00.000") {  // zoneinfo present
    EXPECT_EQ(FormatTraceTime("2025-01-02T00:00:00Z"), "05:30:00.000");
  }
  for (const char* bad : {"", "2025-01-02", "2025-01-02T18:04:05", "2025-01-02T18:04:05.Z",
                          "2025-13-02T18:04:05Z", "2025-01-02T18:04:05Zjunk", "yesterday"}) {
    EXPECT_EQ(FormatTraceTime(bad), "??:??:??.???") << bad;
  }
}

}  // namespace
}  // namespace infertap::cli
