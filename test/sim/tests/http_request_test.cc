// In-process tests of the simulator's request parser and the client-side response reader.
#include "http_request.hpp"

#include <gtest/gtest.h>

#include "response_reader.hpp"
#include "wire_format.hpp"

namespace infertap::sim {
namespace {

TEST(RequestParser, ByteByByteWithPipelinedTail) {
  std::string two =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /health "
      "HTTP/1.1\r\n\r\n";
  RequestParser p;
  std::string buf;
  ParseState s = ParseState::kNeedMoreData;
  size_t i = 0;
  for (; i < two.size(); ++i) {
    buf.push_back(two[i]);
    s = p.Parse(buf);
    if (s == ParseState::kOk) break;
  }
  ASSERT_EQ(s, ParseState::kOk);
  EXPECT_EQ(p.request().method, "POST");
  EXPECT_EQ(p.request().Header("host"), "x");  // names lower-cased
  EXPECT_EQ(p.request().body, "hello");
  EXPECT_EQ(p.consumed(), buf.size());
  RequestParser q;
  EXPECT_EQ(q.Parse(std::string_view(two).substr(p.consumed())), ParseState::kOk);
  EXPECT_EQ(q.request().Path(), "/health");
}

TEST(RequestParser, HeadDoneReportedOnceForExpectContinue) {
  RequestParser p;
  std::string buf = "POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  EXPECT_EQ(p.Parse(buf), ParseState::kHeadDone);
  EXPECT_TRUE(p.request().expect_continue);
  EXPECT_EQ(p.Parse(buf), ParseState::kNeedMoreData);
  buf += "ab";
  EXPECT_EQ(p.Parse(buf), ParseState::kOk);
  EXPECT_EQ(p.request().body, "ab");
}

TEST(RequestParser, ChunkedWithExtensionsAndTrailers) {
  RequestParser p;
  std::string buf =
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\nA\r\n0123456789\r\n"
      "0\r\nX-Trailer: 1\r\n\r\n";
  ASSERT_EQ(p.Parse(buf), ParseState::kOk);
  EXPECT_EQ(p.request().body, "abc0123456789");
  EXPECT_EQ(p.consumed(), buf.size());
}

TEST(RequestParser, RejectsSmugglingAndGarbage) {
  struct Case {
    const char* text;
    int status;
  } cases[] = {
      {"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"POST /x HTTP/1.1\r\nContent-Length : 3\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", 400},
      {"BROKEN\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 400},
      {"POST /x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", 413},
  };
  for (const auto& c : cases) {
    RequestParser p;
    EXPECT_EQ(p.Parse(c.text), ParseState::kInvalid) << c.text;
    EXPECT_EQ(p.error_status(), c.status) << c.text;
  }
}

TEST(RequestParser, KeepAliveRules) {
  RequestParser a;
  ASSERT_EQ(a.Parse("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n"), ParseState::kOk);
  EXPECT_FALSE(a.request().keep_alive);
  RequestParser b;
  ASSERT_EQ(b.Parse("GET / HTTP/1.0\r\n\r\n"), ParseState::kOk);
  EXPECT_FALSE(b.request().keep_alive);
  RequestParser c;
  ASSERT_EQ(c.Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), ParseState::kOk);
  EXPECT_TRUE(c.request().keep_alive);
}

TEST(ResponseReader, DechunksAndSkipsContinue) {
  std::string wire =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
      "transfer-encoding: chunked\r\n\r\n7\r\ndata: 1\r\n6\r\n\n\ndata\r\n5\r\n: "
      "2\n\n\r\n0\r\n\r\n";
  for (size_t split = 1; split < wire.size(); split += 7) {
    ResponseReader r;
    std::string body;
    auto sink = [&](std::string_view b) { body.append(b); };
    size_t used = 0;
    auto s = r.Feed(wire.substr(0, split), &used, sink);
    ASSERT_NE(s, ResponseReader::State::kInvalid);
    if (s != ResponseReader::State::kDone) {
      ASSERT_EQ(used, split);
      s = r.Feed(wire.substr(split), &used, sink);
    }
    ASSERT_EQ(s, ResponseReader::State::kDone) << split;
    EXPECT_EQ(body, "data: 1\n\ndata: 2\n\n");
    EXPECT_EQ(r.status(), 200);
    EXPECT_EQ(r.chunks(), 3u);
    EXPECT_EQ(r.body_bytes(), body.size());
    EXPECT_EQ(r.wire_bytes(), wire.size());
  }
}

TEST(SseScanner, ClassifiesEvents) {
  SseScanner sc;
  std::vector<Classified> got;
  sc.Feed(
      ": keep-alive\n\ndata:{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: "
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":5}}\n\nerror: {}\n\n"
      "data: [DONE]",
      [&](const SseScanner::Event& e) { got.push_back(ClassifyEvent(e)); });
  sc.Finish([&](const SseScanner::Event& e) { got.push_back(ClassifyEvent(e)); });
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[0].content);
  EXPECT_TRUE(got[1].has_usage);
  EXPECT_EQ(got[1].completion_tokens, 5);
  EXPECT_FALSE(got[1].content);
  EXPECT_TRUE(got[2].error);
  EXPECT_TRUE(got[3].done);
}

TEST(WireFormat, JsonQuoteEscapesLikePython) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

}  // namespace
}  // namespace infertap::sim
