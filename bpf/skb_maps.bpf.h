/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps of the cgroup backend's programs (capture_skb.bpf.c), besides the two it shares with the
 * syscall programs (`events`, `endpoints`: shared_maps.bpf.h). Each says what it tracks, its key
 * and value, its bound, and what happens when it is full.
 */
#ifndef INFERTAP_SKB_MAPS_BPF_H
#define INFERTAP_SKB_MAPS_BPF_H

#include "infertap_abi.h"
#include "shared_maps.bpf.h"

/* Per-CPU counters, one slot per enum it_skb_stat; user space sums the CPUs. Fixed size. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IT_SKB_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} skb_stats SEC(".maps");

/*
 * Nesting depth of the programs on this CPU. The egress program runs in process context with
 * bottom halves enabled (tcp_sendmsg → ip_finish_output), so a softirq can interrupt it on the
 * same CPU and run the ingress program, or the egress program for another socket's ACK or
 * retransmission; each run takes the scratch slot of its depth, so a nested run never
 * overwrites the header of the run it interrupted. Key 0; value the depth. A nested run
 * finishes before the one it interrupted continues, so a plain increment/decrement is exact.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} skb_depth SEC(".maps");

/*
 * The header of the packet being copied, filled once per packet and copied into each of its
 * events by the piece emitter (a global function, verified once: it cannot take a pointer to
 * the caller's stack, so the header travels through this map). Key is the nesting depth (above);
 * value struct it_skb_event (no payload). IT_SKB_NEST_MAX slots per CPU (process context,
 * softirq, and two more for safety); a run nested deeper is counted as lost, never copied over
 * another run's header.
 */
#define IT_SKB_NEST_MAX 4
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IT_SKB_NEST_MAX);
	__type(key, __u32);
	__type(value, struct it_skb_event);
} skb_scratch SEC(".maps");

#endif /* INFERTAP_SKB_MAPS_BPF_H */
