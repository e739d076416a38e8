// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The cgroup backend (docs/capture.md "The cgroup backend", `--capture-backend cgroup`): TCP
 * packets of the model-server pods' sockets, seen by `cgroup_skb` programs attached to the pods'
 * cgroup v2 directories, reassembled into byte streams in user space (agent/capture/
 * skb_capture.*, agent/replay/tcp_flows.*: the same reassembly as pcap replay).
 *
 * Why: the syscall backend's raw tracepoints run for every syscall of every process on the node.
 * These programs run only for packets of sockets created inside the attached cgroups (a socket
 * keeps its creator's cgroup; accepted sockets inherit the listener's), so every other process
 * pays nothing.
 *
 * What the kernel gives a cgroup_skb program: the skb with data at the IP header (ingress: in
 * tcp_v4_rcv/tcp_v6_rcv's socket filter, after GRO; egress: in ip_finish_output/
 * ip6_finish_output, before GSO segmentation), so one skb can carry up to 64 KiB of payload on
 * loopback and veth (more with BIG TCP). The payload is read with bpf_skb_load_bytes (it handles
 * non-linear skbs: GSO payload sits in page fragments) and copied in IT_CHUNK_MAX pieces, one
 * ring event each (bpf/infertap_abi.h, struct it_skb_event).
 *
 * The return value is always 1 (pass): capture must never drop a packet.
 *
 * Kernel support: cgroup_skb (4.10), BPF links for cgroups (5.7), ring buffer (5.8), global
 * functions (5.6), bounded loops (5.3), bpf_skb_cgroup_id in cgroup_skb programs: all in 5.10.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "infertap_abi.h"
#include "skb_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IT_TCP_FIN 0x01
#define IT_TCP_SYN 0x02
#define IT_TCP_RST 0x04

/* Set before load (read-only after): the ring fill level that wakes the agent. */
const volatile __u64 wakeup_bytes = IT_WAKEUP_MAX_BYTES;

static __always_inline void stat_add(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&skb_stats, &idx);
	if (p)
		*p += v;
}

/* Endpoint match for the packet's local side (the traced socket's own address and port): exact
 * address first, then the wildcard address. Only role server is served by this backend. */
static __always_inline int traced_endpoint(const __u8 *addr, __u16 port)
{
	struct it_endpoint_key k = {};
	struct it_endpoint_value *v;

	__builtin_memcpy(k.addr, addr, 16);
	k.port = port;
	v = bpf_map_lookup_elem(&endpoints, &k);
	if (!v) {
		__builtin_memset(k.addr, 0, 16);
		v = bpf_map_lookup_elem(&endpoints, &k);
	}
	return v && (v->roles & IT_ROLE_SERVER);
}

/* Wakeup flags for a submit (shared_maps.bpf.h), counted on this object's stats. */
static __always_inline __u64 submit_flags(void)
{
	__u32 idx = IT_SKB_STAT_EVENTS;
	return ring_submit_flags(bpf_map_lookup_elem(&skb_stats, &idx), wakeup_bytes);
}

enum emit_result {
	EMIT_OK = 0,
	EMIT_LOST = 1,       /* no ring space */
	EMIT_UNREADABLE = 2, /* bpf_skb_load_bytes refused the range */
};

/* One event of a fixed size class (ring reservations have a constant size): header copied from
 * the scratch slot, then `n` payload bytes from skb offset `at`. */
#define EMIT_CLASS(CLASS)                                                                        \
	static __always_inline int emit_class_##CLASS(struct __sk_buff *skb,                      \
						      const struct it_skb_event *tpl, __u32 at,   \
						      __u32 off, __u32 n)                         \
	{                                                                                        \
		struct it_skb_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev) + CLASS, 0);  \
		if (!ev)                                                                         \
			return EMIT_LOST;                                                        \
		/* 64-bit, and the barrier: clang must bound-check the very register it passes */ \
		__u64 len = n;                                                                   \
		asm volatile("" : "+r"(len));                                                    \
		if (len > CLASS)                                                                 \
			len = CLASS;                                                             \
		__builtin_memcpy(ev, tpl, sizeof(*ev));                                          \
		ev->offset = off;                                                                \
		ev->cap_len = len;                                                               \
		if (len > 0 && bpf_skb_load_bytes(skb, at, ev->data, len)) {                     \
			bpf_ringbuf_discard(ev, BPF_RB_NO_WAKEUP);                               \
			return EMIT_UNREADABLE;                                                  \
		}                                                                                \
		bpf_ringbuf_submit(ev, submit_flags());                                          \
		return EMIT_OK;                                                                  \
	}

EMIT_CLASS(IT_CHUNK_SMALL)
EMIT_CLASS(IT_CHUNK_MEDIUM)
EMIT_CLASS(IT_CHUNK_MAX)

/*
 * Emits one piece: payload bytes [off, off + n) of the packet in scratch slot `slot`, which sit
 * at skb offset `at`. A global function: the verifier checks it once, not once per iteration of
 * the caller's piece loop. Returns enum emit_result.
 */
__noinline int emit_piece(struct __sk_buff *skb, __u32 slot, __u32 at, __u32 off, __u32 n)
{
	struct it_skb_event *tpl = bpf_map_lookup_elem(&skb_scratch, &slot);
	int r;

	if (!tpl || !skb)
		return EMIT_LOST;
	if (n <= IT_CHUNK_SMALL)
		r = emit_class_IT_CHUNK_SMALL(skb, tpl, at, off, n);
	else if (n <= IT_CHUNK_MEDIUM)
		r = emit_class_IT_CHUNK_MEDIUM(skb, tpl, at, off, n);
	else
		r = emit_class_IT_CHUNK_MAX(skb, tpl, at, off, n);
	if (r == EMIT_OK) {
		stat_add(IT_SKB_STAT_EVENTS, 1);
		stat_add(IT_SKB_STAT_BYTES, n);
	}
	return r;
}

/* The IP and TCP headers of a packet, as far as the filter and the event need them. */
struct pkt {
	__u8 saddr[16], daddr[16]; /* v4-mapped for IPv4 */
	__u16 sport, dport;
	__u32 hdr_len;     /* IP + TCP header bytes: where the payload starts */
	__u32 payload_len; /* TCP payload bytes */
	__u8 family;
	__u8 tcp[20]; /* the fixed TCP header, raw */
};

/* Returns 0 when `p` holds a TCP packet; IT_SKB_STAT_SKIPPED or IT_SKB_STAT_UNREADABLE when not. */
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	__u32 l4, ip_len, doff;
	__u8 vhl;

	if (bpf_skb_load_bytes(skb, 0, &vhl, 1))
		return IT_SKB_STAT_UNREADABLE;
	if ((vhl >> 4) == 4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return IT_SKB_STAT_UNREADABLE;
		/* Fragments (MF or an offset) are not reassembled: TCP over loopback and LANs
		 * practically never fragments (PMTU discovery, DF set by default). */
		if (ip.protocol != IPPROTO_TCP || (ip.frag_off & bpf_htons(0x3fff)))
			return IT_SKB_STAT_SKIPPED;
		l4 = (vhl & 0xf) * 4;
		if (l4 < 20)
			return IT_SKB_STAT_UNREADABLE;
		/* tot_len is 0 for a BIG TCP packet over 64 KiB: then the skb length is the packet. */
		ip_len = bpf_ntohs(ip.tot_len);
		if (ip_len == 0 || ip_len > skb->len)
			ip_len = skb->len;
		__builtin_memset(p->saddr, 0, 16);
		__builtin_memset(p->daddr, 0, 16);
		p->saddr[10] = p->saddr[11] = 0xff;
		p->daddr[10] = p->daddr[11] = 0xff;
		__builtin_memcpy(&p->saddr[12], &ip.saddr, 4);
		__builtin_memcpy(&p->daddr[12], &ip.daddr, 4);
		p->family = AF_INET;
	} else if ((vhl >> 4) == 6) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return IT_SKB_STAT_UNREADABLE;
		/* Extension headers are not walked: TCP sockets do not send them unless asked to
		 * (IPV6_HOPOPTS and friends); such packets are skipped and counted. */
		if (ip6.nexthdr != IPPROTO_TCP)
			return IT_SKB_STAT_SKIPPED;
		l4 = sizeof(ip6);
		/* payload_len is 0 for a BIG TCP (jumbogram) packet: the skb length says it. */
		ip_len = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		if (ip_len == sizeof(ip6) || ip_len > skb->len)
			ip_len = skb->len;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		p->family = AF_INET6;
	} else {
		return IT_SKB_STAT_SKIPPED;
	}
	if (bpf_skb_load_bytes(skb, l4, p->tcp, sizeof(p->tcp)))
		return IT_SKB_STAT_UNREADABLE;
	doff = (p->tcp[12] >> 4) * 4;
	if (doff < 20 || l4 + doff > ip_len)
		return IT_SKB_STAT_UNREADABLE;
	p->sport = ((__u16)p->tcp[0] << 8) | p->tcp[1];
	p->dport = ((__u16)p->tcp[2] << 8) | p->tcp[3];
	p->hdr_len = l4 + doff;
	p->payload_len = ip_len - p->hdr_len;
	return 0;
}

static __always_inline __u32 be32_at(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

static __always_inline void handle(struct __sk_buff *skb, __u8 dir)
{
	__u32 zero = 0, slot, off = 0, i;
	__u32 *depth;
	struct it_skb_event *tpl;
	struct pkt p = {};
	int skip;

	stat_add(IT_SKB_STAT_PACKETS, 1);
	skip = parse(skb, &p);
	if (skip) {
		stat_add(skip, 1);
		return;
	}
	/* The traced socket's own side: the destination of what it receives, the source of what
	 * it sends. */
	if (dir == IT_DIR_INGRESS ? !traced_endpoint(p.daddr, p.dport)
				  : !traced_endpoint(p.saddr, p.sport)) {
		stat_add(IT_SKB_STAT_SKIPPED, 1);
		return;
	}
	if (p.payload_len == 0 && !(p.tcp[13] & (IT_TCP_SYN | IT_TCP_FIN | IT_TCP_RST))) {
		stat_add(IT_SKB_STAT_ACKS, 1);
		return;
	}

	depth = bpf_map_lookup_elem(&skb_depth, &zero);
	if (!depth)
		return;
	slot = *depth;
	if (slot >= IT_SKB_NEST_MAX) {
		stat_add(IT_SKB_STAT_LOST_EVENTS, 1);
		stat_add(IT_SKB_STAT_LOST_BYTES, p.payload_len);
		return;
	}
	tpl = bpf_map_lookup_elem(&skb_scratch, &slot);
	if (!tpl)
		return;
	*depth = slot + 1;

	tpl->type = IT_EV_SKB;
	tpl->version = IT_ABI_VERSION;
	tpl->direction = dir;
	tpl->family = p.family;
	tpl->tcp_flags = p.tcp[13];
	tpl->flags = p.payload_len > IT_SKB_MAX_PIECES * IT_CHUNK_MAX ? IT_SKB_F_TRUNCATED : 0;
	tpl->ifindex = skb->ifindex;
	tpl->payload_len = p.payload_len;
	tpl->ts_ns = bpf_ktime_get_ns();
	tpl->cgroup_id = bpf_skb_cgroup_id(skb);
	__builtin_memcpy(tpl->saddr, p.saddr, 16);
	__builtin_memcpy(tpl->daddr, p.daddr, 16);
	tpl->sport = p.sport;
	tpl->dport = p.dport;
	tpl->window = ((__u16)p.tcp[14] << 8) | p.tcp[15];
	tpl->_pad0 = 0;
	tpl->seq = be32_at(&p.tcp[4]);
	tpl->ack = be32_at(&p.tcp[8]);
	tpl->offset = 0;
	tpl->cap_len = 0;

	/* Every piece is tried even after a failure: each is counted, and a later one that fits
	 * tells user space where the stream continues. A header-only packet (SYN, FIN, RST) is
	 * one event with no payload. */
	for (i = 0; i < IT_SKB_MAX_PIECES; i++) {
		__u32 n = p.payload_len - off;
		int r;

		if (n > IT_CHUNK_MAX)
			n = IT_CHUNK_MAX;
		r = emit_piece(skb, slot, p.hdr_len + off, off, n);
		if (r != EMIT_OK) {
			stat_add(r == EMIT_LOST ? IT_SKB_STAT_LOST_EVENTS : IT_SKB_STAT_UNREADABLE, 1);
			stat_add(IT_SKB_STAT_LOST_BYTES, n);
		}
		off += n;
		if (off >= p.payload_len)
			break;
	}
	if (off < p.payload_len)
		stat_add(IT_SKB_STAT_LOST_BYTES, p.payload_len - off);
	*depth = slot;
}

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb)
{
	handle(skb, IT_DIR_INGRESS);
	return 1;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb)
{
	handle(skb, IT_DIR_EGRESS);
	return 1;
}
