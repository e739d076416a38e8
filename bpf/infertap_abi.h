/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one ABI shared by the kernel programs (bpf/ *.bpf.c files, compiled by clang for the BPF target)
 * and user space (agent/, compiled by g++). Fixed-width types only, explicit padding, and static
 * asserts on sizes and offsets that both compilers check. C++ conveniences live in
 * agent/capture/abi.hpp; nothing here may depend on either side's headers beyond the integer
 * types.
 *
 * Events travel through one BPF ring buffer. Every record starts with `struct it_event_header`;
 * `type` says which struct follows. User space must check the record size against the struct
 * size (and `cap_len` against the record size) before trusting any field: records come from the
 * kernel but the capture file format reuses them, and files are untrusted input.
 *
 * Bump IT_ABI_VERSION on any change to these structs; capture files record it.
 */
#ifndef INFERTAP_ABI_H
#define INFERTAP_ABI_H

#ifdef __BPF__
/* vmlinux.h provides __u8.. __u64 for the BPF side. */
#else
#include <linux/types.h>
#endif

#define IT_ABI_VERSION 1

/* Event types (it_event_header.type). */
enum it_event_type {
	IT_EV_DATA = 1,  /* struct it_data_event: payload bytes of one syscall (or a piece of it) */
	IT_EV_OPEN = 2,  /* struct it_conn_event: first sight of a traced connection */
	IT_EV_CLOSE = 3, /* struct it_conn_event: close() of a traced connection's fd */
	IT_EV_SKB = 4,   /* struct it_skb_event: a TCP packet of a traced endpoint (cgroup backend) */
};

/* Direction as seen by the traced process. */
enum it_direction {
	IT_DIR_INGRESS = 0, /* bytes read by the traced process (read/recv*) */
	IT_DIR_EGRESS = 1,  /* bytes written by the traced process (write/send*) */
};

/* Role of a traced connection (docs/capture.md). Also used as a bit mask in the endpoint map. */
enum it_role {
	IT_ROLE_SERVER = 1, /* local endpoint is a traced model-server endpoint */
	IT_ROLE_CLIENT = 2, /* remote endpoint is a traced model-server endpoint */
};

/* Which syscall family produced a data event (debugging, tests of every path). */
enum it_syscall {
	IT_SYS_READ = 1,
	IT_SYS_WRITE = 2,
	IT_SYS_READV = 3,
	IT_SYS_WRITEV = 4,
	IT_SYS_RECVFROM = 5,
	IT_SYS_SENDTO = 6,
	IT_SYS_RECVMSG = 7,
	IT_SYS_SENDMSG = 8,
	IT_SYS_SENDFILE = 9,
	IT_SYS_RECVMMSG = 10,
	IT_SYS_SENDMMSG = 11,
};

/*
 * Payload size classes. A ring-buffer reservation has a constant size, so a data event is
 * reserved in the smallest class that holds its piece of payload; larger syscalls are split into
 * IT_CHUNK_MAX pieces (byte positions keep the order explicit).
 */
#define IT_CHUNK_SMALL 256
#define IT_CHUNK_MEDIUM 1024
#define IT_CHUNK_MAX 4096

/*
 * Ring buffer sizing (docs/capture.md#loss-accounting). Every ring record is prefixed by the kernel's
 * 8-byte header (BPF_RINGBUF_HDR_SZ) and padded to 8 bytes. The largest record is a data event of
 * the largest class; a ring that cannot hold it loses every such event, so the agent refuses
 * rings smaller than IT_RING_MIN_BYTES (ring sizes are powers of two, a multiple of the page
 * size). The wake-up mark (fill level at which a submit wakes the agent) is an eighth of the
 * ring, at most IT_WAKEUP_MAX_BYTES: a fixed mark above the ring size would never be reached.
 */
#define IT_RINGBUF_HDR_BYTES 8
#define IT_MAX_EVENT_BYTES (56 + IT_CHUNK_MAX) /* sizeof(struct it_data_event) + payload */
#define IT_RING_MIN_BYTES 8192
#define IT_WAKEUP_MAX_BYTES (64 * 1024)
#define IT_WAKEUP_BYTES(ring_bytes) \
	((ring_bytes) / 8 < IT_WAKEUP_MAX_BYTES ? (ring_bytes) / 8 : IT_WAKEUP_MAX_BYTES)

/* Per-syscall capture cap default: bytes past it are reported as a gap (never dropped silently). */
#define IT_DEFAULT_SYSCALL_CAP (256 * 1024)

/* Flags of it_data_event.flags. */
#define IT_DATA_F_GAP 0x1      /* cap_len < len: the bytes [pos+cap_len, pos+len) were not captured */
#define IT_DATA_F_LENGTH_ONLY 0x2 /* sendfile and friends: the kernel moved bytes we cannot see */

struct it_event_header {
	__u16 type;    /* enum it_event_type */
	__u16 version; /* IT_ABI_VERSION */
	__u32 tgid;    /* process (thread group) id of the traced process */
	__u64 conn_id; /* unique per connection lifetime: a reused fd number gets a new id */
	__u64 ts_ns;   /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at syscall exit (data) or event time */
};

/*
 * One syscall's data, or one piece of it. The event covers the byte range [pos, pos+len) of the
 * direction's stream; the first cap_len bytes of that range follow the struct. cap_len < len
 * means the rest of the range was not captured (a gap the tracker reports, not a loss).
 */
struct it_data_event {
	struct it_event_header hdr;
	__u64 pos;         /* position of the first byte in this direction's stream */
	__u32 len;         /* bytes of the stream this event covers */
	__u32 cap_len;     /* bytes of payload that follow (<= len, <= IT_CHUNK_MAX) */
	__u32 syscall_len; /* the syscall's whole return value (all pieces together) */
	__u32 fd;
	__u8 direction; /* enum it_direction */
	__u8 role;      /* enum it_role */
	__u8 syscall;   /* enum it_syscall */
	__u8 flags;     /* IT_DATA_F_* */
	__u32 _pad;
	__u8 data[]; /* cap_len bytes */
};

/*
 * Addresses: IPv4 is stored as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) so one 16-byte
 * field serves both families; `family` says which the socket really is (AF_INET = 2,
 * AF_INET6 = 10). Ports in host byte order.
 */
struct it_conn_event {
	struct it_event_header hdr;
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 family;
	__u8 role; /* enum it_role */
	__u8 _pad0;
	__u32 fd;
	__u32 _pad1;
	__u64 cgroup_id;
	__u64 bytes_ingress; /* close: stream positions reached (what the kernel saw) */
	__u64 bytes_egress;
};

/*
 * Endpoint filter (BPF hash map `endpoints`). Key: address (v4-mapped for IPv4; all zeros is the
 * wildcard "any address") and port. Value: the roles to trace for it (IT_ROLE_* mask) and the
 * index of the pool it belongs to (for the agent; the kernel does not use it).
 */
struct it_endpoint_key {
	__u8 addr[16];
	__u16 port; /* host byte order */
	__u16 _pad0;
	__u32 _pad1;
};

struct it_endpoint_value {
	__u32 roles;
	__u32 pool_index;
};

/* Per-CPU counters (BPF per-CPU array `stats`, one slot per enum value). */
enum it_stat {
	IT_STAT_EVENTS = 0,      /* data events submitted */
	IT_STAT_BYTES = 1,       /* payload bytes submitted */
	IT_STAT_LOST_EVENTS = 2, /* ring-buffer reserve failures (any event type) */
	IT_STAT_LOST_BYTES = 3,  /* payload bytes whose event could not be reserved */
	IT_STAT_CONNS_FULL = 4,  /* traced connections not tracked because the conn map was full */
	IT_STAT_GAP_BYTES = 5,   /* bytes reported as gaps (cap, sendfile) */
	IT_STAT_RESOLVES = 6,    /* fd → socket resolutions (fd cache misses) */
	IT_STAT_MAX = 8,
};

/*
 * ---- The cgroup backend (bpf/capture_skb.bpf.c, docs/capture.md "The cgroup backend") ----
 *
 * `cgroup_skb` programs on the model-server pods' cgroup v2 directories see the IP packets of the
 * sockets created inside them, not syscalls. Each TCP packet of a traced endpoint (its local
 * address and port in `endpoints`: the destination on ingress, the source on egress) becomes one
 * or more `struct it_skb_event`: the packet's TCP header fields, followed by a piece of its
 * payload. A payload larger than IT_CHUNK_MAX (GSO/GRO packets on loopback and veth reach 64 KiB)
 * is sent as several events, each naming its offset within the packet's payload, so every byte's
 * stream position is `seq (+1 for a SYN) + offset + i`. A piece whose event cannot be reserved
 * (ring full) is counted (IT_SKB_STAT_LOST_*) and its bytes become a hole of exact length in user
 * space, which knows from the sequence numbers around it where the stream continues.
 *
 * Packets without payload are sent only when they carry SYN, FIN or RST (pure ACKs are counted,
 * not sent: user-space reassembly needs them only to tell capture loss at a stream's end, which
 * the later packets' ACK fields also tell).
 *
 * The record has no it_event_header: there is no process or connection id at the packet layer.
 * It starts with the same two fields (type, version) so one reader can tell the records apart.
 */

#define IT_SKB_F_TRUNCATED 0x1 /* the packet's payload went past IT_SKB_MAX_PIECES pieces */

/* Pieces copied per packet at most (bounded loop): 64 x 4 KiB = 256 KiB, above a 64 KiB GSO
 * packet and BIG TCP's usual 185,000 bytes. Bytes past it are counted as lost (hole of exact
 * length downstream). */
#define IT_SKB_MAX_PIECES 64

struct it_skb_event {
	__u16 type;        /* IT_EV_SKB */
	__u16 version;     /* IT_ABI_VERSION */
	__u8 direction;    /* IT_DIR_INGRESS: to the traced socket; IT_DIR_EGRESS: sent by it */
	__u8 family;       /* AF_INET = 2 or AF_INET6 = 10 (the packet's IP version) */
	__u8 tcp_flags;    /* byte 13 of the TCP header (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 flags;        /* IT_SKB_F_* */
	__u32 ifindex;     /* __sk_buff.ifindex (ingress: the receiving device, egress: 0 or out) */
	__u32 payload_len; /* TCP payload bytes of the whole packet (all its pieces) */
	__u64 ts_ns;       /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when the program ran */
	__u64 cgroup_id;   /* cgroup v2 id of the packet's socket (bpf_skb_cgroup_id) */
	__u8 saddr[16];    /* IPv6, or IPv4 as v4-mapped ::ffff:a.b.c.d */
	__u8 daddr[16];
	__u16 sport;       /* host byte order */
	__u16 dport;
	__u16 window;      /* raw TCP window field (unscaled) */
	__u16 _pad0;
	__u32 seq;         /* TCP sequence number of the packet (raw: a SYN's own number) */
	__u32 ack;         /* TCP acknowledgment number (meaningful when tcp_flags has ACK) */
	__u32 offset;      /* offset of this piece's first byte within the packet's payload */
	__u32 cap_len;     /* payload bytes that follow (<= IT_CHUNK_MAX, offset + cap_len <= payload_len) */
	__u8 data[];       /* cap_len bytes */
};

#define IT_SKB_MAX_EVENT_BYTES (88 + IT_CHUNK_MAX) /* sizeof(struct it_skb_event) + payload */

/* Per-CPU counters of the cgroup backend (per-CPU array `skb_stats`). */
enum it_skb_stat {
	IT_SKB_STAT_PACKETS = 0,     /* packets the programs ran for (every packet of the cgroups) */
	IT_SKB_STAT_EVENTS = 1,      /* events submitted */
	IT_SKB_STAT_BYTES = 2,       /* payload bytes submitted */
	IT_SKB_STAT_LOST_EVENTS = 3, /* ring-buffer reserve failures */
	IT_SKB_STAT_LOST_BYTES = 4,  /* payload bytes not submitted (reserve failure, past the bound) */
	IT_SKB_STAT_SKIPPED = 5,     /* packets not traced: not TCP over IPv4/IPv6, or no endpoint */
	IT_SKB_STAT_ACKS = 6,        /* traced packets with nothing to send (pure ACKs) */
	IT_SKB_STAT_UNREADABLE = 7,  /* traced-looking packets whose headers could not be read */
	IT_SKB_STAT_MAX = 8,
};

#ifdef __cplusplus
#define IT_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define IT_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

IT_STATIC_ASSERT(sizeof(struct it_event_header) == 24, "it_event_header size");
IT_STATIC_ASSERT(sizeof(struct it_data_event) == 56, "it_data_event size");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_data_event, pos) == 24, "it_data_event.pos");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_data_event, data) == 56, "it_data_event.data");
IT_STATIC_ASSERT(sizeof(struct it_conn_event) == 96, "it_conn_event size");
IT_STATIC_ASSERT(IT_MAX_EVENT_BYTES == sizeof(struct it_data_event) + IT_CHUNK_MAX, "largest event");
IT_STATIC_ASSERT(IT_RING_MIN_BYTES >= IT_MAX_EVENT_BYTES + IT_RINGBUF_HDR_BYTES, "ring holds the largest event");
IT_STATIC_ASSERT((IT_RING_MIN_BYTES & (IT_RING_MIN_BYTES - 1)) == 0, "ring minimum is a power of two");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_conn_event, local_port) == 56, "it_conn_event.local_port");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_conn_event, cgroup_id) == 72, "it_conn_event.cgroup_id");
IT_STATIC_ASSERT(sizeof(struct it_endpoint_key) == 24, "it_endpoint_key size");
IT_STATIC_ASSERT(sizeof(struct it_endpoint_value) == 8, "it_endpoint_value size");
IT_STATIC_ASSERT(sizeof(struct it_skb_event) == 88, "it_skb_event size");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_skb_event, ts_ns) == 16, "it_skb_event.ts_ns");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_skb_event, saddr) == 32, "it_skb_event.saddr");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_skb_event, sport) == 64, "it_skb_event.sport");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_skb_event, seq) == 72, "it_skb_event.seq");
IT_STATIC_ASSERT(__builtin_offsetof(struct it_skb_event, data) == 88, "it_skb_event.data");
IT_STATIC_ASSERT(IT_SKB_MAX_EVENT_BYTES == sizeof(struct it_skb_event) + IT_CHUNK_MAX, "largest skb event");
IT_STATIC_ASSERT(IT_RING_MIN_BYTES >= IT_SKB_MAX_EVENT_BYTES + IT_RINGBUF_HDR_BYTES, "ring holds the largest skb event");

#endif /* INFERTAP_ABI_H */
