// The fast-cache word packing the kernel programs use (bpf/fast_cache.h), compiled on the host.
#include <gtest/gtest.h>

#include <set>

extern "C" {
#include "bpf/fast_cache.h"
}

namespace {

TEST(FastCache, PackedDecisionIsReadBackForItsOwnerOnly) {
  const __u64 w = it_fast_word(1234, 7, IT_FD_UNTRACED, 5);
  EXPECT_TRUE(it_fast_says_untraced(w, 1234, 7, 5));
  EXPECT_FALSE(it_fast_says_untraced(w, 1234, 8, 5));  // another fd
  EXPECT_FALSE(it_fast_says_untraced(w, 1235, 7, 5));  // another process
  EXPECT_TRUE(it_fast_owns(w, 1234, 7));
  EXPECT_FALSE(it_fast_owns(w, 1234, 8));
}

TEST(FastCache, UntracedHoldsOnlyAtItsEpochNotTraceableAtEvery) {
  const __u64 u = it_fast_word(42, 3, IT_FD_UNTRACED, 9);
  EXPECT_FALSE(it_fast_says_untraced(u, 42, 3, 10));
  const __u64 n = it_fast_word(42, 3, IT_FD_NOT_TRACEABLE, 9);
  EXPECT_TRUE(it_fast_says_untraced(n, 42, 3, 10));
  EXPECT_TRUE(it_fast_says_untraced(n, 42, 3, 1u << 30));
  // The epoch is kept modulo 2^20: an epoch that wrapped around compares equal (documented).
  EXPECT_TRUE(it_fast_says_untraced(u, 42, 3, 9 + (1ull << 20)));
}

TEST(FastCache, TracedAndEmptyWordsNeverSayUntraced) {
  EXPECT_FALSE(it_fast_says_untraced(it_fast_word(42, 3, IT_FD_TRACED, 1), 42, 3, 1));
  EXPECT_FALSE(it_fast_says_untraced(0, 0, 0, 0));
  EXPECT_FALSE(it_fast_owns(0, 0, 0));
}

TEST(FastCache, FieldsDoNotBleedIntoEachOther) {
  // Largest packable values: every field at its maximum, neighbours at zero and back.
  const __u32 tmax = (1u << 22) - 1, fmax = (1u << 20) - 1;
  const __u64 a = it_fast_word(tmax, 0, IT_FD_UNTRACED, IT_FAST_EPOCH_MASK);
  EXPECT_TRUE(it_fast_says_untraced(a, tmax, 0, IT_FAST_EPOCH_MASK));
  EXPECT_FALSE(it_fast_says_untraced(a, tmax, 1, IT_FAST_EPOCH_MASK));
  const __u64 b = it_fast_word(0, fmax, IT_FD_UNTRACED, 0);
  EXPECT_TRUE(it_fast_says_untraced(b, 0, fmax, 0));
  EXPECT_FALSE(it_fast_says_untraced(b, 1, fmax, 0));
  EXPECT_EQ(a >> 42, tmax);
  EXPECT_EQ((b >> 22) & fmax, fmax);
  EXPECT_EQ((a >> 20) & 3, __u64(IT_FD_UNTRACED));
}

TEST(FastCache, TooLargeTgidOrFdIsNotCached) {
  EXPECT_FALSE(it_fast_packable(1u << 22, 0));
  EXPECT_FALSE(it_fast_packable(0, 1u << 20));
  EXPECT_TRUE(it_fast_packable((1u << 22) - 1, (1u << 20) - 1));
  // Even a word that would match after truncation is refused for an unpackable key.
  const __u64 w = it_fast_word(5, 3, IT_FD_NOT_TRACEABLE, 0);
  EXPECT_FALSE(it_fast_says_untraced(w, 5 | (1u << 22), 3, 0));
  EXPECT_FALSE(it_fast_owns(w, 5, 3 | (1u << 20)));
}

TEST(FastCache, SlotsSpreadConsecutiveFdsAndStayInRange) {
  std::set<__u32> slots;
  for (__u32 fd = 0; fd < 4096; ++fd) {
    const __u32 s = it_fast_slot(1000, fd);
    ASSERT_LT(s, __u32(IT_FAST_SLOTS));
    slots.insert(s);
  }
  EXPECT_EQ(slots.size(), 4096u);  // one process's fds never collide with each other
}

}  // namespace
