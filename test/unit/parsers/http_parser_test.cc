#include "parsers/http_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.hpp"

namespace infertap {
namespace {

using test::Bytes;

struct Msg {
  HttpMessageHead head;
  std::string body;
  bool complete = false;
};

struct Sink : HttpSink {
  std::vector<Msg> msgs;
  std::vector<std::string> errors;
  bool skip_next = false;
  void OnMessageBegin() override { msgs.emplace_back(); }
  bool OnHeadersComplete(const HttpMessageHead& h) override {
    msgs.back().head = h;
    return skip_next;
  }
  void OnBody(std::span<const uint8_t> b) override {
    msgs.back().body.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void OnMessageComplete() override { msgs.back().complete = true; }
  void OnError(std::string_view r) override { errors.emplace_back(r); }
  std::vector<Msg> Completed() const {
    std::vector<Msg> out;
    for (const auto& m : msgs)
      if (m.complete) out.push_back(m);
    return out;
  }
};

void FeedInPieces(HttpParser& p, std::string_view s, size_t piece) {
  for (size_t i = 0; i < s.size(); i += piece) p.Feed(Bytes(s.substr(i, piece)));
}

TEST(HttpParser, RequestWithContentLengthOneByteAtATime) {
  std::string req = test::PostJson("/v1/chat/completions?x=1", R"({"model":"m"})",
                                   "CONTENT-ENCODING: GZip\r\nExpect: 100-continue\r\n");
  Sink sink;
  HttpParser p(HttpParser::Kind::kRequest, 64 * 1024, sink);
  for (size_t i = 0; i + 1 < req.size(); ++i)
    EXPECT_EQ(p.Feed(Bytes(req.substr(i, 1))), ParseState::kNeedMoreData) << i;
  EXPECT_EQ(p.Feed(Bytes(req.substr(req.size() - 1))), ParseState::kOk);
  ASSERT_EQ(sink.msgs.size(), 1u);
  const Msg& m = sink.msgs[0];
  EXPECT_TRUE(m.complete);
  EXPECT_EQ(m.head.method, "POST");
  EXPECT_EQ(m.head.target, "/v1/chat/completions?x=1");
  EXPECT_EQ(m.head.content_type, "application/json");
  EXPECT_EQ(m.head.content_encoding, "gzip");
  EXPECT_TRUE(m.head.expect_continue);
  EXPECT_TRUE(m.head.has_content_length);
  EXPECT_EQ(m.head.content_length, 13u);
  EXPECT_EQ(m.body, R"({"model":"m"})");
  EXPECT_TRUE(sink.errors.empty());
}

TEST(HttpParser, ChunkedResponseIsDechunkedInEverySplit) {
  std::string resp = test::SseHead() + test::Chunk("data: a\n\n") + test::Chunk("data: bb\n\n") +
                     "1a;ext=1\r\n" + std::string(26, 'z') + "\r\n" + test::LastChunk();
  for (size_t piece : {1, 2, 3, 7, 64, 4096}) {
    Sink sink;
    HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
    FeedInPieces(p, resp, piece);
    ASSERT_EQ(sink.msgs.size(), 1u) << piece;
    EXPECT_TRUE(sink.msgs[0].complete);
    EXPECT_EQ(sink.msgs[0].head.status, 200);
    EXPECT_TRUE(sink.msgs[0].head.chunked);
    EXPECT_EQ(sink.msgs[0].head.content_type, "text/event-stream; charset=utf-8");
    EXPECT_EQ(sink.msgs[0].body, "data: a\n\ndata: bb\n\n" + std::string(26, 'z'));
  }
}

TEST(HttpParser, PipelinedRequestsInOneBuffer) {
  std::string two = test::PostJson("/v1/completions", "{}") +
                    "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" +
                    test::PostJson("/v1/embeddings", "[1]");
  Sink sink;
  HttpParser p(HttpParser::Kind::kRequest, 64 * 1024, sink);
  EXPECT_EQ(p.Feed(Bytes(two)), ParseState::kOk);
  ASSERT_EQ(sink.Completed().size(), 3u);
  EXPECT_EQ(sink.msgs[1].head.method, "GET");
  EXPECT_EQ(sink.msgs[1].body, "");
  EXPECT_EQ(sink.msgs[2].head.target, "/v1/embeddings");
  EXPECT_EQ(sink.msgs[2].body, "[1]");
}

TEST(HttpParser, HeadResponseHasNoBodyDespiteContentLength) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  sink.skip_next = true;
  p.Feed(Bytes("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"));
  sink.skip_next = false;
  p.Feed(Bytes(test::JsonResponse(200, "{}")));
  ASSERT_EQ(sink.Completed().size(), 2u);
  EXPECT_EQ(sink.msgs[0].body, "");
  EXPECT_EQ(sink.msgs[1].body, "{}");
}

TEST(HttpParser, NoBodyFor1xx204And304) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  p.Feed(
      Bytes("HTTP/1.1 100 Continue\r\n\r\n"
            "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"));
  p.Feed(Bytes(test::JsonResponse(200, "hello")));
  auto done = sink.Completed();
  ASSERT_EQ(done.size(), 4u);
  EXPECT_EQ(done[0].head.status, 100);
  EXPECT_EQ(done[1].head.status, 204);
  EXPECT_EQ(done[1].body, "");
  EXPECT_EQ(done[2].body, "");
  EXPECT_EQ(done[3].body, "hello");
  EXPECT_TRUE(sink.errors.empty());
}

TEST(HttpParser, CloseDelimitedBodyCompletesOnFinish) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  EXPECT_EQ(p.Feed(Bytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc")),
            ParseState::kNeedMoreData);
  p.Feed(Bytes("def"));
  EXPECT_FALSE(sink.msgs[0].complete);
  EXPECT_EQ(p.Finish(), ParseState::kOk);
  EXPECT_TRUE(sink.msgs[0].complete);
  EXPECT_EQ(sink.msgs[0].body, "abcdef");
}

TEST(HttpParser, FinishReportsACutMessage) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  p.Feed(Bytes(test::SseHead() + test::Chunk("data: x\n\n")));
  EXPECT_TRUE(p.in_message());
  EXPECT_EQ(p.Finish(), ParseState::kInvalid);
  EXPECT_FALSE(sink.msgs[0].complete);
  EXPECT_TRUE(sink.errors.empty());
}

TEST(HttpParser, ResynchronisesAfterGarbage) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kRequest, 64 * 1024, sink);
  std::string input = "\x16\x03\x01 TLS garbage\r\nmore POST junk\nPOS";
  EXPECT_EQ(p.Feed(Bytes(input)), ParseState::kInvalid);
  EXPECT_EQ(sink.errors, std::vector<std::string>{"http_invalid"});
  // The candidate "POST " is split across feeds.
  std::string rest = test::PostJson("/v1/completions", "{}").substr(3);
  EXPECT_EQ(p.Feed(Bytes(rest)), ParseState::kOk);
  auto done = sink.Completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].head.target, "/v1/completions");
  EXPECT_EQ(done[0].body, "{}");
}

TEST(HttpParser, ResponseResyncIgnoresBodyWordsNotAtLineStart) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  p.Feed(Bytes("garbage HTTP/1.1 200 OK\r\n"));
  p.Feed(Bytes(test::JsonResponse(404, "{}")));
  auto done = sink.Completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].head.status, 404);
}

TEST(HttpParser, GiantHeaderIsCappedAndParserRecovers) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kRequest, 1024, sink);
  std::string big = "POST /v1/completions HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n";
  EXPECT_EQ(p.Feed(Bytes(big)), ParseState::kInvalid);
  EXPECT_EQ(sink.errors, std::vector<std::string>{"header_cap"});
  p.Feed(Bytes("\r\n" + test::PostJson("/v1/embeddings", "{}")));
  auto done = sink.Completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].head.target, "/v1/embeddings");
}

TEST(HttpParser, GapAbandonsMessageAndNextMessageParses) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  p.Feed(Bytes(test::SseHead() + "5\r\nda"));
  p.OnGap();
  EXPECT_FALSE(p.in_message());
  // Continuation bytes of the lost body, then a new response right at a line start.
  p.Feed(Bytes("ta: x\r\n0\r\n\r\n"));
  p.Feed(Bytes(test::JsonResponse(200, "{}")));
  auto done = sink.Completed();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].body, "{}");
}

TEST(HttpParser, MessageRightAfterGapIsParsed) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kRequest, 64 * 1024, sink);
  p.OnGap();
  p.Feed(Bytes(test::PostJson("/v1/completions", "{}")));
  EXPECT_EQ(sink.Completed().size(), 1u);
}

TEST(HttpParser, UpgradeResponseEndsTheDirection) {
  Sink sink;
  HttpParser p(HttpParser::Kind::kResponse, 64 * 1024, sink);
  EXPECT_EQ(p.Feed(Bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\n\r\n\x81\x05hello")),
            ParseState::kEnd);
  EXPECT_EQ(p.Feed(Bytes("HTTP/1.1 200 OK\r\n\r\n")), ParseState::kEnd);
  EXPECT_EQ(sink.Completed().size(), 1u);
}

}  // namespace
}  // namespace infertap
