/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps both capture backends define the same way: the syscall programs (capture.bpf.c,
 * maps.bpf.h) and the cgroup_skb programs (capture_skb.bpf.c, skb_maps.bpf.h). Each object has
 * its own instance; user space sizes and fills them the same way for both.
 */
#ifndef INFERTAP_SHARED_MAPS_BPF_H
#define INFERTAP_SHARED_MAPS_BPF_H

#include "infertap_abi.h"

/*
 * Events to user space. Size set by the agent before load (--ring-buffer-size, default 16 MiB).
 * When full, reservations fail: counted (syscall programs: `stats` IT_STAT_LOST_*, where the byte
 * positions still advance; cgroup_skb programs: `skb_stats` IT_SKB_STAT_LOST_*, where the TCP
 * sequence numbers of later packets place them), so user space sees a gap of exact length in
 * the stream instead of mis-joined bytes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

/*
 * Traced model-server endpoints, fed by the agent. Key is struct it_endpoint_key (address, with
 * all zeros meaning any address, and port); value is struct it_endpoint_value (roles to trace).
 * Bound 4096 endpoints per node; the agent refuses to add more. The syscall programs cache
 * decisions, so a change there requires bumping `filter_epoch`; the cgroup_skb programs look up
 * every packet and see a change at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct it_endpoint_key);
	__type(value, struct it_endpoint_value);
} endpoints SEC(".maps");

/*
 * Wakeups: the agent polls the ring on a short timer anyway, so events are submitted without
 * waking it, except when the ring is filling up (at least `wake_at` bytes waiting). Asking the
 * ring how full it is reads the consumer position, a cache line the agent's CPU writes: do it
 * only every 32nd event per CPU. `events_so_far` is this CPU's event counter from the object's
 * stats map (NULL: ask the ring).
 */
static __always_inline __u64 ring_submit_flags(const __u64 *events_so_far, __u64 wake_at)
{
	if (events_so_far && (*events_so_far & 31))
		return BPF_RB_NO_WAKEUP;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_at ? BPF_RB_FORCE_WAKEUP
									 : BPF_RB_NO_WAKEUP;
}

#endif /* INFERTAP_SHARED_MAPS_BPF_H */
