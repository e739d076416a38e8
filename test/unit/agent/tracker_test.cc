#include "agent/capture/tracker.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "test/unit/agent/event_builder.hpp"

namespace infertap {
namespace {

using testing::ConnEvent;
using testing::DataEvent;

// Rebuilds each direction as a string, with gaps written as "<gap N>".
struct StreamRecorder : StreamSink {
  struct Conn {
    std::string in, out;
    bool opened = false, closed = false;
    ConnInfo info;
    std::vector<uint64_t> ts;
  };
  std::map<uint64_t, Conn> conns;
  void OnOpen(const ConnInfo& c) override { conns[c.conn_id].opened = true; }
  void OnData(const ConnInfo& c, Direction d, uint64_t ts, std::span<const uint8_t> b) override {
    auto& s = d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out;
    s.append(reinterpret_cast<const char*>(b.data()), b.size());
    conns[c.conn_id].ts.push_back(ts);
  }
  void OnGap(const ConnInfo& c, Direction d, uint64_t, uint64_t len) override {
    auto& s = d == Direction::kIngress ? conns[c.conn_id].in : conns[c.conn_id].out;
    s += len == kUnknownGap ? "<gap ?>" : "<gap " + std::to_string(len) + ">";
  }
  void OnClose(const ConnInfo& c, uint64_t) override {
    conns[c.conn_id].closed = true;
    conns[c.conn_id].info = c;
  }
};

class TrackerTest : public ::testing::Test {
 protected:
  StreamRecorder rec;
  ConnectionTracker tracker{rec};
  void Feed(const std::vector<uint8_t>& ev) { tracker.OnEvent(ev); }
};

TEST_F(TrackerTest, InOrderBytesAreDeliveredAsOneStreamPerDirection) {
  Feed(ConnEvent(IT_EV_OPEN, 1, 10));
  Feed(DataEvent(1, Direction::kIngress, 0, "GET / HTTP/1.1\r\n", 11));
  Feed(DataEvent(1, Direction::kIngress, 16, "\r\n", 12));
  Feed(DataEvent(1, Direction::kEgress, 0, "HTTP/1.1 200 OK\r\n\r\n", 13));
  Feed(ConnEvent(IT_EV_CLOSE, 1, 14, 18, 19));
  ASSERT_EQ(rec.conns.size(), 1u);
  const auto& c = rec.conns[1];
  EXPECT_TRUE(c.opened);
  EXPECT_TRUE(c.closed);
  EXPECT_EQ(c.in, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(c.out, "HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(c.info.counters.bytes_in, 18u);
  EXPECT_EQ(c.info.counters.bytes_out, 19u);
  EXPECT_EQ(c.info.counters.gap_bytes, 0u);
  EXPECT_EQ(c.info.counters.events, 3u);
  EXPECT_EQ(c.info.local.ToString(), "10.0.0.1:8000");
  EXPECT_EQ(c.info.remote.ToString(), "10.0.0.2:40001");
  EXPECT_EQ(tracker.connections(), 0u);
}

TEST_F(TrackerTest, ReorderedEventsAreDeliveredInStreamOrder) {
  Feed(DataEvent(1, Direction::kEgress, 6, "world", 21));
  Feed(DataEvent(1, Direction::kEgress, 11, "!", 22));
  EXPECT_EQ(rec.conns[1].out, "");  // held until the hole at 0..6 is filled
  Feed(DataEvent(1, Direction::kEgress, 0, "hello ", 20));
  EXPECT_EQ(rec.conns[1].out, "hello world!");
  // Timestamps are those of the syscalls that carried the bytes, in stream order.
  EXPECT_EQ(rec.conns[1].ts, (std::vector<uint64_t>{20, 21, 22}));
}

TEST_F(TrackerTest, HoleOlderThanReorderWindowBecomesAGapOfExactLength) {
  Feed(DataEvent(1, Direction::kIngress, 0, "abc", 1'000));
  Feed(DataEvent(1, Direction::kIngress, 10, "klm", 2'000));  // 7 bytes lost in between
  tracker.Flush(2'000 + 10'000'000);  // within the 50 ms window: keep waiting
  EXPECT_EQ(rec.conns[1].in, "abc");
  tracker.Flush(2'000 + 60'000'000);
  EXPECT_EQ(rec.conns[1].in, "abc<gap 7>klm");
  EXPECT_EQ(tracker.stats().gap_bytes, 7u);
}

TEST_F(TrackerTest, PartialCaptureReportsTheUncapturedRestAsGap) {
  Feed(DataEvent(1, Direction::kEgress, 0, "head", 1, /*len=*/100));
  Feed(DataEvent(1, Direction::kEgress, 100, "tail", 2));
  EXPECT_EQ(rec.conns[1].out, "head<gap 96>tail");
}

TEST_F(TrackerTest, SendfileStyleLengthOnlyEventIsAGap) {
  Feed(DataEvent(1, Direction::kEgress, 0, "HTTP/1.1 200 OK\r\n\r\n", 1));
  Feed(DataEvent(1, Direction::kEgress, 19, "", 2, /*len=*/4096));
  EXPECT_EQ(rec.conns[1].out, "HTTP/1.1 200 OK\r\n\r\n<gap 4096>");
}

TEST_F(TrackerTest, ReusedFdGetsANewConnectionAndSeparateStreams) {
  Feed(DataEvent(1, Direction::kIngress, 0, "first", 1, 0, /*fd=*/7));
  Feed(ConnEvent(IT_EV_CLOSE, 1, 2, 5, 0, 7));
  Feed(DataEvent(2, Direction::kIngress, 0, "second", 3, 0, /*fd=*/7));
  Feed(ConnEvent(IT_EV_CLOSE, 2, 4, 6, 0, 7));
  ASSERT_EQ(rec.conns.size(), 2u);
  EXPECT_EQ(rec.conns[1].in, "first");
  EXPECT_EQ(rec.conns[2].in, "second");
  EXPECT_TRUE(rec.conns[1].closed);
  EXPECT_TRUE(rec.conns[2].closed);
}

TEST_F(TrackerTest, InterleavedConnectionsDoNotMix) {
  for (int i = 0; i < 10; ++i) {
    for (uint64_t c = 1; c <= 3; ++c)
      Feed(DataEvent(c, Direction::kIngress, i, std::string(1, char('a' + c)), 100 + i, 0,
                     /*fd=*/uint32_t(10 + c)));  // live connections never share a (tgid, fd)
  }
  EXPECT_EQ(rec.conns[1].in, "bbbbbbbbbb");
  EXPECT_EQ(rec.conns[2].in, "cccccccccc");
  EXPECT_EQ(rec.conns[3].in, "dddddddddd");
}

TEST_F(TrackerTest, DuplicateAndOverlappingRangesAreTrimmed) {
  Feed(DataEvent(1, Direction::kIngress, 0, "abcdef", 1));
  Feed(DataEvent(1, Direction::kIngress, 0, "abcdef", 2));  // full duplicate
  Feed(DataEvent(1, Direction::kIngress, 4, "efghij", 3));  // overlaps 2 bytes
  EXPECT_EQ(rec.conns[1].in, "abcdefghij");
  EXPECT_EQ(tracker.stats().duplicate_bytes, 8u);
}

TEST_F(TrackerTest, PendingBytesAreBoundedByForcingTheHole) {
  StreamRecorder r;
  TrackerOptions opt;
  opt.max_pending_bytes = 10;
  ConnectionTracker t(r, opt);
  t.OnEvent(DataEvent(1, Direction::kIngress, 5, "0123456789", 1));  // 10 pending: at the cap
  EXPECT_EQ(r.conns[1].in, "");
  t.OnEvent(DataEvent(1, Direction::kIngress, 100, "x", 2));  // 11 > cap: hole at 0 forced
  EXPECT_EQ(r.conns[1].in, "<gap 5>0123456789");
}

TEST_F(TrackerTest, CloseFlushesPendingAndReportsTrailingLoss) {
  Feed(DataEvent(1, Direction::kEgress, 0, "ab", 1));
  Feed(DataEvent(1, Direction::kEgress, 4, "ef", 2));
  Feed(ConnEvent(IT_EV_CLOSE, 1, 3, /*in=*/3, /*out=*/10));
  EXPECT_EQ(rec.conns[1].out, "ab<gap 2>ef<gap 4>");
  EXPECT_EQ(rec.conns[1].in, "<gap 3>");
  EXPECT_TRUE(rec.conns[1].closed);
}

TEST_F(TrackerTest, DataBeforeOpenEventStillTrackedAndLaterFilledIn) {
  Feed(DataEvent(1, Direction::kIngress, 0, "x", 1));
  Feed(ConnEvent(IT_EV_OPEN, 1, 0));
  tracker.FinishAll(5);
  EXPECT_EQ(rec.conns[1].in, "x");
  EXPECT_TRUE(rec.conns[1].info.addresses_known);
  EXPECT_EQ(rec.conns[1].info.local.ToString(), "10.0.0.1:8000");
}

TEST_F(TrackerTest, MalformedEventsAreCountedNotTrusted) {
  std::vector<uint8_t> shortev = {1, 0, 1, 0};
  Feed(shortev);
  auto ev = DataEvent(1, Direction::kIngress, 0, "abcd", 1);
  ev.resize(ev.size() - 2);  // cap_len says 4, only 2 present
  Feed(ev);
  auto bad_version = DataEvent(1, Direction::kIngress, 0, "abcd", 1);
  bad_version[2] = 99;
  Feed(bad_version);
  auto bad_dir = DataEvent(1, Direction::kIngress, 0, "abcd", 1);
  bad_dir[offsetof(it_data_event, direction)] = 7;
  Feed(bad_dir);
  auto cap_over_len = DataEvent(1, Direction::kIngress, 0, "abcd", 1);
  uint32_t two = 2;
  std::memcpy(cap_over_len.data() + offsetof(it_data_event, len), &two, 4);
  Feed(cap_over_len);
  EXPECT_EQ(tracker.stats().malformed, 5u);
  EXPECT_EQ(tracker.connections(), 0u);
}

TEST_F(TrackerTest, ConnectionLimitDropsAndCounts) {
  StreamRecorder r;
  TrackerOptions opt;
  opt.max_connections = 2;
  ConnectionTracker t(r, opt);
  for (uint64_t c = 1; c <= 4; ++c)
    t.OnEvent(DataEvent(c, Direction::kIngress, 0, "x", c, 0, /*fd=*/uint32_t(c)));
  EXPECT_EQ(t.connections(), 2u);
  EXPECT_EQ(t.stats().dropped_connections, 2u);
}

// Close events are lost with the rest of a ring overflow (docs/capture.md#loss-accounting). A new connection
// on the same (tgid, fd) proves the old one was closed.
TEST_F(TrackerTest, NewConnectionOnTheSameFdEndsTheOneWhoseCloseWasLost) {
  Feed(ConnEvent(IT_EV_OPEN, 1, 1, 0, 0, /*fd=*/7));
  Feed(DataEvent(1, Direction::kIngress, 0, "first", 2, 0, /*fd=*/7));
  // close of 1 lost
  Feed(ConnEvent(IT_EV_OPEN, 2, 3, 0, 0, /*fd=*/7));
  EXPECT_TRUE(rec.conns[1].closed);
  // Events lost with the close cannot be measured: an unknown gap in each direction first.
  EXPECT_EQ(rec.conns[1].in, "first<gap ?>");
  EXPECT_EQ(rec.conns[1].out, "<gap ?>");
  EXPECT_EQ(tracker.connections(), 1u);
  EXPECT_EQ(tracker.stats().reconciled_closes, 1u);
  Feed(ConnEvent(IT_EV_CLOSE, 2, 4, 0, 0, 7));
  EXPECT_EQ(tracker.connections(), 0u);
}

TEST(TrackerReconcile, IdleConnectionsEndAfterTheTimeoutAndDeadOnesAtOnce) {
  StreamRecorder r;
  TrackerOptions opt;
  opt.idle_timeout_ns = 10'000'000'000ull;
  opt.liveness_check_after_ns = 1'000'000'000ull;
  std::set<uint64_t> alive = {1};
  opt.is_alive = [&](const ConnInfo& c) { return alive.count(c.conn_id) != 0; };
  ConnectionTracker t(r, opt);
  const uint64_t s = 1'000'000'000'000ull;
  t.OnEvent(DataEvent(1, Direction::kIngress, 0, "a", s, 0, 1));
  t.OnEvent(DataEvent(2, Direction::kIngress, 0, "b", s, 0, 2));
  t.Flush(s + 500'000'000ull);  // not idle long enough to ask
  EXPECT_EQ(t.connections(), 2u);
  t.Flush(s + 1'500'000'000ull);  // 2's fd holds no socket any more: its close was lost
  EXPECT_EQ(t.connections(), 1u);
  EXPECT_TRUE(r.conns[2].closed);
  EXPECT_EQ(r.conns[2].in, "b<gap ?>");  // its close was lost: so may its last events be
  t.Flush(s + 9'000'000'000ull);
  EXPECT_EQ(t.connections(), 1u);  // alive and idle for less than the timeout
  t.Flush(s + 10'000'000'000ull);
  EXPECT_EQ(t.connections(), 0u);
  EXPECT_TRUE(r.conns[1].closed);
  EXPECT_EQ(t.stats().reconciled_closes, 2u);
  // A later event of an ended connection starts it again, its missing prefix a gap.
  t.OnEvent(DataEvent(1, Direction::kIngress, 1, "c", s + 11'000'000'000ull, 0, 1));
  t.Flush(s + 11'100'000'000ull);
  EXPECT_EQ(r.conns[1].in, "a<gap 1>c");
}

}  // namespace
}  // namespace infertap
