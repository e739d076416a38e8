#include <gtest/gtest.h>

#include <vector>

#include "agent/serve/head_parser.hpp"
#include "agent/serve/listen_addr.hpp"

namespace infertap::serve {
namespace {

HeadParse Parse(std::string_view in, RequestHead* req, size_t* used, size_t max = 1024) {
  return ParseRequestHeadOnce(in, max, req, used);
}

TEST(HttpHead, ParsesRequestLineHeadersAndQuery) {
  RequestHead r;
  size_t used = 0;
  std::string in =
      "GET /v1/records?format=sse&x=1 HTTP/1.1\r\nHost: a\r\nAccept:  text/event-stream "
      "\r\n\r\nNEXT";
  ASSERT_EQ(Parse(in, &r, &used), HeadParse::kOk);
  EXPECT_EQ(used, in.size() - 4);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/v1/records");
  EXPECT_EQ(r.query, "format=sse&x=1");
  EXPECT_EQ(r.QueryParam("format"), "sse");
  EXPECT_EQ(r.QueryParam("x"), "1");
  EXPECT_EQ(r.QueryParam("y"), "");
  ASSERT_NE(r.Header("accept"), nullptr);
  EXPECT_EQ(*r.Header("ACCEPT"), "text/event-stream");
  EXPECT_TRUE(r.KeepAlive());
}

TEST(HttpHead, KeepAliveRules) {
  RequestHead r;
  size_t used = 0;
  ASSERT_EQ(Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, &used), HeadParse::kOk);
  EXPECT_EQ(r.minor_version, 0);
  EXPECT_TRUE(r.KeepAlive());
  ASSERT_EQ(Parse("GET / HTTP/1.0\r\n\r\n", &r, &used), HeadParse::kOk);
  EXPECT_FALSE(r.KeepAlive());
  ASSERT_EQ(Parse("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n", &r, &used), HeadParse::kOk);
  EXPECT_FALSE(r.KeepAlive());
}

TEST(HttpHead, NeedsMoreUntilBlankLine) {
  RequestHead r;
  size_t used = 0;
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nHost: a\r\n", &r, &used), HeadParse::kNeedMore);
  EXPECT_EQ(Parse("GET / HT", &r, &used), HeadParse::kNeedMore);
  EXPECT_EQ(Parse("", &r, &used), HeadParse::kNeedMore);
}

TEST(HttpHead, RejectsMalformed) {
  RequestHead r;
  size_t used = 0;
  for (std::string bad : {
           std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 17),  // TLS hello
           std::string("GET / HTTP/1.1\r\n"),  // complete line only: fine so far (checked below)
           std::string("GET http://x/ HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/2.0\r\n\r\n"),
           std::string("G(T / HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nNo colon\r\n\r\n"),
           std::string("GET / HTTP/0.9\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nA : b\r\n\r\n"),   // space before the colon
           std::string("FOO / HTTP/1.1\r\n\r\n"),            // llhttp knows its methods
           std::string("GET / HTTP/1.1\r\nA: b\n\n"),        // bare LF ending the head
           std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),  // h2 preface
           std::string("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nBad Name: b\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n"),
           std::string("GET /\x7f HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"),
       }) {
    HeadParse p = Parse(bad, &r, &used);
    if (bad == "GET / HTTP/1.1\r\n") {
      EXPECT_EQ(p, HeadParse::kNeedMore);
    } else {
      EXPECT_EQ(p, HeadParse::kInvalid) << bad;
    }
  }
  // A first line that is complete and wrong is rejected without waiting for the blank line.
  EXPECT_EQ(Parse("hello there\r\n", &r, &used), HeadParse::kInvalid);
  // NUL bytes are rejected early too.
  EXPECT_EQ(Parse(std::string("GET / HTTP/1.1\r\nA: \0", 20), &r, &used), HeadParse::kInvalid);
}

TEST(HttpHead, TooLarge) {
  RequestHead r;
  size_t used = 0;
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(Parse(big, &r, &used, 1024), HeadParse::kTooLarge);
  EXPECT_EQ(Parse(big.substr(0, 1500), &r, &used, 1024), HeadParse::kTooLarge);
  EXPECT_EQ(Parse(big, &r, &used, 4096), HeadParse::kOk);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 150; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(Parse(many + "\r\n", &r, &used, 1 << 20), HeadParse::kTooLarge);
}

// llhttp's grammar, not a second one: what RFC 9112 lets a recipient accept, it may accept.
TEST(HttpHead, AcceptsWhatLlhttpAccepts) {
  RequestHead r;
  size_t used = 0;
  // obs-fold becomes part of the value (RFC 9112 §5.2 allows replacing it with SP).
  ASSERT_EQ(Parse("GET / HTTP/1.1\r\nA: b\r\n folded\r\nHost: h\r\n\r\n", &r, &used),
            HeadParse::kOk);
  EXPECT_EQ(*r.Header("A"), "b folded");
  // Leading empty lines before the request line are skipped (RFC 9112 §2.2) and counted.
  ASSERT_EQ(Parse("\r\n\r\nGET /x HTTP/1.1\r\n\r\n", &r, &used), HeadParse::kOk);
  EXPECT_EQ(used, 23u);
  EXPECT_EQ(r.path, "/x");
}

// Fed in pieces (down to one byte at a time), the parser gives the same head and stops exactly at
// its end; the bytes after it are the next request's.
TEST(HttpHead, IncrementalFeedsAndPipelinedRequests) {
  const std::string two = "GET /a?q=1 HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(300, 'v') +
                          "\r\n\r\nHEAD /b HTTP/1.0\r\n\r\n";
  for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, size_t{64}, two.size()}) {
    HeadParser p(1024);
    std::vector<RequestHead> got;
    std::string_view rest = two;
    std::string_view chunk;
    while (!rest.empty() || !chunk.empty()) {
      if (chunk.empty()) {
        chunk = rest.substr(0, piece);
        rest.remove_prefix(chunk.size());
      }
      size_t used = 0;
      HeadParse r = p.Feed(chunk, &used);
      ASSERT_NE(r, HeadParse::kInvalid) << piece;
      ASSERT_NE(r, HeadParse::kTooLarge) << piece;
      chunk.remove_prefix(used);
      if (r == HeadParse::kOk) {
        got.push_back(p.Take());
        p.Reset();
      }
    }
    ASSERT_EQ(got.size(), 2u) << piece;
    EXPECT_EQ(got[0].path, "/a");
    EXPECT_EQ(got[0].QueryParam("q"), "1");
    EXPECT_EQ(got[0].Header("x-long")->size(), 300u);
    EXPECT_EQ(got[1].method, "HEAD");
    EXPECT_EQ(got[1].minor_version, 0);
  }
}

TEST(HttpHead, FailedParserStaysFailedUntilReset) {
  HeadParser p(64);
  size_t used = 0;
  EXPECT_EQ(p.Feed("G(T", &used), HeadParse::kInvalid);
  EXPECT_EQ(p.Feed(" / HTTP/1.1\r\n\r\n", &used), HeadParse::kInvalid);
  p.Reset();
  EXPECT_EQ(p.Feed(std::string(70, 'G'), &used), HeadParse::kInvalid);  // not a method
  p.Reset();
  EXPECT_EQ(p.Feed("GET /" + std::string(70, 'a'), &used), HeadParse::kTooLarge);
  EXPECT_EQ(p.Feed("x", &used), HeadParse::kTooLarge);
  p.Reset();
  ASSERT_EQ(p.Feed("GET / HTTP/1.1\r\n\r\n", &used), HeadParse::kOk);
  EXPECT_EQ(p.Take().path, "/");
}

TEST(ListenAddr, ParsesForms) {
  ListenAddr a;
  ASSERT_TRUE(ParseListenAddr(":9090", &a).ok());
  EXPECT_TRUE(a.any);
  EXPECT_EQ(a.port, 9090);
  EXPECT_FALSE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("0.0.0.0:9090", &a).ok());
  EXPECT_FALSE(a.any);
  EXPECT_FALSE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("127.0.0.1:9091", &a).ok());
  EXPECT_TRUE(IsLoopbackListenAddr(a));
  EXPECT_EQ(a.port, 9091);
  ASSERT_TRUE(ParseListenAddr("127.3.4.5:1", &a).ok());
  EXPECT_TRUE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("[::1]:9091", &a).ok());
  EXPECT_TRUE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("[::]:9091", &a).ok());
  EXPECT_FALSE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("localhost:0", &a).ok());
  EXPECT_TRUE(IsLoopbackListenAddr(a));
  ASSERT_TRUE(ParseListenAddr("10.1.2.3:80", &a).ok());
  EXPECT_FALSE(IsLoopbackListenAddr(a));
}

TEST(ListenAddr, RejectsBadForms) {
  ListenAddr a;
  for (const char* bad : {"9090", ":", ":70000", ":90x", "::1:9090", "[::1]9090", "[]:1",
                          "example.com:80", "1.2.3:80", "[::1:80"}) {
    Status s = ParseListenAddr(bad, &a);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find(std::string("\"") + bad + "\""), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace infertap::serve
