// PcapReplay against captures written packet by packet: every scenario states the exact byte
// streams and gaps the sink must see.
#include "agent/replay/pcap_replay.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "test/unit/pcap/pcap_writer.hpp"

namespace infertap {
namespace {

using namespace pcaptest;

constexpr int kIn = static_cast<int>(Direction::kIngress);
constexpr int kOut = static_cast<int>(Direction::kEgress);

// Records everything; a gap shows up in the stream as "<gap N>" so a test can compare one string.
class Recorder : public StreamSink {
 public:
  struct Conn {
    ConnInfo info;
    std::string stream[2];
    std::vector<uint64_t> data_ts[2];
    int closes = 0;
    uint64_t close_ts = 0;
  };
  void OnOpen(const ConnInfo& c) override {
    EXPECT_EQ(conns.count(c.conn_id), 0u) << "conn_id reused";
    conns[c.conn_id].info = c;
    log.push_back("open " + std::to_string(c.conn_id));
  }
  void OnData(const ConnInfo& c, Direction d, uint64_t ts, std::span<const uint8_t> b) override {
    Conn& k = Get(c);
    EXPECT_FALSE(b.empty());
    k.stream[static_cast<int>(d)].append(b.begin(), b.end());
    k.data_ts[static_cast<int>(d)].push_back(ts);
  }
  void OnGap(const ConnInfo& c, Direction d, uint64_t, uint64_t len) override {
    EXPECT_GT(len, 0u);
    Get(c).stream[static_cast<int>(d)] += "<gap " + std::to_string(len) + ">";
  }
  void OnClose(const ConnInfo& c, uint64_t ts) override {
    Conn& k = Get(c);
    ++k.closes;
    k.close_ts = ts;
    log.push_back("close " + std::to_string(c.conn_id));
  }
  Conn& Get(const ConnInfo& c) {
    auto it = conns.find(c.conn_id);
    EXPECT_NE(it, conns.end()) << "event before OnOpen";
    if (it == conns.end()) return conns[c.conn_id];
    EXPECT_EQ(it->second.closes, 0) << "event after OnClose on conn " << c.conn_id;
    it->second.info = c;
    return it->second;
  }
  std::map<uint64_t, Conn> conns;
  std::vector<std::string> log;
};

// One TCP connection: tracks both sides' sequence numbers so tests only say what is sent.
// Positions (`rel`) count stream bytes from 0; every packet is 1 µs after the previous one.
class Conv {
 public:
  Conv(PcapWriter& w, std::string_view client, std::string_view server, uint32_t c_isn = 1000,
       uint32_t s_isn = 50000)
      : w_(w), c_(Ep(client)), s_(Ep(server)), c_isn_(c_isn), s_isn_(s_isn) {}

  void Handshake() {
    Send(true, c_isn_, kSyn, "", 0);
    Send(false, s_isn_, kSyn | kAck, "", c_isn_ + 1);
    Send(true, c_isn_ + 1, kAck, "", s_isn_ + 1);
  }
  void C(const std::string& data) { CAt(c_sent_, data), c_sent_ += Len(data); }
  void S(const std::string& data) { SAt(s_sent_, data), s_sent_ += Len(data); }
  void CAt(uint32_t rel, const std::string& data, uint8_t flags = kAck | kPsh) {
    Send(true, c_isn_ + 1 + rel, flags, data, SAck());
  }
  void SAt(uint32_t rel, const std::string& data, uint8_t flags = kAck | kPsh) {
    Send(false, s_isn_ + 1 + rel, flags, data, CAck());
  }
  // Marks `n` client bytes as sent without emitting them (lost by the capture).
  void CSkip(uint32_t n) { c_sent_ += n; }
  void SSkip(uint32_t n) { s_sent_ += n; }
  void CFin() { Send(true, c_isn_ + 1 + c_sent_, kFin | kAck, "", SAck()), c_fin_ = true; }
  void SFin() { Send(false, s_isn_ + 1 + s_sent_, kFin | kAck, "", CAck()), s_fin_ = true; }
  void CAckOnly() { Send(true, c_isn_ + 1 + c_sent_ + (c_fin_ ? 1 : 0), kAck, "", SAck()); }
  void CRst() { Send(true, c_isn_ + 1 + c_sent_, kRst | kAck, "", SAck()); }
  void SRaw(uint32_t seq, uint8_t flags, const std::string& data, uint16_t window = 65535) {
    Send(false, seq, flags, data, CAck(), window);
  }
  uint64_t ts() const { return ts_; }
  uint32_t c_isn() const { return c_isn_; }
  uint32_t s_isn() const { return s_isn_; }
  uint32_t CAck() const { return c_isn_ + 1 + c_sent_ + (c_fin_ ? 1 : 0); }
  uint32_t SAck() const { return s_isn_ + 1 + s_sent_ + (s_fin_ ? 1 : 0); }

  void Send(bool from_client, uint32_t seq, uint8_t flags, const std::string& data, uint32_t ack,
            uint16_t window = 65535) {
    TcpSpec t{from_client ? c_ : s_, from_client ? s_ : c_, seq, ack, flags, window, data};
    ts_ += 1000;
    w_.Add(ts_, t);
  }

 private:
  static uint32_t Len(const std::string& s) { return static_cast<uint32_t>(s.size()); }
  PcapWriter& w_;
  Endpoint c_, s_;
  uint32_t c_isn_, s_isn_;
  uint32_t c_sent_ = 0, s_sent_ = 0;
  bool c_fin_ = false, s_fin_ = false;
  uint64_t ts_ = 1'700'000'000'000'000'000ull;
};

class PcapReplayTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) {
    return ::testing::TempDir() + "/pcap_replay_" + std::to_string(getpid()) + "_" + name;
  }
  // Writes the bytes and replays them; the file is removed afterwards.
  Status Run(std::vector<uint8_t>& bytes, const std::vector<Endpoint>& servers = {},
             PcapOptions opt = {}) {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parameterized names contain '/'
    const std::string p = Path(name);
    WriteFile(p, bytes);
    Status s = PcapReplay(opt).Replay(p, servers, rec, &stats);
    unlink(p.c_str());
    return s;
  }
  Status Run(PcapWriter& w, const std::vector<Endpoint>& servers = {}, PcapOptions opt = {}) {
    return Run(w.bytes(), servers, opt);
  }
  const Recorder::Conn& Only() {
    EXPECT_EQ(rec.conns.size(), 1u);
    return rec.conns.begin()->second;
  }
  Recorder rec;
  PcapStats stats;
};

TEST_F(PcapReplayTest, InOrderExchangeWithHandshakeAndFins) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.C("POST /v1/chat HTTP/1.1\r\n\r\n");
  c.S("HTTP/1.1 200 OK\r\n");
  c.S("\r\nbody");
  c.SFin();
  c.CFin();
  const uint64_t close_ts = c.ts();
  c.CAckOnly();  // the last ACK arrives after both FINs: must not reopen anything
  ASSERT_TRUE(Run(w).ok());
  const auto& k = Only();
  EXPECT_EQ(k.info.conn_id, 1u);
  EXPECT_EQ(k.info.role, Role::kServer);
  EXPECT_EQ(k.info.family, AF_INET);
  EXPECT_TRUE(k.info.addresses_known);
  EXPECT_EQ(k.info.local, Ep("10.0.0.2:8000"));
  EXPECT_EQ(k.info.remote, Ep("10.0.0.1:40000"));
  EXPECT_EQ(k.info.tgid, 0u);
  EXPECT_EQ(k.info.fd, 0u);
  EXPECT_EQ(k.stream[kIn], "POST /v1/chat HTTP/1.1\r\n\r\n");
  EXPECT_EQ(k.stream[kOut], "HTTP/1.1 200 OK\r\n\r\nbody");
  EXPECT_EQ(k.closes, 1);
  EXPECT_EQ(k.close_ts, close_ts);  // at the second FIN, not at end of file
  EXPECT_EQ(k.info.counters.bytes_in, 26u);
  EXPECT_EQ(k.info.counters.bytes_out, 23u);
  EXPECT_EQ(stats.packets, 9u);
  EXPECT_EQ(stats.tcp_packets, 9u);
  EXPECT_EQ(stats.flows, 1u);
  EXPECT_EQ(stats.bytes, 49u);
  EXPECT_EQ(stats.gap_bytes, 0u);
  EXPECT_EQ(stats.retransmitted_bytes, 0u);
}

TEST_F(PcapReplayTest, TimestampsAreNanosecondsFromMicrosecondFile) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.C("abc");
  const uint64_t ts = c.ts();
  ASSERT_TRUE(Run(w).ok());
  ASSERT_EQ(Only().data_ts[kIn].size(), 1u);
  EXPECT_EQ(Only().data_ts[kIn][0], ts);
  EXPECT_EQ(Only().close_ts, ts);  // end of file closes at the newest packet time
}

TEST_F(PcapReplayTest, ExactRetransmissionDeliveredOnce) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.CAt(0, "hello ");
  c.CAt(0, "hello ");
  c.CAt(6, "world");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kIn], "hello world");
  EXPECT_EQ(stats.retransmitted_bytes, 6u);
  EXPECT_EQ(stats.gap_bytes, 0u);
}

TEST_F(PcapReplayTest, OverlappingRetransmissionIsTrimmed) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.SAt(0, "0123456789");
  c.SAt(5, "56789ABCDE");  // repacketized: half old, half new
  c.SAt(12, "CDEFG");      // starts inside what was delivered
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kOut], "0123456789ABCDEFG");
  EXPECT_EQ(stats.retransmitted_bytes, 5u + 3u);
}

TEST_F(PcapReplayTest, ReorderedSegmentsAreBufferedAndDeliveredInOrder) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.SAt(20, "cccccccccc");
  c.SAt(10, "bbbbbbbbbb");
  c.SAt(15, "bbbbbccccc");  // overlaps both buffered segments
  c.SAt(0, "aaaaaaaaaa");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kOut], "aaaaaaaaaabbbbbbbbbbcccccccccc");
  EXPECT_EQ(stats.gap_bytes, 0u);
  EXPECT_EQ(stats.bytes, 30u);
}

TEST_F(PcapReplayTest, LostSegmentBecomesGapOfExactLengthAtEndOfFile) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.S("first|");
  c.SSkip(7);  // the capture missed 7 bytes
  c.S("|third");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kOut], "first|<gap 7>|third");
  EXPECT_EQ(stats.gap_bytes, 7u);
  EXPECT_EQ(Only().info.counters.gap_bytes, 7u);
}

TEST_F(PcapReplayTest, HoleBeforeAcknowledgedFinIsDeclaredAtOnce) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.S("head");
  c.SSkip(5);
  c.S("tail");
  c.SFin();
  c.CFin();  // acks the server FIN: the 5 bytes reached the client, the capture lost them
  const uint64_t close_ts = c.ts();
  // A second connection later in the file proves the first closed before end of file.
  Conv d(w, "10.0.0.1:40001", "10.0.0.2:8000");
  d.Handshake();
  ASSERT_TRUE(Run(w).ok());
  ASSERT_EQ(rec.conns.size(), 2u);
  EXPECT_EQ(rec.conns[1].stream[kOut], "head<gap 5>tail");
  EXPECT_EQ(rec.conns[1].close_ts, close_ts);
  EXPECT_EQ(rec.log, (std::vector<std::string>{"open 1", "close 1", "open 2", "close 2"}));
}

TEST_F(PcapReplayTest, SequenceWraparound) {
  PcapWriter w(DLT_EN10MB);
  // Client ISN 2^32 - 8: the stream's 7th byte has sequence number 0.
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000", 0xfffffff8u, 0xfffffffeu);
  c.Handshake();
  c.CAt(10, "KLMNOPQRST");  // past the wrap, before the hole is filled
  c.CAt(0, "ABCDEFGHIJ");   // straddles the wrap
  c.CAt(5, "FGHIJKL");      // retransmission across the wrap
  c.S("server side starts at seq 0");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kIn], "ABCDEFGHIJKLMNOPQRST");
  EXPECT_EQ(Only().stream[kOut], "server side starts at seq 0");
  EXPECT_EQ(stats.retransmitted_bytes, 7u);
  EXPECT_EQ(stats.gap_bytes, 0u);
}

TEST_F(PcapReplayTest, MidConnectionStartInfersServerByLowerPort) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000", 123456, 987654);
  // No handshake: the first packet seen is the server's response.
  c.SAt(100, "ponse");
  c.SAt(105, " more");
  c.CAt(7, "next request");
  ASSERT_TRUE(Run(w).ok());
  const auto& k = Only();
  EXPECT_EQ(k.info.local, Ep("10.0.0.2:8000"));
  EXPECT_EQ(k.info.remote, Ep("10.0.0.1:40000"));
  EXPECT_EQ(k.stream[kOut], "ponse more");
  EXPECT_EQ(k.stream[kIn], "next request");
  EXPECT_EQ(stats.gap_bytes, 0u);
}

TEST_F(PcapReplayTest, SynDecidesServerEvenWhenItsPortIsHigher) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:80", "10.0.0.2:50000");
  c.Handshake();
  c.C("req");
  c.S("resp");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().info.local, Ep("10.0.0.2:50000"));
  EXPECT_EQ(Only().stream[kIn], "req");
  EXPECT_EQ(Only().stream[kOut], "resp");
}

TEST_F(PcapReplayTest, SynAckWithoutSynMarksItsSenderAsServer) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:80", "10.0.0.2:50000");
  c.Send(false, c.s_isn(), kSyn | kAck, "", c.c_isn() + 1);
  c.C("req");
  c.S("resp");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().info.local, Ep("10.0.0.2:50000"));
  EXPECT_EQ(Only().stream[kIn], "req");
  EXPECT_EQ(Only().stream[kOut], "resp");
}

TEST_F(PcapReplayTest, ServersListSelectsSideAndIgnoresOtherFlows) {
  PcapWriter w(DLT_EN10MB);
  // The server has the higher port and no SYN is captured: only the list can tell.
  Conv traced(w, "10.0.0.1:443", "10.0.0.2:9000");
  traced.C("to server");
  traced.S("from server");
  Conv other(w, "10.0.0.1:40000", "10.0.0.3:8000");
  other.Handshake();
  other.C("ignored");
  ASSERT_TRUE(Run(w, {Ep("10.0.0.2:9000")}).ok());
  const auto& k = Only();
  EXPECT_EQ(k.info.local, Ep("10.0.0.2:9000"));
  EXPECT_EQ(k.stream[kIn], "to server");
  EXPECT_EQ(k.stream[kOut], "from server");
  EXPECT_EQ(stats.untraced_packets, 4u);
  EXPECT_EQ(stats.flows, 1u);
}

TEST_F(PcapReplayTest, ServersListWildcardAddressMatchesAnyHost) {
  PcapWriter w(DLT_EN10MB);
  Conv a(w, "10.0.0.1:443", "10.0.0.2:9000");
  a.C("a");
  Conv b(w, "10.0.0.1:444", "192.168.1.1:9000");
  b.C("b");
  Conv miss(w, "10.0.0.1:445", "192.168.1.1:9001");
  miss.C("c");
  ASSERT_TRUE(Run(w, {Ep(":9000")}).ok());
  ASSERT_EQ(rec.conns.size(), 2u);
  EXPECT_EQ(rec.conns[1].info.local, Ep("10.0.0.2:9000"));
  EXPECT_EQ(rec.conns[2].info.local, Ep("192.168.1.1:9000"));
  EXPECT_EQ(rec.conns[2].stream[kIn], "b");
  EXPECT_EQ(stats.untraced_packets, 1u);
}

TEST_F(PcapReplayTest, RstClosesAtOnceAndDeclaresPendingHoles) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.S("data: tok0\n\n");
  c.SAt(20, "data: tok2\n\n");  // 8 bytes before it never arrive
  c.CRst();
  const uint64_t rst_ts = c.ts();
  c.S("after rst");  // late: the connection is over
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kOut], "data: tok0\n\n<gap 8>data: tok2\n\n");
  EXPECT_EQ(Only().close_ts, rst_ts);
  EXPECT_EQ(Only().closes, 1);
}

TEST_F(PcapReplayTest, NewSynOnReusedTupleStartsANewConnection) {
  PcapWriter w(DLT_EN10MB);
  Conv first(w, "10.0.0.1:40000", "10.0.0.2:8000", 1000, 2000);
  first.Handshake();
  first.C("one");
  first.SFin();
  first.CFin();
  Conv second(w, "10.0.0.1:40000", "10.0.0.2:8000", 900000, 800000);
  second.Handshake();
  second.C("two");
  // A third SYN while the second is still open (its end was not captured).
  Conv third(w, "10.0.0.1:40000", "10.0.0.2:8000", 7, 9);
  third.Handshake();
  third.C("three");
  ASSERT_TRUE(Run(w).ok());
  ASSERT_EQ(rec.conns.size(), 3u);
  EXPECT_EQ(rec.conns[1].stream[kIn], "one");
  EXPECT_EQ(rec.conns[2].stream[kIn], "two");
  EXPECT_EQ(rec.conns[3].stream[kIn], "three");
  EXPECT_EQ(rec.log, (std::vector<std::string>{"open 1", "close 1", "open 2", "close 2", "open 3",
                                               "close 3"}));
}

TEST_F(PcapReplayTest, KeepAliveAndZeroWindowProbeAddNothing) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.C("abcd");
  // Keep-alive: one garbage byte at next-1.
  c.Send(true, c.c_isn() + 1 + 3, kAck, "X", c.SAck());
  // Zero-window probe carrying the next byte, later resent inside a larger segment.
  c.Send(true, c.c_isn() + 1 + 4, kAck, "e", c.SAck(), 0);
  c.Send(true, c.c_isn() + 1 + 4, kAck | kPsh, "efgh", c.SAck());
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kIn], "abcdefgh");
  EXPECT_EQ(stats.retransmitted_bytes, 1u);  // the probe's byte; the keep-alive is not counted
}

TEST_F(PcapReplayTest, OutOfOrderBufferOverflowDeclaresGap) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.S("start");
  c.SSkip(10);
  for (int i = 0; i < 4; ++i) c.S(std::string(100, static_cast<char>('a' + i)));
  PcapOptions opt;
  opt.flows.max_pending_bytes = 300;  // 100-byte segments + 64 overhead: the 2nd one overflows
  ASSERT_TRUE(Run(w, {}, opt).ok());
  EXPECT_EQ(Only().stream[kOut], "start<gap 10>" + std::string(100, 'a') + std::string(100, 'b') +
                                     std::string(100, 'c') + std::string(100, 'd'));
  EXPECT_EQ(stats.gap_bytes, 10u);
}

TEST_F(PcapReplayTest, FlowCapRefusesNewFlows) {
  PcapWriter w(DLT_EN10MB);
  Conv a(w, "10.0.0.1:40000", "10.0.0.2:8000");
  a.Handshake();
  Conv b(w, "10.0.0.1:40001", "10.0.0.2:8000");
  b.Handshake();
  b.C("b");
  b.SFin();
  b.CFin();
  Conv c(w, "10.0.0.1:40002", "10.0.0.2:8000");
  c.Handshake();  // fits: b's tombstone is evicted
  Conv d(w, "10.0.0.1:40003", "10.0.0.2:8000");
  d.Handshake();  // SYN and SYN-ACK refused (the bare ACK opens nothing, so it is not counted)
  d.C("d");       // refused too
  PcapOptions opt;
  opt.flows.max_flows = 2;
  ASSERT_TRUE(Run(w, {}, opt).ok());
  EXPECT_EQ(stats.flows, 3u);
  EXPECT_EQ(stats.dropped_packets, 3u);
}

TEST_F(PcapReplayTest, SnaplenTruncationBecomesGapNeverInventedBytes) {
  // Ethernet 14 + IPv4 20 + TCP 20 = 54 header bytes; snaplen 64 keeps 10 payload bytes.
  PcapWriter w(DLT_EN10MB, 64);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.S("0123456789abcdefghij");
  c.S("short");
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kOut], "0123456789<gap 10>short");
  EXPECT_EQ(stats.truncated_packets, 1u);
  EXPECT_EQ(stats.gap_bytes, 10u);
}

TEST_F(PcapReplayTest, Ipv6WithHopByHopHeaderOverEthernet) {
  PcapWriter w(DLT_EN10MB);
  const Endpoint cl = Ep("[fd00::1]:40000"), sv = Ep("[fd00::2]:8000");
  w.Add(1000, Frame(DLT_EN10MB, IpPacket({cl, sv, 10, 0, kSyn, 65535, "", true})));
  w.Add(2000, Frame(DLT_EN10MB, IpPacket({sv, cl, 20, 11, kSyn | kAck, 65535, "", false})));
  w.Add(3000, Frame(DLT_EN10MB, IpPacket({cl, sv, 11, 21, kAck, 65535, "GET / HTTP/1.1", true})));
  w.Add(4000, Frame(DLT_EN10MB, IpPacket({sv, cl, 21, 25, kAck, 65535, "HTTP/1.1 204", false})));
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().info.family, AF_INET6);
  EXPECT_EQ(Only().info.local, sv);
  EXPECT_EQ(Only().info.remote, cl);
  EXPECT_EQ(Only().stream[kIn], "GET / HTTP/1.1");
  EXPECT_EQ(Only().stream[kOut], "HTTP/1.1 204");
}

// Every supported link-layer header, with IPv4 and IPv6, yields the same streams.
class LinkTypeTest : public PcapReplayTest, public ::testing::WithParamInterface<int> {};

TEST_P(LinkTypeTest, SameStreamsOnEveryLinkType) {
  for (const char* server : {"127.0.0.1:8000", "[::1]:8000"}) {
    rec = Recorder();
    PcapWriter w(GetParam());
    const bool v6 = server[0] == '[';
    Conv c(w, v6 ? "[::1]:51000" : "127.0.0.1:51000", server);
    c.Handshake();
    c.C("ping");
    c.S("pong");
    c.CFin();
    c.SFin();
    ASSERT_TRUE(Run(w).ok()) << server;
    EXPECT_EQ(Only().info.family, v6 ? AF_INET6 : AF_INET);
    EXPECT_EQ(Only().info.local, Ep(server));
    EXPECT_EQ(Only().stream[kIn], "ping");
    EXPECT_EQ(Only().stream[kOut], "pong");
    EXPECT_EQ(Only().closes, 1);
    EXPECT_EQ(stats.skipped_packets, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Links, LinkTypeTest,
                         ::testing::Values(DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW,
                                           DLT_NULL, DLT_LOOP));

TEST_F(PcapReplayTest, VlanTaggedEthernet) {
  PcapWriter w(DLT_EN10MB);
  const Endpoint cl = Ep("10.0.0.1:40000"), sv = Ep("10.0.0.2:8000");
  w.Add(1000, Frame(DLT_EN10MB, IpPacket({cl, sv, 1, 0, kAck, 65535, "tagged"}), true));
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(Only().stream[kIn], "tagged");
}

TEST_F(PcapReplayTest, NonTcpAndFragmentsAreSkippedAndCounted) {
  PcapWriter w(DLT_EN10MB);
  const Endpoint cl = Ep("10.0.0.1:40000"), sv = Ep("10.0.0.2:8000");
  std::vector<uint8_t> udp = IpPacket({cl, sv, 1, 0, kAck, 65535, "x"});
  udp[9] = 17;  // protocol UDP
  w.Add(1000, Frame(DLT_EN10MB, udp));
  std::vector<uint8_t> frag = IpPacket({cl, sv, 1, 0, kAck, 65535, "frag"});
  frag[6] = 0x20;  // more fragments
  w.Add(2000, Frame(DLT_EN10MB, frag));
  std::vector<uint8_t> arp(42, 0);
  arp[12] = 0x08, arp[13] = 0x06;
  w.Add(3000, arp);
  w.Add(4000, Frame(DLT_EN10MB, IpPacket({cl, sv, 1, 0, kAck, 65535, "tcp"})));
  ASSERT_TRUE(Run(w).ok());
  EXPECT_EQ(stats.packets, 4u);
  EXPECT_EQ(stats.skipped_packets, 3u);
  EXPECT_EQ(stats.tcp_packets, 1u);
  EXPECT_EQ(Only().stream[kIn], "tcp");
}

TEST_F(PcapReplayTest, PcapngWithNanosecondTimestamps) {
  PcapngWriter w(DLT_EN10MB);
  const Endpoint cl = Ep("10.0.0.1:40000"), sv = Ep("10.0.0.2:8000");
  const uint64_t t0 = 1'700'000'000'123'456'789ull;
  w.Add(t0, {cl, sv, 100, 0, kSyn});
  w.Add(t0 + 1, {sv, cl, 200, 101, kSyn | kAck});
  w.Add(t0 + 2, {cl, sv, 101, 201, kAck | kPsh, 65535, "req"});
  w.Add(t0 + 3, {sv, cl, 201, 104, kAck | kPsh, 65535, "resp"});
  ASSERT_TRUE(Run(w.bytes()).ok());
  EXPECT_EQ(Only().stream[kIn], "req");
  EXPECT_EQ(Only().stream[kOut], "resp");
  EXPECT_EQ(Only().data_ts[kIn], std::vector<uint64_t>{t0 + 2});
  EXPECT_EQ(Only().data_ts[kOut], std::vector<uint64_t>{t0 + 3});
  EXPECT_EQ(Only().info.open_ts_ns, t0);
}

TEST_F(PcapReplayTest, TruncatedFileReportsPacketNumberAfterDeliveringTheRest) {
  PcapWriter w(DLT_EN10MB);
  Conv c(w, "10.0.0.1:40000", "10.0.0.2:8000");
  c.Handshake();
  c.C("complete");
  c.S("cut off in the middle of this packet");
  w.bytes().resize(w.bytes().size() - 10);
  const Status s = Run(w);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("truncated at packet 5"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("pcap_replay_"), std::string::npos) << "names the file";
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  EXPECT_EQ(Only().stream[kIn], "complete");
  EXPECT_EQ(Only().stream[kOut], "");
  EXPECT_EQ(Only().closes, 1);
  EXPECT_EQ(stats.packets, 4u);
}

TEST_F(PcapReplayTest, ForeignFileIsRejectedWithOneLine) {
  std::string text = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
  std::vector<uint8_t> bytes(text.begin(), text.end());
  const Status s = Run(bytes);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(": not a pcap or pcapng file ("), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  EXPECT_TRUE(rec.conns.empty());
}

TEST_F(PcapReplayTest, MissingFileSaysSo) {
  const Status s = PcapReplay().Replay(Path("does-not-exist"), {}, rec, &stats);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot open: No such file or directory"), std::string::npos)
      << s.message();
}

TEST_F(PcapReplayTest, UnsupportedLinkTypeIsAnError) {
  PcapWriter w(DLT_IEEE802_11);
  const Status s = Run(w);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("unsupported link type IEEE802_11"), std::string::npos) << s.message();
}

TEST(LooksLikePcap, RecognisesBothFormatsOnly) {
  const std::string dir = ::testing::TempDir();
  const std::string a = dir + "/llp_a", b = dir + "/llp_b", c = dir + "/llp_c";
  PcapWriter w(DLT_EN10MB, 65535, true);
  WriteFile(a, w.bytes());
  PcapngWriter n(DLT_RAW);
  WriteFile(b, n.bytes());
  WriteFile(c, std::vector<uint8_t>{'I', 'T', 'C', 'P', 0, 0});
  EXPECT_TRUE(LooksLikePcap(a));
  EXPECT_TRUE(LooksLikePcap(b));
  EXPECT_FALSE(LooksLikePcap(c));
  EXPECT_FALSE(LooksLikePcap(dir + "/llp_missing"));
  unlink(a.c_str()), unlink(b.c_str()), unlink(c.c_str());
}

}  // namespace
}  // namespace infertap
