#include "agent/serve/inspect_server.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "test/unit/serve/test_client.hpp"

namespace infertap::serve {
namespace {

using namespace std::chrono_literals;
using testing::BodyOf;
using testing::Connect;
using testing::Get;
using testing::HasHeader;
using testing::ReadUntil;
using testing::SendAll;
using testing::StatusOf;

RequestRecord Rec(int i) {
  RequestRecord r;
  r.start_ns = 1'000'000'000;
  r.end_ns = 2'000'000'000;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.status = 200;
  r.model_name = "m" + std::to_string(i);
  r.request_bytes = static_cast<uint64_t>(i);
  return r;
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; p += what.size()) ++n;
  return n;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds t = 3s) {
  auto deadline = std::chrono::steady_clock::now() + t;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

InspectServerOptions Options() {
  InspectServerOptions o;
  o.http.addr = "127.0.0.1:0";
  return o;
}

TEST(InspectServer, StateFromCallback) {
  RecordBroadcaster b(0);
  InspectServerOptions o = Options();
  int calls = 0;
  o.state = [&] { return "{\"pools\":[],\"n\":" + std::to_string(++calls) + "}"; };
  InspectServer server(o, b);
  ASSERT_TRUE(server.Start().ok());
  std::string r = Get(server.port(), "/v1/state");
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_TRUE(HasHeader(r, "Content-Type: application/json")) << r;
  EXPECT_EQ(BodyOf(r), "{\"pools\":[],\"n\":1}\n");
  EXPECT_EQ(BodyOf(Get(server.port(), "/v1/state")), "{\"pools\":[],\"n\":2}\n");
}

TEST(InspectServer, RefusesNonLoopbackUnlessOverridden) {
  RecordBroadcaster b(0);
  for (const char* addr : {":0", "0.0.0.0:0", "[::]:0"}) {
    InspectServerOptions o = Options();
    o.http.addr = addr;
    InspectServer server(o, b);
    Status s = server.Start();
    ASSERT_FALSE(s.ok()) << addr;
    EXPECT_NE(s.message().find("is not a loopback address"), std::string::npos) << s.message();
  }
  InspectServerOptions o = Options();
  o.http.addr = "0.0.0.0:0";
  o.allow_non_loopback = true;
  InspectServer server(o, b);
  EXPECT_TRUE(server.Start().ok());
  EXPECT_EQ(InspectServerOptions().http.addr, "127.0.0.1:9091");
}

// Opens /v1/records with `request_tail` (query + headers), waits for the response head and the
// subscription, publishes `n` records, and returns what arrived once `done` holds.
std::string StreamRecords(RecordBroadcaster& b, uint16_t port, const std::string& target,
                          const std::string& headers, int n,
                          const std::function<bool(const std::string&)>& done) {
  int fd = Connect(port);
  EXPECT_GE(fd, 0);
  SendAll(fd, "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + headers + "\r\n");
  std::string buf;
  EXPECT_TRUE(ReadUntil(
      fd, &buf, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }));
  EXPECT_TRUE(WaitFor([&] { return b.subscribers() == 1; }));
  for (int i = 0; i < n; ++i) b.Publish(Rec(i));
  EXPECT_TRUE(ReadUntil(fd, &buf, done)) << buf;
  close(fd);
  // The server unsubscribes once it notices the client went away.
  EXPECT_TRUE(WaitFor([&] { return b.subscribers() == 0; }));
  return buf;
}

TEST(InspectServer, RecordsAsJsonLines) {
  RecordBroadcaster b(0);
  b.Publish(Rec(999));  // before anyone listens: never sent
  InspectServer server(Options(), b);
  ASSERT_TRUE(server.Start().ok());
  std::string out = StreamRecords(b, server.port(), "/v1/records", "", 3, [](const std::string& s) {
    return s.find("\"m2\"") != std::string::npos;
  });
  EXPECT_TRUE(HasHeader(out, "Content-Type: application/x-ndjson")) << out;
  EXPECT_TRUE(HasHeader(out, "Transfer-Encoding: chunked"));
  EXPECT_EQ(out.find("m999"), std::string::npos);
  std::string line0 = RecordToJson(Rec(0), 0) + "\n";
  EXPECT_NE(out.find(line0), std::string::npos) << out;
  EXPECT_LT(out.find("\"m0\""), out.find("\"m1\""));
  EXPECT_LT(out.find("\"m1\""), out.find("\"m2\""));
  EXPECT_EQ(out.find("data: "), std::string::npos);
}

TEST(InspectServer, RecordsAsSseByAcceptOrQuery) {
  RecordBroadcaster b(1'700'000'000'000'000'000);
  InspectServer server(Options(), b);
  ASSERT_TRUE(server.Start().ok());
  auto two = [](const std::string& s) { return s.find("\"m1\"") != std::string::npos; };
  for (auto [target, headers] :
       {std::pair<std::string, std::string>{"/v1/records", "Accept: text/event-stream\r\n"},
        std::pair<std::string, std::string>{"/v1/records?format=sse", ""}}) {
    std::string out = StreamRecords(b, server.port(), target, headers, 2, two);
    EXPECT_TRUE(HasHeader(out, "Content-Type: text/event-stream")) << out;
    std::string event = "data: " + RecordToJson(Rec(0), b.wall_offset_ns()) + "\n\n";
    EXPECT_NE(out.find(event), std::string::npos) << out;
    EXPECT_NE(out.find("\"ts\":\"2023-11-14T22:13:21"), std::string::npos) << out;
  }
  // ?format=json wins over Accept; an unknown format is a 400.
  std::string out = StreamRecords(b, server.port(), "/v1/records?format=json",
                                  "Accept: text/event-stream\r\n", 2, two);
  EXPECT_TRUE(HasHeader(out, "Content-Type: application/x-ndjson")) << out;
  EXPECT_EQ(StatusOf(Get(server.port(), "/v1/records?format=xml")), 400);
}

TEST(InspectServer, SseHeartbeats) {
  RecordBroadcaster b(0);
  InspectServerOptions o = Options();
  o.http.heartbeat_interval = 100ms;
  InspectServer server(o, b);
  ASSERT_TRUE(server.Start().ok());
  std::string out =
      StreamRecords(b, server.port(), "/v1/records?format=sse", "", 0,
                    [](const std::string& s) { return Count(s, ": keep-alive\n\n") >= 2; });
  EXPECT_GE(Count(out, ": keep-alive\n\n"), 2u);
}

TEST(RecordBroadcaster, PublishNeverBlocksOnAStalledSubscriber) {
  RecordBroadcaster b(0, 10'000);
  int notified = 0;
  auto stalled = b.Subscribe([&] { ++notified; });
  std::vector<RequestRecord> recs;
  for (int i = 0; i < 100; ++i) recs.push_back(Rec(i));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100'000; ++i) b.Publish(recs[i % 100]);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 3s);
  EXPECT_EQ(stalled->queued(), 10'000u);
  EXPECT_EQ(stalled->dropped(), 90'000u);
  EXPECT_EQ(b.total_dropped(), 90'000u);
  EXPECT_EQ(b.published(), 100'000u);
  EXPECT_EQ(notified, 1);  // only on empty → non-empty
  // The oldest were dropped: the queue starts with record 90'000 (i % 100 == 0).
  std::vector<std::shared_ptr<const std::string>> got;
  stalled->Drain(&got, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(*got[0], RecordToJson(Rec(0), 0));
  EXPECT_EQ(*got[1], RecordToJson(Rec(1), 0));
  b.Unsubscribe(stalled);
  EXPECT_EQ(b.subscribers(), 0u);
  b.Publish(Rec(1));
  EXPECT_EQ(stalled->queued(), 9'998u);  // no longer fed
  EXPECT_EQ(notified, 1);
}

TEST(InspectServer, StalledHttpClientDropsAndPublisherStaysFast) {
  RecordBroadcaster b(0, 1'000);
  InspectServerOptions o = Options();
  o.http.stream_output_cap = 16 * 1024;
  InspectServer server(o, b);
  ASSERT_TRUE(server.Start().ok());
  // A small receive buffer fills quickly; the client then reads nothing for a while.
  int fd = Connect(server.port(), false, 8192);
  SendAll(fd, "GET /v1/records HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(WaitFor([&] { return b.subscribers() == 1; }));
  RequestRecord r = Rec(1);
  r.path = "/v1/chat/completions/" + std::string(200, 'p');  // ~500-byte lines
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100'000; ++i) b.Publish(r);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_GT(b.total_dropped(), 90'000u);
  // Reading again drains what was buffered; the stream still works after the drops.
  std::string buf;
  ASSERT_TRUE(ReadUntil(
      fd, &buf, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }));
  ASSERT_TRUE(WaitFor([&] { return server.stats().connections == 1; }));
  b.Publish(Rec(424242));
  ASSERT_TRUE(ReadUntil(
      fd, &buf, [](const std::string& s) { return s.find("\"m424242\"") != std::string::npos; },
      5s))
      << buf.size() << " " << buf.substr(buf.size() > 300 ? buf.size() - 300 : 0);
  close(fd);
}

TEST(InspectServer, StopWhileStreamingIsPromptAndUnsubscribes) {
  RecordBroadcaster b(0);
  auto server = std::make_unique<InspectServer>(Options(), b);
  ASSERT_TRUE(server->Start().ok());
  std::vector<int> fds;
  for (int i = 0; i < 5; ++i) {
    int fd = Connect(server->port());
    SendAll(fd, "GET /v1/records?format=sse HTTP/1.1\r\nHost: t\r\n\r\n");
    fds.push_back(fd);
  }
  ASSERT_TRUE(WaitFor([&] { return b.subscribers() == 5; }));
  std::atomic<bool> stop_publishing{false};
  std::thread publisher([&] {
    while (!stop_publishing) b.Publish(Rec(7));
  });
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(b.subscribers(), 0u);
  stop_publishing = true;
  publisher.join();
  for (int fd : fds) close(fd);
}

}  // namespace
}  // namespace infertap::serve
