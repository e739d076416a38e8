// PcapReplay on the committed tcpdump captures of test/data/ (made by scripts/make-test-pcaps.sh):
// real loopback Ethernet and LINUX_SLL2 framing, real TCP options, real segment boundaries. These
// check the byte streams; the values the full pipeline must report are checked by the replay tier.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>
#include <string>

#include "agent/replay/pcap_replay.hpp"

namespace infertap {
namespace {

struct Streams : StreamSink {
  struct Conn {
    ConnInfo info;
    std::string in, out;
    int closes = 0;
  };
  void OnOpen(const ConnInfo& c) override { conns[c.conn_id].info = c; }
  void OnData(const ConnInfo& c, Direction d, uint64_t, std::span<const uint8_t> b) override {
    (d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out)
        .append(b.begin(), b.end());
  }
  void OnGap(const ConnInfo&, Direction, uint64_t, uint64_t len) override { gaps += len; }
  void OnClose(const ConnInfo& c, uint64_t) override { ++conns[c.conn_id].closes; }
  std::map<uint64_t, Conn> conns;
  uint64_t gaps = 0;
};

size_t Count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class RealCaptureTest : public ::testing::Test {
 protected:
  // Replays with the server inferred from the SYN, and checks the invariants every file shares:
  // one connection, nothing missing, closed once.
  const Streams::Conn& Load(const std::string& name) {
    const Status s = PcapReplay().Replay(std::string(INFERTAP_SOURCE_DIR) + "/test/data/" + name,
                                         {}, sink, &stats);
    EXPECT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(sink.conns.size(), 1u);
    EXPECT_EQ(sink.gaps, 0u);
    EXPECT_EQ(stats.skipped_packets, 0u);
    EXPECT_EQ(stats.retransmitted_bytes, 0u);
    const auto& c = sink.conns.begin()->second;
    EXPECT_EQ(c.closes, 1);
    EXPECT_EQ(c.info.role, Role::kServer);
    return c;
  }
  Streams sink;
  PcapStats stats;
};

TEST_F(RealCaptureTest, ChatStreamIncludeUsage) {
  const auto& c = Load("vllm_chat_stream_include_usage.pcap");
  EXPECT_EQ(c.info.local.ToString(), "127.0.0.1:18101");
  EXPECT_EQ(c.in.rfind("POST /v1/chat/completions HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(c.out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_EQ(Count(c.out, "\"content\":\"tok"), 8u);
  EXPECT_EQ(Count(c.out, "\"completion_tokens\":8"), 1u);
  EXPECT_TRUE(EndsWith(c.out, "data: [DONE]\n\n\r\n0\r\n\r\n")) << c.out.substr(c.out.size() - 40);
  EXPECT_EQ(stats.bytes, c.in.size() + c.out.size());
}

TEST_F(RealCaptureTest, KeepAliveMixed) {
  const auto& c = Load("vllm_keepalive_mixed.pcap");
  EXPECT_EQ(Count(c.in, "POST /v1/chat/completions "), 2u);
  EXPECT_EQ(Count(c.in, "POST /v1/completions "), 1u);
  EXPECT_EQ(Count(c.in, "GET /metrics "), 1u);
  EXPECT_EQ(Count(c.out, "HTTP/1.1 200 OK\r\n"), 3u);
  EXPECT_EQ(Count(c.out, "HTTP/1.1 400 Bad Request\r\n"), 1u);
  EXPECT_EQ(Count(c.out, "\"text\":\"tok"), 4u);
}

TEST_F(RealCaptureTest, MidstreamError) {
  const auto& c = Load("vllm_midstream_error.pcap");
  EXPECT_EQ(Count(c.out, "\"content\":\"tok"), 3u);
  EXPECT_EQ(Count(c.out, "data: {\"error\": {"), 1u);
  EXPECT_EQ(Count(c.out, "data: [DONE]"), 1u);
}

TEST_F(RealCaptureTest, ClientAbort) {
  const auto& c = Load("vllm_client_abort.pcap");
  EXPECT_EQ(Count(c.out, "\"content\":\"tok"), 4u);
  EXPECT_EQ(Count(c.out, "[DONE]"), 0u);
  EXPECT_EQ(Count(c.out, "\"usage\""), 0u);
}

TEST_F(RealCaptureTest, Ipv6OnAnyInterface) {
  const auto& c = Load("vllm_ipv6_any.pcap");
  EXPECT_EQ(c.info.family, AF_INET6);
  EXPECT_EQ(c.info.local.ToString(), "[::1]:18105");
  EXPECT_EQ(Count(c.out, "\"content\":\"tok"), 3u);
  EXPECT_EQ(Count(c.out, "\"completion_tokens\":3"), 1u);
}

}  // namespace
}  // namespace infertap
