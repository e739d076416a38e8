/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps of the capture programs. Each says what it tracks, its key and value, its bound, and what
 * happens when it is full.
 */
#ifndef INFERTAP_MAPS_BPF_H
#define INFERTAP_MAPS_BPF_H

#include "infertap_abi.h"
#include "fast_cache.h"
#include "shared_maps.bpf.h"

/* fd_cache values: what an fd turned out to be the last time it was resolved. */
enum fd_kind {
	/* not a socket, or not a TCP/IP socket (pipes, files, unix sockets), or a connection that
	 * `conns` had no room for when it was first seen (it stays untraced until closed) */
	FD_NOT_TRACEABLE = IT_FD_NOT_TRACEABLE,
	FD_UNTRACED = IT_FD_UNTRACED, /* a TCP socket that matched no endpoint at `epoch` */
	FD_TRACED = IT_FD_TRACED, /* a traced connection: its state is in `conns` under the same key */
};

struct fd_cache_val {
	__u32 kind;
	__u32 _pad;
	__u64 epoch; /* filter_epoch when decided; UNTRACED and TRACED are re-decided when it moves */
};

/*
 * The one-lookup fast path for every read/write in the system. Key is (tgid << 32 | fd); value
 * is struct fd_cache_val. Entries are removed on close()/dup2()/dup3() of the fd and on
 * accept()/connect(); LRU bounds the size (131072 entries): an evicted entry is simply resolved
 * again on next use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, struct fd_cache_val);
} fd_cache SEC(".maps");

/* State of one traced connection. */
struct conn_state {
	__u64 conn_id;
	__u64 pos[2]; /* next byte position per direction (it_direction) */
	__u32 fd;
	__u8 role;
	__u8 _pad[3];
};

/*
 * Traced connections. Key is (tgid << 32 | fd); value is struct conn_state. Plain hash (not LRU)
 * so a live connection is never evicted under pressure from untraced fds. Bound 65536: when
 * full, a new connection is not traced: its fd is cached as not traceable (so it is neither
 * resolved again nor counted again on its later syscalls) and IT_STAT_CONNS_FULL counts it once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

/*
 * Traced connections per process. Key is the tgid; value is how many entries of `conns` it owns.
 * A process that exits never calls close() on its sockets: its exit checks this map (one lookup)
 * and, only when it owns connections, sweeps `conns` for them. Bound 16384 processes; when full,
 * the sweep at exit is skipped for the extra ones (their entries are then reclaimed by close()
 * on fd reuse, or by the map bound).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __s64);
} tgid_conns SEC(".maps");

/* Arguments of an in-flight syscall on a traced connection, from enter to exit. */
struct active_io {
	__u64 conn_key; /* key in `conns` */
	__u64 ptr;      /* user buffer, iovec array, or user_msghdr */
	__u32 count;    /* iovec count (vectored syscalls) */
	__u8 sys;       /* enum it_syscall */
	__u8 dir;       /* enum it_direction */
	__u8 vectored;  /* 0: ptr is a buffer; 1: ptr is an iovec array; 2: ptr is a user_msghdr */
	__u8 valid;     /* set at enter, cleared at exit */
};

#ifndef IT_VARIANT_COMPAT
/*
 * Per-thread (task storage): the traced syscall this thread is in, from enter to exit. Task
 * storage instead of a hash keyed by pid_tgid: no element allocation per syscall, and the entry
 * is freed with the thread. Only threads that ever touched a traced connection get one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct active_io);
} active SEC(".maps");
#else
/*
 * The compatible variant (kernels without task storage, before 5.11): the same record in an LRU
 * hash keyed by pid_tgid, created at a thread's first traced syscall and reused by its later
 * ones (`valid` says whether it is in one). Bound 16384 threads; entries of exited threads are
 * what LRU reclaims first.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct active_io);
} active SEC(".maps");

/* Per-CPU connection id counters (no fetch-and-add before 5.12): id = counter << 12 | cpu. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} conn_id_seq SEC(".maps");
#endif

/*
 * Threads between enter and exit of a traced syscall, system-wide. The exit programs of every
 * read/write on the machine check this first: while it is zero (no traced syscall in flight) they
 * return without any per-thread lookup. A thread killed inside a traced syscall never runs its
 * exit, leaving the count high: that only disables the shortcut, never loses data.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} inflight SEC(".maps");

/*
 * Direct-mapped front cache of fd_cache for the negative decisions only (not traceable, or an
 * untraced TCP socket at the current epoch). An array lookup is inlined by the verifier, so the
 * common case — a read/write on a pipe, file or untraced socket — costs no helper call. Each slot
 * packs the whole decision into one 64-bit word (written and read atomically, so concurrent CPUs
 * can never see half of one decision and half of another); the packing is in fast_cache.h.
 * Collisions simply fall through to fd_cache.
 * 65536 slots, 512 KiB.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IT_FAST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} fast_cache SEC(".maps");

/* Per-CPU counters, one slot per enum it_stat; user space sums the CPUs. Fixed size. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

#endif /* INFERTAP_MAPS_BPF_H */
