// Ring buffer sizing (docs/capture.md#loss-accounting): the rule the CLI and the loader share.
#include <gtest/gtest.h>

#include "agent/capture/abi.hpp"

namespace infertap {
namespace {

TEST(RingBufferSize, RingsThatCannotHoldTheLargestEventAreRefused) {
  EXPECT_NE(CheckRingBufferSize(4096), "");  // a 4 KiB class event plus its header does not fit
  EXPECT_NE(CheckRingBufferSize(0), "");
  EXPECT_NE(CheckRingBufferSize(12288), "");  // not a power of two
  EXPECT_NE(CheckRingBufferSize(uint64_t(1) << 32), "");
  EXPECT_EQ(CheckRingBufferSize(8192), "");
  EXPECT_EQ(CheckRingBufferSize(16u << 20), "");
  EXPECT_GE(uint64_t(IT_RING_MIN_BYTES), uint64_t(IT_MAX_EVENT_BYTES + IT_RINGBUF_HDR_BYTES));
  const std::string why = CheckRingBufferSize(4096);
  EXPECT_EQ(why.find('\n'), std::string::npos);  // one line
  EXPECT_NE(why.find("4096"), std::string::npos);
}

TEST(RingBufferSize, WakeupMarkScalesWithTheRing) {
  // A fixed 64 KiB mark was never reached by a ring of 64 KiB or less.
  for (uint64_t ring = IT_RING_MIN_BYTES; ring <= (uint64_t(1) << 31); ring <<= 1) {
    const uint64_t mark = IT_WAKEUP_BYTES(ring);
    EXPECT_GT(mark, 0u) << ring;
    EXPECT_LE(mark + IT_MAX_EVENT_BYTES, ring) << ring;  // reachable with room to spare
    EXPECT_LE(mark, uint64_t(IT_WAKEUP_MAX_BYTES)) << ring;
  }
  EXPECT_EQ(IT_WAKEUP_BYTES(uint64_t(16) << 20), uint64_t(64 * 1024));  // default ring: as before
  EXPECT_EQ(IT_WAKEUP_BYTES(uint64_t(128) << 10), uint64_t(16 * 1024));
}

}  // namespace
}  // namespace infertap
