#include "agent/serve/http_message.hpp"

#include <gtest/gtest.h>

#include "agent/serve/listen_addr.hpp"

namespace infertap::serve {
namespace {

HeadParse Parse(std::string_view in, RequestHead* req, size_t* used, size_t max = 1024) {
  return ParseRequestHead(in, max, req, used);
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

TEST(HttpHead, BareLineFeedsAndKeepAliveRules) {
  RequestHead r;
  size_t used = 0;
  ASSERT_EQ(Parse("GET / HTTP/1.0\nConnection: keep-alive\n\n", &r, &used), HeadParse::kOk);
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
           std::string("GET  / HTTP/1.1\r\n\r\n"),
           std::string("GET http://x/ HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/2.0\r\n\r\n"),
           std::string("G(T / HTTP/1.1\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nNo colon\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n"),
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
