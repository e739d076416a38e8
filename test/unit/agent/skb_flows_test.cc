// The cgroup backend's user-space half without a kernel: ring records built byte for byte as
// bpf/capture_skb.bpf.c emits them (struct it_skb_event, pieces of IT_CHUNK_MAX), checked by the
// decoder (agent/capture/skb_events.hpp) and reassembled by SkbFlows → TcpFlows → Connection.
#include "agent/capture/skb_flows.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "agent/capture/skb_events.hpp"

namespace infertap {
namespace {

constexpr uint32_t kClientIsn = 1000;
constexpr uint32_t kServerIsn = 0xfffff000;  // the server's stream wraps 2^32 after 4 KiB
constexpr uint64_t kMs = 1'000'000;

void V4(uint8_t out[16], uint8_t last) {
  std::memset(out, 0, 16);
  out[10] = out[11] = 0xff;
  out[12] = 10;
  out[15] = last;
}

// One packet as the kernel program sees it: `ingress` = client → server (10.0.0.2:40000 →
// 10.0.0.1:8000), else server → client. `seq` is the raw TCP sequence number.
struct Pkt {
  bool ingress = true;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = pcap::kTcpAck;
  std::string payload;
  uint64_t ts = 0;
  uint16_t client_port = 40000;
  uint64_t cgroup = 0;  // the socket's cgroup id (bpf_skb_cgroup_id)
};

// The records of one packet, split into IT_CHUNK_MAX pieces; pieces listed in `drop` are left
// out (a full ring). Records are padded to their ring size class, as the kernel reserves them.
std::vector<std::vector<uint8_t>> Records(const Pkt& p, const std::set<size_t>& drop = {}) {
  it_skb_event h{};
  h.type = IT_EV_SKB;
  h.version = IT_ABI_VERSION;
  h.direction = p.ingress ? IT_DIR_INGRESS : IT_DIR_EGRESS;
  h.family = AF_INET;
  h.tcp_flags = p.flags;
  h.payload_len = static_cast<uint32_t>(p.payload.size());
  h.ts_ns = p.ts;
  h.cgroup_id = p.cgroup;
  V4(p.ingress ? h.saddr : h.daddr, 2);
  V4(p.ingress ? h.daddr : h.saddr, 1);
  h.sport = p.ingress ? p.client_port : 8000;
  h.dport = p.ingress ? 8000 : p.client_port;
  h.seq = p.seq;
  h.ack = p.ack;
  std::vector<std::vector<uint8_t>> out;
  size_t off = 0, i = 0;
  do {
    const size_t n = std::min<size_t>(IT_CHUNK_MAX, p.payload.size() - off);
    if (!drop.count(i)) {
      const size_t cls = n <= IT_CHUNK_SMALL    ? IT_CHUNK_SMALL
                         : n <= IT_CHUNK_MEDIUM ? IT_CHUNK_MEDIUM
                                                : IT_CHUNK_MAX;
      h.offset = static_cast<uint32_t>(off);
      h.cap_len = static_cast<uint32_t>(n);
      std::vector<uint8_t> rec(sizeof(h) + cls, 0xee);
      std::memcpy(rec.data(), &h, sizeof(h));
      std::memcpy(rec.data() + sizeof(h), p.payload.data() + off, n);
      out.push_back(std::move(rec));
    }
    off += n;
    ++i;
  } while (off < p.payload.size());
  return out;
}

// Rebuilds each direction as a string, with gaps written as "<gap N>".
struct Recorder : StreamSink {
  struct Conn {
    std::string in, out;
    bool opened = false, closed = false;
    ConnInfo info;
  };
  std::map<uint64_t, Conn> conns;
  void OnOpen(const ConnInfo& c) override {
    conns[c.conn_id].opened = true;
    conns[c.conn_id].info = c;
  }
  void OnData(const ConnInfo& c, Direction d, uint64_t, std::span<const uint8_t> b) override {
    (d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out)
        .append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  void OnGap(const ConnInfo& c, Direction d, uint64_t, uint64_t len) override {
    (d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out) +=
        len == kUnknownGap ? "<gap ?>" : "<gap " + std::to_string(len) + ">";
  }
  void OnClose(const ConnInfo& c, uint64_t) override { conns[c.conn_id].closed = true; }
};

std::string Bytes(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

class SkbFlowsTest : public ::testing::Test {
 protected:
  void Feed(const Pkt& p, const std::set<size_t>& drop = {}) {
    for (const auto& r : Records(p, drop)) flows.OnEvent(r);
  }
  // The handshake: SYN in, SYN-ACK out, (the client's pure ACK is never sent by the kernel).
  void Handshake(uint64_t ts = 1 * kMs) {
    Feed({true, kClientIsn, 0, pcap::kTcpSyn, "", ts});
    Feed({false, kServerIsn, kClientIsn + 1, pcap::kTcpSyn | pcap::kTcpAck, "", ts});
  }
  uint32_t cseq(size_t pos) const { return kClientIsn + 1 + static_cast<uint32_t>(pos); }
  uint32_t sseq(size_t pos) const { return kServerIsn + 1 + static_cast<uint32_t>(pos); }

  Recorder rec;
  SinkConsumers consumers{rec};
  SkbFlows flows{consumers};
};

// ---- connections of a detached cgroup ---------------------------------------------------------

TEST_F(SkbFlowsTest, FinishCgroupEndsThatCgroupsConnectionsOnly) {
  // Two connections, one from each of two pods' cgroups (7 and 9).
  for (uint16_t port : {40000, 40001}) {
    const uint64_t cg = port == 40000 ? 7 : 9;
    Feed({true, kClientIsn, 0, pcap::kTcpSyn, "", 1 * kMs, port, cg});
    Feed({false, kServerIsn, kClientIsn + 1, pcap::kTcpSyn | pcap::kTcpAck, "", 1 * kMs, port, cg});
    Feed({true, cseq(0), sseq(0), pcap::kTcpAck, "GET / HTTP/1.1\r\n", 2 * kMs, port, cg});
  }
  ASSERT_EQ(flows.connections(), 2u);
  EXPECT_EQ(flows.FinishCgroup(7, 3 * kMs), 1u);
  EXPECT_EQ(flows.connections(), 1u);
  ASSERT_EQ(rec.conns.size(), 2u);
  for (const auto& [id, c] : rec.conns) {
    EXPECT_EQ(c.in, "GET / HTTP/1.1\r\n");
    EXPECT_EQ(c.closed, c.info.remote.port == 40000) << c.info.remote.ToString();
  }
  EXPECT_EQ(flows.FinishCgroup(7, 3 * kMs), 0u);  // nothing left of cgroup 7
  // Capture of cgroup 7 resumed (attached again): its next segment starts a new flow
  // mid-connection rather than being swallowed by a tombstone.
  Feed({true, cseq(16), sseq(0), pcap::kTcpAck, "more", 4 * kMs, 40000, 7});
  EXPECT_EQ(flows.connections(), 2u);
  EXPECT_EQ(rec.conns.size(), 3u);
}

// ---- the decoder ------------------------------------------------------------------------------

TEST(SkbEventDecode, WellFormedRecordKeepsEveryField) {
  Pkt p{false, 77, 88, pcap::kTcpAck | pcap::kTcpFin, Bytes(300, 1), 5 * kMs};
  const auto recs = Records(p);
  ASSERT_EQ(recs.size(), 1u);
  ASSERT_EQ(recs[0].size(), sizeof(it_skb_event) + IT_CHUNK_MEDIUM);  // padded to its class
  SkbPiece piece;
  ASSERT_EQ(DecodeSkbEvent(recs[0], &piece), SkbEventError::kNone);
  EXPECT_EQ(piece.hdr.seq, 77u);
  EXPECT_EQ(piece.hdr.ack, 88u);
  EXPECT_EQ(piece.hdr.payload_len, 300u);
  EXPECT_EQ(piece.hdr.ts_ns, 5 * kMs);
  EXPECT_EQ(std::string(piece.payload.begin(), piece.payload.end()), p.payload);
  const SkbSegments s = SegmentsOf(piece);
  EXPECT_EQ(s.local.ToString(), "10.0.0.1:8000");  // egress: the source is the traced socket
  EXPECT_EQ(s.data.dst.ToString(), "10.0.0.2:40000");
  EXPECT_EQ(s.data.seq, 77u);
  EXPECT_EQ(s.data.flags, pcap::kTcpAck | pcap::kTcpFin);  // the last piece keeps the FIN
  EXPECT_FALSE(s.has_fin);
}

TEST(SkbEventDecode, EveryShortLengthIsCountedNeverRead) {
  const auto rec = Records({true, 1, 2, pcap::kTcpAck, "hello", 0})[0];
  for (size_t n = 0; n < sizeof(it_skb_event); ++n) {
    SkbPiece piece;
    EXPECT_EQ(DecodeSkbEvent(std::span(rec.data(), n), &piece), SkbEventError::kShort) << n;
  }
}

TEST(SkbEventDecode, BadFieldsAreNamed) {
  const auto good = Records({true, 1, 2, pcap::kTcpAck, Bytes(100, 2), 0})[0];
  auto with = [&](auto mutate) {
    std::vector<uint8_t> r = good;
    it_skb_event h;
    std::memcpy(&h, r.data(), sizeof(h));
    mutate(h, r);
    std::memcpy(r.data(), &h, sizeof(h));
    SkbPiece piece;
    return DecodeSkbEvent(r, &piece);
  };
  using H = it_skb_event;
  using R = std::vector<uint8_t>;
  EXPECT_EQ(with([](H& h, R&) { h.type = IT_EV_DATA; }), SkbEventError::kType);
  EXPECT_EQ(with([](H& h, R&) { h.version = IT_ABI_VERSION + 1; }), SkbEventError::kVersion);
  EXPECT_EQ(with([](H& h, R&) { h.cap_len = IT_CHUNK_MAX + 1; }), SkbEventError::kCapLen);
  // cap_len past the end of the record (a truncated record).
  EXPECT_EQ(with([](H&, R& r) { r.resize(sizeof(H) + 99); }), SkbEventError::kCapLen);
  EXPECT_EQ(with([](H& h, R&) { h.payload_len = 99; }), SkbEventError::kRange);
  EXPECT_EQ(with([](H& h, R&) { h.offset = 0xffffffffu; }), SkbEventError::kRange);
  EXPECT_EQ(with([](H& h, R&) { h.direction = 2; }), SkbEventError::kDirection);
  EXPECT_EQ(with([](H& h, R&) { h.family = 7; }), SkbEventError::kFamily);
  EXPECT_EQ(with([](H&, R&) {}), SkbEventError::kNone);
}

TEST(SkbEventDecode, LaterPiecesOfASynPacketStartAfterTheSyn) {
  // A SYN with 5000 bytes of data (TCP Fast Open): the data starts at seq + 1.
  const auto recs = Records({true, 500, 0, pcap::kTcpSyn, Bytes(5000, 3), 0});
  ASSERT_EQ(recs.size(), 2u);
  SkbPiece first, second;
  ASSERT_EQ(DecodeSkbEvent(recs[0], &first), SkbEventError::kNone);
  ASSERT_EQ(DecodeSkbEvent(recs[1], &second), SkbEventError::kNone);
  EXPECT_EQ(SegmentsOf(first).data.seq, 500u);  // TcpFlows adds the SYN's one itself
  EXPECT_EQ(SegmentsOf(first).data.flags & pcap::kTcpSyn, pcap::kTcpSyn);
  EXPECT_EQ(SegmentsOf(second).data.seq, 500u + 1 + IT_CHUNK_MAX);
  EXPECT_EQ(SegmentsOf(second).data.flags & pcap::kTcpSyn, 0);
  EXPECT_EQ(SegmentsOf(first).local.ToString(), "10.0.0.1:8000");  // ingress: the destination
}

TEST(SkbEventDecode, EveryPieceOfAFinPacketTellsWhereTheStreamEnds) {
  const auto recs = Records({false, 100, 0, pcap::kTcpAck | pcap::kTcpFin, Bytes(9000, 4), 0});
  ASSERT_EQ(recs.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    SkbPiece piece;
    ASSERT_EQ(DecodeSkbEvent(recs[i], &piece), SkbEventError::kNone);
    const SkbSegments s = SegmentsOf(piece);
    EXPECT_EQ(s.data.flags & pcap::kTcpFin, 0) << i;
    ASSERT_TRUE(s.has_fin) << i;
    EXPECT_EQ(s.fin.seq, 100u + 9000u) << i;
    EXPECT_EQ(s.fin.payload_len, 0u);
  }
}

// ---- SkbFlows: decoding + TCP reassembly ------------------------------------------------------

TEST_F(SkbFlowsTest, BadRecordsAreCountedByReasonAndReachNoConnection) {
  std::vector<uint8_t> r = Records({true, 1, 2, pcap::kTcpAck, "GET / HTTP/1.1\r\n", 0})[0];
  flows.OnEvent(std::span(r.data(), 10));
  r[0] = 9;  // type
  flows.OnEvent(r);
  EXPECT_EQ(flows.stats().events, 0u);
  EXPECT_EQ(flows.stats().malformed, 2u);
  EXPECT_EQ(flows.stats().by_error[size_t(SkbEventError::kShort)], 1u);
  EXPECT_EQ(flows.stats().by_error[size_t(SkbEventError::kType)], 1u);
  EXPECT_TRUE(rec.conns.empty());
}

TEST_F(SkbFlowsTest, RandomBytesNeverCrashAndAreAllAccountedFor) {
  std::mt19937 rng(12);
  const auto good = Records({true, 1, 2, pcap::kTcpAck, Bytes(200, 5), 0})[0];
  uint64_t fed = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> r = good;
    r.resize(rng() % (good.size() + 64));
    // Flip a few bytes of the header, keeping type and version valid half of the time.
    for (int k = 0; k < 4; ++k)
      if (!r.empty()) r[rng() % std::min<size_t>(r.size(), sizeof(it_skb_event))] = uint8_t(rng());
    if (rng() % 2 && r.size() >= 4) {
      r[0] = IT_EV_SKB;
      r[1] = 0;
      r[2] = IT_ABI_VERSION;
      r[3] = 0;
    }
    flows.OnEvent(r);
    ++fed;
  }
  flows.FinishAll(1);
  EXPECT_EQ(flows.stats().events + flows.stats().malformed, fed);
  EXPECT_GT(flows.stats().malformed, 0u);
}

TEST_F(SkbFlowsTest, GsoPacketsInPiecesGiveTheExactStreams) {
  Handshake();
  const std::string req = Bytes(70000, 6);    // one 64 KiB GRO packet and a tail
  const std::string resp = Bytes(150000, 7);  // three GSO packets, the server's seq wraps
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck, req.substr(0, 65536), 2 * kMs});
  Feed({true, cseq(65536), sseq(0), pcap::kTcpAck, req.substr(65536), 2 * kMs});
  for (size_t off = 0; off < resp.size(); off += 65536) {
    Feed({false, sseq(off), cseq(req.size()), pcap::kTcpAck, resp.substr(off, 65536), 3 * kMs});
  }
  Feed({true, cseq(req.size()), sseq(resp.size()), pcap::kTcpAck | pcap::kTcpFin, "", 4 * kMs});
  Feed(
      {false, sseq(resp.size()), cseq(req.size()) + 1, pcap::kTcpAck | pcap::kTcpFin, "", 4 * kMs});
  ASSERT_EQ(rec.conns.size(), 1u);
  const auto& c = rec.conns.begin()->second;
  EXPECT_TRUE(c.opened);
  EXPECT_EQ(c.info.local.ToString(), "10.0.0.1:8000");
  EXPECT_EQ(c.info.remote.ToString(), "10.0.0.2:40000");
  EXPECT_EQ(c.info.role, Role::kServer);
  EXPECT_EQ(c.in, req);
  EXPECT_EQ(c.out, resp);
  EXPECT_TRUE(c.closed);  // both FINs, nothing missing: closed without waiting for ACKs
  EXPECT_EQ(flows.connections(), 0u);
}

TEST_F(SkbFlowsTest, APieceLostToAFullRingIsAGapOfItsExactLength) {
  Handshake();
  const std::string resp = Bytes(20000, 8);
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck, "req", 2 * kMs});
  Feed({false, sseq(0), cseq(3), pcap::kTcpAck, resp, 3 * kMs}, {2});  // piece 2 of 5 lost
  flows.Flush(3 * kMs + 60 * kMs);                                     // past the window
  const auto& c = rec.conns.begin()->second;
  EXPECT_EQ(c.out, resp.substr(0, 8192) + "<gap 4096>" + resp.substr(12288));
}

TEST_F(SkbFlowsTest, TheLostLastPieceOfAFinPacketStillEndsTheStreamExactly) {
  Handshake();
  const std::string resp = Bytes(9000, 9);
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck, "req", 2 * kMs});
  Feed({false, sseq(0), cseq(3), pcap::kTcpAck | pcap::kTcpFin, resp, 3 * kMs}, {2});
  // The client's FIN acknowledges the server's FIN: whatever is missing was lost by the capture.
  Feed({true, cseq(3), sseq(resp.size()) + 1, pcap::kTcpAck | pcap::kTcpFin, "", 4 * kMs});
  const auto& c = rec.conns.begin()->second;
  EXPECT_EQ(c.out, resp.substr(0, 8192) + "<gap 808>");
  EXPECT_TRUE(c.closed);
}

TEST_F(SkbFlowsTest, BytesTheClientAcknowledgedButTheRingLostBecomeAGapOnAnIdleConnection) {
  Handshake();
  const std::string resp = Bytes(5000, 10);
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck, "req1", 2 * kMs});
  Feed({false, sseq(0), cseq(4), pcap::kTcpAck, resp, 3 * kMs}, {1});  // the tail lost
  // The next request on the keep-alive connection acknowledges the whole response; no later
  // server byte comes that would reveal the hole.
  Feed({true, cseq(4), sseq(resp.size()), pcap::kTcpAck, "req2", 10 * kMs});
  flows.Flush(11 * kMs);  // within the window: nothing yet
  EXPECT_EQ(rec.conns.begin()->second.out, resp.substr(0, 4096));
  flows.Flush(70 * kMs);
  EXPECT_EQ(rec.conns.begin()->second.out, resp.substr(0, 4096) + "<gap 904>");
  EXPECT_EQ(flows.flow_stats().acked_gap_bytes, 904u);
  EXPECT_EQ(rec.conns.begin()->second.in, "req1req2");
  EXPECT_FALSE(rec.conns.begin()->second.closed);
}

TEST_F(SkbFlowsTest, IdleFlowsEndAndALaterSegmentStartsANewOne) {
  Handshake();
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck, "first", 2 * kMs});
  const uint64_t idle = LiveFlowOptions().idle_timeout_ns;
  flows.Flush(2 * kMs + idle - 1);
  EXPECT_EQ(flows.connections(), 1u);
  flows.Flush(2 * kMs + idle);
  EXPECT_EQ(flows.connections(), 0u);
  EXPECT_TRUE(rec.conns.begin()->second.closed);
  EXPECT_EQ(flows.flow_stats().idle_closed, 1u);
  // The connection was alive after all: its next bytes are a new flow, started mid-stream.
  Feed({true, cseq(5), sseq(0), pcap::kTcpAck, "second", 3 * kMs + idle});
  ASSERT_EQ(rec.conns.size(), 2u);
  EXPECT_EQ(rec.conns.rbegin()->second.in, "second");
}

TEST_F(SkbFlowsTest, TombstonesAreForgottenAfterTheirTime) {
  Handshake();
  Feed({true, cseq(0), sseq(0), pcap::kTcpAck | pcap::kTcpFin, "x", 2 * kMs});
  Feed({false, sseq(0), cseq(1) + 1, pcap::kTcpAck | pcap::kTcpFin, "", 2 * kMs});
  ASSERT_TRUE(rec.conns.begin()->second.closed);
  // A late retransmission within the tombstone's time belongs to the old connection.
  Feed({true, cseq(0), sseq(0) + 1, pcap::kTcpAck | pcap::kTcpFin, "x", 3 * kMs});
  EXPECT_EQ(rec.conns.size(), 1u);
  flows.Flush(2 * kMs + LiveFlowOptions().tombstone_ns);
  // Forgotten: the same 4-tuple's data now opens a new flow.
  Feed({true, cseq(0), sseq(0) + 1, pcap::kTcpAck, "y", 4 * kMs + LiveFlowOptions().tombstone_ns});
  EXPECT_EQ(rec.conns.size(), 2u);
}

TEST_F(SkbFlowsTest, ManyInterleavedConnectionsStayApart) {
  std::map<uint16_t, std::string> want_in, want_out;
  for (uint16_t port = 41000; port < 41050; ++port) {
    Feed({true, kClientIsn, 0, pcap::kTcpSyn, "", kMs, port});
    Feed({false, kServerIsn, kClientIsn + 1, pcap::kTcpSyn | pcap::kTcpAck, "", kMs, port});
  }
  for (int round = 0; round < 3; ++round) {
    for (uint16_t port = 41000; port < 41050; ++port) {
      const std::string in = Bytes(100 + port % 7, char(port + round));
      const std::string out = Bytes(5000 + port % 11, char(port - round));
      Feed({true, cseq(want_in[port].size()), sseq(want_out[port].size()), pcap::kTcpAck, in,
            2 * kMs, port});
      want_in[port] += in;
      Feed({false, sseq(want_out[port].size()), cseq(want_in[port].size()), pcap::kTcpAck, out,
            2 * kMs, port});
      want_out[port] += out;
    }
  }
  ASSERT_EQ(rec.conns.size(), 50u);
  for (const auto& [id, c] : rec.conns) {
    const uint16_t port = c.info.remote.port;
    EXPECT_EQ(c.in, want_in[port]) << port;
    EXPECT_EQ(c.out, want_out[port]) << port;
  }
  EXPECT_EQ(flows.connections(), 50u);
}

}  // namespace
}  // namespace infertap
