/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Packing of the direct-mapped fast cache (`fast_cache` in maps.bpf.h, docs/capture.md "The fast
 * path"). Pure integer arithmetic on one 64-bit word per slot, shared by the kernel programs and
 * the host unit tests (test/unit/agent/fast_cache_test.cc), so the packing is tested without a
 * kernel. Word layout:
 *   bits 63..42 tgid (22 bits) | 41..22 fd (20 bits) | 21..20 kind | 19..0 epoch (20 bits)
 * A word of 0 is an empty slot (kind 0 is no decision). tgids or fds too large to pack skip
 * the cache.
 */
#ifndef INFERTAP_FAST_CACHE_H
#define INFERTAP_FAST_CACHE_H

#ifdef __BPF__
/* vmlinux.h provides __u32/__u64 and __always_inline comes from bpf_helpers.h. */
#define IT_FC_INLINE static __always_inline
#else
#include <linux/types.h>
#define IT_FC_INLINE static inline
#endif

#define IT_FAST_SLOTS 65536
#define IT_FAST_TAG_MASK (~((1ull << 22) - 1))
#define IT_FAST_EPOCH_MASK ((1ull << 20) - 1)

/* Decision kinds, shared with fd_cache (maps.bpf.h enum fd_kind). Two bits. */
#define IT_FD_NOT_TRACEABLE 1 /* not a TCP/IP socket, or a connection `conns` had no room for */
#define IT_FD_UNTRACED 2      /* a TCP socket that matched no endpoint at the epoch */
#define IT_FD_TRACED 3        /* a traced connection (never stored in the fast cache) */

IT_FC_INLINE int it_fast_packable(__u32 tgid, __u32 fd)
{
	return tgid < (1u << 22) && fd < (1u << 20);
}

IT_FC_INLINE __u32 it_fast_slot(__u32 tgid, __u32 fd)
{
	return ((tgid * 0x9E3779B1u) ^ (fd * 0x85EBCA6Bu)) & (IT_FAST_SLOTS - 1);
}

IT_FC_INLINE __u64 it_fast_tag(__u32 tgid, __u32 fd)
{
	return ((__u64)tgid << 42) | ((__u64)fd << 22);
}

/* The word stored for a decision; callers check it_fast_packable() first. */
IT_FC_INLINE __u64 it_fast_word(__u32 tgid, __u32 fd, __u32 kind, __u64 epoch)
{
	return it_fast_tag(tgid, fd) | ((__u64)(kind & 3) << 20) | (epoch & IT_FAST_EPOCH_MASK);
}

/* 1 when `word` says "not traced" for (tgid, fd) at `epoch`: a not-traceable decision holds at
 * every epoch, an untraced one only at the epoch it was made in (modulo 2^20). */
IT_FC_INLINE int it_fast_says_untraced(__u64 word, __u32 tgid, __u32 fd, __u64 epoch)
{
	if (!it_fast_packable(tgid, fd))
		return 0;
	if ((word & IT_FAST_TAG_MASK) != it_fast_tag(tgid, fd))
		return 0;
	__u32 kind = (word >> 20) & 3;
	if (kind == IT_FD_NOT_TRACEABLE)
		return 1;
	return kind == IT_FD_UNTRACED && (word & IT_FAST_EPOCH_MASK) == (epoch & IT_FAST_EPOCH_MASK);
}

/* 1 when `word` holds a decision for (tgid, fd) (so forgetting the fd clears the slot). */
IT_FC_INLINE int it_fast_owns(__u64 word, __u32 tgid, __u32 fd)
{
	return it_fast_packable(tgid, fd) && word != 0 &&
	       (word & IT_FAST_TAG_MASK) == it_fast_tag(tgid, fd);
}

#endif /* INFERTAP_FAST_CACHE_H */
