#include "parsers/sse_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.hpp"

namespace infertap {
namespace {

using test::Bytes;

struct Ev {
  std::string type, data, id;
  bool error = false;
  bool operator==(const Ev&) const = default;
};

struct Sink : SseSink {
  std::vector<Ev> events;
  int oversize = 0;
  void OnEvent(const SseEvent& e) override {
    events.push_back({std::string(e.type), std::string(e.data), std::string(e.id), e.error_line});
  }
  void OnOversize() override { ++oversize; }
};

std::vector<Ev> ParseSplit(std::string_view s, size_t piece, bool finish = true) {
  Sink sink;
  SseParser p(1 << 20);
  for (size_t i = 0; i < s.size(); i += piece) p.Feed(Bytes(s.substr(i, piece)), sink);
  if (finish) p.Finish(sink);
  return sink.events;
}

TEST(SseParser, LineEndingsLfCrlfCr) {
  std::vector<Ev> want = {{"", "a", ""}, {"", "b", ""}, {"", "c", ""}};
  EXPECT_EQ(ParseSplit("data: a\n\ndata: b\r\n\r\ndata: c\r\r", 4096, false), want);
}

TEST(SseParser, CrLfSplitAcrossFeedsIsOneLineEnd) {
  // If the LF after a CR were a second line end, "data: a\r" + "\n" + "data: b\r\n\r\n" would
  // dispatch "a" alone and then "b" - instead of one event with two data lines.
  Sink sink;
  SseParser p(1 << 20);
  p.Feed(Bytes("data: a\r"), sink);
  p.Feed(Bytes("\ndata: b\r"), sink);
  EXPECT_TRUE(sink.events.empty());
  p.Feed(Bytes("\n\r"), sink);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].data, "a\nb");
  p.Feed(Bytes("\n"), sink);  // the LF of the CRLF blank line: nothing new
  EXPECT_EQ(sink.events.size(), 1u);
}

TEST(SseParser, EveryFieldAndEveryByteSplit) {
  std::string s =
      ": keep-alive\n\nevent: response.output_text.delta\nid: 7\nretry: 1500\n"
      "data:{\"x\":1}\ndata:  two spaces\nunknown: y\nnocolon\n\n"
      "data\n\nevent: only\n\ndata: [DONE]\n\n";
  std::vector<Ev> want = {{"response.output_text.delta", "{\"x\":1}\n two spaces", "7"},
                          {"", "", "7"},
                          {"", "[DONE]", "7"}};
  for (size_t piece = 1; piece <= s.size(); ++piece) EXPECT_EQ(ParseSplit(s, piece), want) << piece;
  Sink sink;
  SseParser p(1 << 20);
  p.Feed(Bytes(s), sink);
  EXPECT_EQ(p.retry_ms(), 1500);
}

TEST(SseParser, PendingEventWithoutBlankLineIsDispatchedAtFinish) {
  EXPECT_TRUE(ParseSplit("data: {\"usage\":1}\n", 3, false).empty());
  EXPECT_EQ(ParseSplit("data: {\"usage\":1}\n", 3), (std::vector<Ev>{{"", "{\"usage\":1}", ""}}));
  // Not even a line end.
  EXPECT_EQ(ParseSplit("data: [DONE]", 5), (std::vector<Ev>{{"", "[DONE]", ""}}));
}

TEST(SseParser, LlamaCppErrorLine) {
  auto ev = ParseSplit("data: {\"a\":1}\n\nerror: {\"code\":500}\n\ndata: [DONE]", 4096);
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_TRUE(ev[1].error);
  EXPECT_EQ(ev[1].data, "{\"code\":500}");
  EXPECT_FALSE(ev[2].error);
}

TEST(SseParser, OversizeEventIsSkippedAndCounted) {
  Sink sink;
  SseParser p(64);
  std::string s = "data: small\n\ndata: " + std::string(200, 'x') + "\ndata: more\n\ndata: ok\n\n";
  for (size_t i = 0; i < s.size(); i += 9) p.Feed(Bytes(s.substr(i, 9)), sink);
  p.Finish(sink);
  EXPECT_EQ(sink.oversize, 1);
  ASSERT_EQ(sink.events.size(), 2u);
  EXPECT_EQ(sink.events[0].data, "small");
  EXPECT_EQ(sink.events[1].data, "ok");
}

TEST(SseParser, ManyLinesOfOneEventHitTheCap) {
  Sink sink;
  SseParser p(100);
  std::string s;
  for (int i = 0; i < 50; ++i) s += "data: 0123456789\n";
  s += "\ndata: after\n\n";
  p.Feed(Bytes(s), sink);
  EXPECT_EQ(sink.oversize, 1);
  ASSERT_EQ(sink.events.size(), 1u);
  EXPECT_EQ(sink.events[0].data, "after");
}

TEST(SseParser, FixtureEventsInEverySplit) {
  std::string s = test::ReadFixture("wire/vllm_chat_stream_include_usage.sse");
  auto lines = test::SseDataLines(s);
  for (size_t piece : {1, 2, 3, 5, 13, 100, 1 << 20}) {
    auto ev = ParseSplit(s, piece);
    ASSERT_EQ(ev.size(), lines.size());
    for (size_t i = 0; i < ev.size(); ++i) EXPECT_EQ(ev[i].data, lines[i]);
  }
}

TEST(SseParser, ReturnsStateAtEventBoundaries) {
  Sink sink;
  SseParser p(1 << 20);
  EXPECT_EQ(p.Feed(Bytes("data: x\n"), sink), ParseState::kNeedMoreData);
  EXPECT_EQ(p.Feed(Bytes("\n"), sink), ParseState::kOk);
  EXPECT_EQ(sink.events.size(), 1u);
}

}  // namespace
}  // namespace infertap
