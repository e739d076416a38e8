#include "agent/capture/capture_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "agent/capture/abi.hpp"
#include "test/unit/agent/event_builder.hpp"

namespace infertap {
namespace {

struct Collect : EventSink {
  std::vector<std::vector<uint8_t>> events;
  void OnEvent(std::span<const uint8_t> r) override { events.emplace_back(r.begin(), r.end()); }
};

std::string TempPath(const char* name) {
  return "/tmp/infertap-test-" + std::to_string(getpid()) + "-" + name;
}

TEST(CaptureFile, RoundTripPreservesEventsAndWallOffset) {
  const std::string path = TempPath("rt.cap");
  Status st;
  auto w = CaptureWriter::Create(path, 123456789, &st);
  ASSERT_TRUE(w) << st.message();
  auto e1 = testing::DataEvent(1, Direction::kIngress, 0, "hello", 10);
  auto e2 = testing::ConnEvent(IT_EV_CLOSE, 1, 11, 5, 0);
  ASSERT_TRUE(w->Write(e1));
  ASSERT_TRUE(w->Write(e2));
  ASSERT_TRUE(w->Close());
  EXPECT_TRUE(LooksLikeCaptureFile(path));

  auto r = CaptureReader::Open(path, &st);
  ASSERT_TRUE(r) << st.message();
  EXPECT_EQ(r->WallOffsetNs(), 123456789);
  Collect c;
  PollResult pr = r->Poll(c, 0);
  EXPECT_TRUE(pr.status.ok());
  EXPECT_TRUE(pr.at_end || r->Poll(c, 0).at_end);
  ASSERT_EQ(c.events.size(), 2u);
  EXPECT_EQ(c.events[0], e1);
  EXPECT_EQ(c.events[1], e2);
  std::remove(path.c_str());
}

TEST(CaptureFile, TruncatedFileIsAnErrorWithOffset) {
  const std::string path = TempPath("trunc.cap");
  Status st;
  {
    auto w = CaptureWriter::Create(path, 0, &st);
    ASSERT_TRUE(w);
    ASSERT_TRUE(w->Write(testing::DataEvent(1, Direction::kIngress, 0, "hello", 10)));
    ASSERT_TRUE(w->Write(testing::DataEvent(1, Direction::kIngress, 5, "world", 11)));
  }
  ASSERT_EQ(truncate(path.c_str(), 64 + 8 + 61 + 8 + 10), 0);
  auto r = CaptureReader::Open(path, &st);
  ASSERT_TRUE(r);
  Collect c;
  PollResult pr = r->Poll(c, 0);
  EXPECT_FALSE(pr.status.ok());
  EXPECT_NE(pr.status.message().find("truncated capture file (record at offset 133)"),
            std::string::npos)
      << pr.status.message();
  EXPECT_EQ(c.events.size(), 1u);
  std::remove(path.c_str());
}

TEST(CaptureFile, ForeignFileIsRejected) {
  const std::string path = TempPath("foreign.cap");
  std::ofstream(path) << "\xd4\xc3\xb2\xa1 this is a pcap, not ours";
  Status st;
  EXPECT_FALSE(CaptureReader::Open(path, &st));
  EXPECT_NE(st.message().find("not an infertap capture file"), std::string::npos);
  EXPECT_FALSE(LooksLikeCaptureFile(path));
  std::remove(path.c_str());
  EXPECT_FALSE(CaptureReader::Open(path, &st));
  EXPECT_NE(st.message().find("cannot open"), std::string::npos);
}

TEST(CaptureFile, CorruptRecordLengthIsAnError) {
  const std::string path = TempPath("corrupt.cap");
  Status st;
  {
    auto w = CaptureWriter::Create(path, 0, &st);
    ASSERT_TRUE(w);
  }
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    const uint32_t huge = 1u << 30, zero = 0;
    f.write(reinterpret_cast<const char*>(&huge), 4);
    f.write(reinterpret_cast<const char*>(&zero), 4);
  }
  auto r = CaptureReader::Open(path, &st);
  ASSERT_TRUE(r);
  Collect c;
  PollResult pr = r->Poll(c, 0);
  EXPECT_FALSE(pr.status.ok());
  EXPECT_NE(pr.status.message().find("corrupt record length"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Endpoint, ParsesAndFormats) {
  std::string err;
  auto v4 = ParseEndpoint("127.0.0.1:8000", &err);
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->is_v4());
  EXPECT_EQ(v4->ToString(), "127.0.0.1:8000");
  auto v6 = ParseEndpoint("[::1]:9000", &err);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->ToString(), "[::1]:9000");
  auto any = ParseEndpoint(":8000", &err);
  ASSERT_TRUE(any);
  EXPECT_TRUE(any->is_wildcard());
  EXPECT_EQ(any->ToString(), ":8000");
  EXPECT_TRUE(ParseEndpoint("0.0.0.0:80", &err)->is_wildcard());
  EXPECT_FALSE(ParseEndpoint("localhost:80", &err));
  EXPECT_NE(err.find("address literal"), std::string::npos);
  EXPECT_FALSE(ParseEndpoint("1.2.3.4:0", &err));
  EXPECT_FALSE(ParseEndpoint("1.2.3.4:65536", &err));
  EXPECT_FALSE(ParseEndpoint("1.2.3.4", &err));
  EXPECT_FALSE(ParseEndpoint("[::1:80", &err));
}

}  // namespace
}  // namespace infertap
