// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Socket payload capture on the raw syscall tracepoints (docs/capture.md).
 *
 * Why raw `sys_enter`/`sys_exit`: kprobes are not built into every kernel (not into the CI
 * machines') and fentry/fexit can be refused. The per-syscall tracepoints
 * (`syscalls/sys_enter_read`, ...) were used before and cost more per hooked syscall (the kernel
 * builds a perf record before the program runs) and much more at detach: every one of the ~25
 * perf events waits for RCU grace periods under a global mutex when it is released, which made a
 * stop under load take 1-2.3 s. Two raw tracepoints (plus `sched_process_exit`) detach in
 * milliseconds and need no tracefs; the price is that the enter/exit programs run for every
 * syscall in the system, where the first instructions (a switch on the syscall number) send
 * everything but the hooked syscalls away.
 *
 * Shape of every hooked syscall: the enter side decides with ONE map lookup whether the fd is a
 * traced connection (fd_cache); only then does it record the arguments in `active`. The exit
 * side is one failed lookup for everything else. Data is copied at exit, when the real return
 * value is known (partial writes are common).
 *
 * Two variants are built from this file (docs/capture.md "Kernel requirements"): the modern one
 * (task storage, fetch-and-add, bpf_for_each_map_elem, bpf_loop: 5.17+) and, with
 * IT_VARIANT_COMPAT defined, a compatible one for 5.10+ (an LRU hash keyed by pid_tgid, per-CPU
 * connection ids, plain position updates, an fd walk at process exit, a bounded loop). Both emit
 * the same events; the agent picks one at start-up by probing the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "infertap_abi.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * The raw syscall tracepoints see the architecture's syscall numbers and the user registers.
 * x86-64 only for now (the committed vmlinux.h is x86's): numbers from
 * arch/x86/entry/syscalls/syscall_64.tbl, arguments in di, si, dx, r10, r8, r9, the number at
 * exit in orig_ax. A 32-bit (ia32) process's syscalls use another table: like the per-syscall
 * tracepoints, they are ignored (TS_COMPAT in thread_info.status).
 */
#if defined(__TARGET_ARCH_x86)
#define IT_NR_READ 0
#define IT_NR_WRITE 1
#define IT_NR_CLOSE 3
#define IT_NR_READV 19
#define IT_NR_WRITEV 20
#define IT_NR_DUP2 33
#define IT_NR_SENDFILE 40
#define IT_NR_CONNECT 42
#define IT_NR_ACCEPT 43
#define IT_NR_SENDTO 44
#define IT_NR_RECVFROM 45
#define IT_NR_SENDMSG 46
#define IT_NR_RECVMSG 47
#define IT_NR_ACCEPT4 288
#define IT_NR_DUP3 292
#define IT_TS_COMPAT 0x0002

#ifndef IT_VARIANT_COMPAT
/*
 * The modern variant's enter/exit programs are BTF-typed raw tracepoints (tp_btf, 5.5+): their
 * `regs` argument is a typed kernel pointer read with plain loads, and the current task is read
 * the same way, where an untyped raw tracepoint pays a bpf_probe_read_kernel per field (~25 ns
 * each, bench/RESULTS.md "Captured-syscall kernel cost"). Every syscall on the node runs these
 * programs, so this is the cost everyone pays.
 */
#define IT_SYSCALL_SEC(name) SEC("tp_btf/" name)
#define IT_REG(regs, field) ((regs)->field)

static __always_inline int current_is_ia32(void)
{
	return (bpf_get_current_task_btf()->thread_info.status & IT_TS_COMPAT) != 0;
}
#else
/* The compatible variant: untyped raw tracepoints (no bpf_get_current_task_btf before 5.11). */
#define IT_SYSCALL_SEC(name) SEC("raw_tracepoint/" name)
#define IT_REG(regs, field) BPF_CORE_READ((regs), field)

static __always_inline int current_is_ia32(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return (BPF_CORE_READ(task, thread_info.status) & IT_TS_COMPAT) != 0;
}
#endif
#define IT_ARG1(regs) IT_REG((regs), di)
#define IT_ARG2(regs) IT_REG((regs), si)
#define IT_ARG3(regs) IT_REG((regs), dx)
#define IT_EXIT_NR(regs) ((long)IT_REG((regs), orig_ax))
#else
#error "capture.bpf.c: syscall numbers and registers are defined for x86-64 only"
#endif

/* Set by the agent between open and load. */
const volatile __u32 agent_tgid = 0;                       /* never traced */
const volatile __u32 syscall_cap = IT_DEFAULT_SYSCALL_CAP; /* bytes captured per syscall */
const volatile __u32 max_iovecs = 64;                      /* iovecs walked per syscall */
const volatile __u64 wakeup_bytes = IT_WAKEUP_MAX_BYTES;  /* ring fill level that wakes the agent */

/* Written by the agent at run time (mmap'd .data): bumped on every change of `endpoints`. */
__u64 filter_epoch = 1;
#ifndef IT_VARIANT_COMPAT
/* Connection id allocator (global, atomic). */
__u64 next_conn_id = 0;
#endif

static __always_inline void stat_add(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&stats, &idx);
	if (p)
		*p += v;
}

static __always_inline __u64 fd_key(__u32 tgid, __u32 fd)
{
	return ((__u64)tgid << 32) | fd;
}

/* ---- the direct-mapped fast cache (maps.bpf.h; packing in fast_cache.h) -------------------- */

/* Returns 1 when the cached decision says "not traced" for (tgid, fd) at `epoch`. */
static __always_inline int fast_says_untraced(__u32 tgid, __u32 fd, __u64 epoch)
{
	if (!it_fast_packable(tgid, fd))
		return 0;
	__u32 slot = it_fast_slot(tgid, fd);
	__u64 *w = bpf_map_lookup_elem(&fast_cache, &slot);
	return w && it_fast_says_untraced(*w, tgid, fd, epoch);
}

static __always_inline void fast_store(__u32 tgid, __u32 fd, __u32 kind, __u64 epoch)
{
	if (!it_fast_packable(tgid, fd))
		return;
	__u32 slot = it_fast_slot(tgid, fd);
	__u64 *w = bpf_map_lookup_elem(&fast_cache, &slot);
	if (w)
		*w = it_fast_word(tgid, fd, kind, epoch);
}

static __always_inline void fast_forget(__u32 tgid, __u32 fd)
{
	if (!it_fast_packable(tgid, fd))
		return;
	__u32 slot = it_fast_slot(tgid, fd);
	__u64 *w = bpf_map_lookup_elem(&fast_cache, &slot);
	if (w && it_fast_owns(*w, tgid, fd))
		*w = 0;
}

static __always_inline void inflight_add(__s64 d)
{
	__u32 zero = 0;
	__s64 *n = bpf_map_lookup_elem(&inflight, &zero);
	if (n)
		__sync_fetch_and_add(n, d);
}

static __always_inline void tgid_conns_add(__u32 tgid, __s64 d)
{
	__s64 *n = bpf_map_lookup_elem(&tgid_conns, &tgid);
	if (n) {
		__sync_fetch_and_add(n, d);
		return;
	}
	if (d > 0) {
		__s64 one = d;
		if (bpf_map_update_elem(&tgid_conns, &tgid, &one, BPF_NOEXIST)) {
			n = bpf_map_lookup_elem(&tgid_conns, &tgid);
			if (n)
				__sync_fetch_and_add(n, d);
		}
	}
}

/* A connection id unique for the life of the loaded object (never 0). */
static __always_inline __u64 new_conn_id(void)
{
#ifndef IT_VARIANT_COMPAT
	return __sync_fetch_and_add(&next_conn_id, 1) + 1;
#else
	/* No fetch-and-add before 5.12: a per-CPU counter (programs do not migrate while they
	 * run) with the CPU number in the low 12 bits. */
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&conn_id_seq, &zero);
	if (!seq)
		return 0;
	*seq += 1;
	return (*seq << 12) | (bpf_get_smp_processor_id() & 0xfff);
#endif
}

struct sock_view {
	__u8 local[16];
	__u8 remote[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
};

static __always_inline void map_v4(__u8 *dst, __u32 addr_be)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr_be, 4);
}

/* Resolves fd → struct sock for the current task. Returns 0 and fills *sv for TCP/IP sockets. */
static __always_inline int resolve_sock(__u32 fd, struct sock_view *sv, int *not_traceable)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;
	unsigned int max_fds;

	*not_traceable = 0;
	if (!fdt)
		return -1;
	max_fds = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max_fds)
		return -1;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return -1; /* not open (yet): decide nothing, the syscall will fail */

	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK) {
		*not_traceable = 1;
		return -1;
	}
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk) {
		*not_traceable = 1;
		return -1;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if ((family != AF_INET && family != AF_INET6) || proto != IPPROTO_TCP) {
		*not_traceable = 1;
		return -1;
	}
	sv->family = family;
	sv->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	sv->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		map_v4(sv->local, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		map_v4(sv->remote, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else {
		/* Explicit sizes: BPF_CORE_READ_INTO would read sizeof(*array) == 1 byte here. */
		bpf_core_read(sv->local, sizeof(sv->local), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(sv->remote, sizeof(sv->remote), &sk->__sk_common.skc_v6_daddr);
	}
	return 0;
}

/* Endpoint match: exact address first, then the wildcard address, for the given port. */
static __always_inline __u32 match_endpoint(const __u8 *addr, __u16 port)
{
	struct it_endpoint_key k = {};
	struct it_endpoint_value *v;

	if (!port)
		return 0;
	__builtin_memcpy(k.addr, addr, 16);
	k.port = port;
	v = bpf_map_lookup_elem(&endpoints, &k);
	if (v)
		return v->roles;
	__builtin_memset(k.addr, 0, 16);
	v = bpf_map_lookup_elem(&endpoints, &k);
	return v ? v->roles : 0;
}

static __always_inline void emit_conn_event(__u16 type, __u32 tgid, struct conn_state *c,
					    const struct sock_view *sv)
{
	struct it_conn_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		stat_add(IT_STAT_LOST_EVENTS, 1);
		return;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->hdr.type = type;
	ev->hdr.version = IT_ABI_VERSION;
	ev->hdr.tgid = tgid;
	ev->hdr.conn_id = c->conn_id;
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->fd = c->fd;
	ev->role = c->role;
	if (sv) {
		__builtin_memcpy(ev->local_addr, sv->local, 16);
		__builtin_memcpy(ev->remote_addr, sv->remote, 16);
		ev->local_port = sv->lport;
		ev->remote_port = sv->rport;
		ev->family = sv->family;
	}
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->bytes_ingress = c->pos[IT_DIR_INGRESS];
	ev->bytes_egress = c->pos[IT_DIR_EGRESS];
	bpf_ringbuf_submit(ev, 0);
}

/*
 * The decision for (tgid, fd): NULL when not traced, else the connection state. One lookup in
 * fd_cache for anything already decided; resolution through task → files → socket otherwise
 * (that is also how sockets opened before the agent started are picked up).
 */
/*
 * Returns non-zero when (tgid, fd) is traced (the connection state is then in `conns` under
 * *key_out). A cached "traced" decision at the current epoch is trusted without looking at
 * `conns`: close()/dup2()/accept() drop both entries together, and the exit side looks the state
 * up anyway (and gives up if it is gone).
 */
static __always_inline int lookup_conn(__u32 tgid, __u32 fd, __u64 *key_out)
{
	__u64 key = fd_key(tgid, fd);
	__u64 epoch = filter_epoch;
	struct fd_cache_val *cv;
	struct conn_state *c;

	*key_out = key;
	if (fast_says_untraced(tgid, fd, epoch))
		return 0;
	cv = bpf_map_lookup_elem(&fd_cache, &key);
	if (cv) {
		if (cv->kind == FD_NOT_TRACEABLE) {
			fast_store(tgid, fd, FD_NOT_TRACEABLE, epoch);
			return 0;
		}
		if (cv->epoch == epoch) {
			if (cv->kind == FD_UNTRACED) {
				fast_store(tgid, fd, FD_UNTRACED, epoch);
				return 0;
			}
			return 1; /* FD_TRACED */
		}
	}
	struct fd_cache_val nv = {.epoch = epoch};
	if (tgid == agent_tgid) {
		nv.kind = FD_NOT_TRACEABLE;
		bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
		fast_store(tgid, fd, FD_NOT_TRACEABLE, epoch);
		return 0;
	}

	stat_add(IT_STAT_RESOLVES, 1);
	struct sock_view sv = {};
	int not_traceable = 0;
	if (resolve_sock(fd, &sv, &not_traceable)) {
		if (not_traceable) {
			nv.kind = FD_NOT_TRACEABLE;
			bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
			fast_store(tgid, fd, FD_NOT_TRACEABLE, epoch);
		}
		return 0;
	}

	__u32 roles = match_endpoint(sv.local, sv.lport) & IT_ROLE_SERVER;
	if (!roles)
		roles = match_endpoint(sv.remote, sv.rport) & IT_ROLE_CLIENT;

	c = bpf_map_lookup_elem(&conns, &key);
	if (c) {
		/*
		 * Already traced, re-decided after an endpoint change: a connection stays traced until
		 * it closes even when its endpoint left the set (a pod relabelled out of its pool
		 * finishes the requests it has; user space keeps the attribution it had at open).
		 */
		nv.kind = FD_TRACED;
		bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
		return 1;
	}
	if (!roles) {
		nv.kind = FD_UNTRACED;
		bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
		fast_store(tgid, fd, FD_UNTRACED, epoch);
		return 0;
	}
	nv.kind = FD_TRACED;

	struct conn_state ns = {};
	ns.conn_id = new_conn_id();
	ns.fd = fd;
	ns.role = roles;
	if (bpf_map_update_elem(&conns, &key, &ns, BPF_NOEXIST)) {
		c = bpf_map_lookup_elem(&conns, &key); /* lost a race with another thread */
		if (c)
			return 1;
		/*
		 * `conns` is full: this connection is not traced for its whole life. Caching that
		 * decision keeps its later syscalls on the one-lookup path and counts it once.
		 */
		stat_add(IT_STAT_CONNS_FULL, 1);
		nv.kind = FD_NOT_TRACEABLE;
		bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
		fast_store(tgid, fd, FD_NOT_TRACEABLE, epoch);
		return 0;
	}
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	tgid_conns_add(tgid, 1);
	bpf_map_update_elem(&fd_cache, &key, &nv, BPF_ANY);
	emit_conn_event(IT_EV_OPEN, tgid, c, &sv);
	return 1;
}

/* Drop the cached decisions for (tgid, fd): it is decided again on next use. */
static __always_inline void forget_decision(__u32 tgid, __u32 fd)
{
	__u64 key = fd_key(tgid, fd);
	bpf_map_delete_elem(&fd_cache, &key);
	fast_forget(tgid, fd);
}

/* Forget (tgid, fd): close(), dup2() over it, or a new socket appearing under that number. */
static __always_inline void forget_fd(__u32 tgid, __u32 fd)
{
	__u64 key = fd_key(tgid, fd);
	struct conn_state *c = bpf_map_lookup_elem(&conns, &key);
	if (c) {
		emit_conn_event(IT_EV_CLOSE, tgid, c, NULL);
		if (bpf_map_delete_elem(&conns, &key) == 0)
			tgid_conns_add(tgid, -1);
	}
	forget_decision(tgid, fd);
}

/* ---- enter side ----------------------------------------------------------------------------- */

static __always_inline int enter_io(struct pt_regs *regs, __u8 sys, __u8 dir, __u8 vectored)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 fd = (__u32)IT_ARG1(regs);
	__u64 key;

	if (!lookup_conn(tgid, fd, &key))
		return 0;
#ifndef IT_VARIANT_COMPAT
	struct active_io *a = bpf_task_storage_get(&active, bpf_get_current_task_btf(), 0,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);
#else
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct active_io *a = bpf_map_lookup_elem(&active, &pid_tgid);
	if (!a) {
		struct active_io fresh = {};
		bpf_map_update_elem(&active, &pid_tgid, &fresh, BPF_ANY);
		a = bpf_map_lookup_elem(&active, &pid_tgid);
	}
#endif
	if (!a)
		return 0; /* no memory: the bytes show up as a gap (positions do not move) */
	if (!a->valid)
		inflight_add(1);
	a->conn_key = key;
	a->ptr = sys == IT_SYS_SENDFILE ? 0 : (__u64)IT_ARG2(regs);
	a->count = vectored == 1 ? (__u32)IT_ARG3(regs) : 0;
	a->sys = sys;
	a->dir = dir;
	a->vectored = vectored;
	a->valid = 1;
	return 0;
}

/* The enter dispatcher, with the lifecycle syscalls, is at the end of the file. */

/* ---- exit side: copying payload ------------------------------------------------------------- */

struct emit_ctx {
	__u64 conn_id;
	__u64 ts;
	__u64 pos;      /* stream position of the next byte to emit */
	__u64 cur_base; /* user address of the next byte in the current iovec */
	__u64 cur_len;  /* bytes left in the current iovec */
	__u64 iov;      /* user address of the iovec array (vectored) */
	__u32 remaining; /* bytes still to capture (min(ret, cap) minus what is done) */
	__u32 syscall_len;
	__u32 iov_idx;
	__u32 iov_cnt;
	__u32 tgid;
	__u32 fd;
	__u8 dir;
	__u8 role;
	__u8 sys;
	__u8 failed; /* a reservation or copy failed: the rest is reported as a gap */
};

static __always_inline void fill_data_hdr(struct it_data_event *ev, struct emit_ctx *e, __u32 len,
					  __u32 cap_len, __u8 flags)
{
	ev->hdr.type = IT_EV_DATA;
	ev->hdr.version = IT_ABI_VERSION;
	ev->hdr.tgid = e->tgid;
	ev->hdr.conn_id = e->conn_id;
	ev->hdr.ts_ns = e->ts;
	ev->pos = e->pos;
	ev->len = len;
	ev->cap_len = cap_len;
	ev->syscall_len = e->syscall_len;
	ev->fd = e->fd;
	ev->direction = e->dir;
	ev->role = e->role;
	ev->syscall = e->sys;
	ev->flags = flags;
	ev->_pad = 0;
}

/* Wakeup flags for a submit (shared_maps.bpf.h), counted on this object's stats. */
static __always_inline __u64 submit_flags(void)
{
	__u32 idx = IT_STAT_EVENTS;
	return ring_submit_flags(bpf_map_lookup_elem(&stats, &idx), wakeup_bytes);
}

/* One event of a fixed size class. Returns 0 on success. */
#define EMIT_CLASS(CLASS)                                                                  \
	static __always_inline int emit_class_##CLASS(struct emit_ctx *e, __u64 n)          \
	{                                                                                  \
		struct it_data_event *ev;                                                  \
		ev = bpf_ringbuf_reserve(&events, sizeof(*ev) + CLASS, 0);                 \
		if (!ev)                                                                   \
			return -1;                                                         \
		/* The barrier makes clang bound-check the very register it passes on */ \
		asm volatile("" : "+r"(n));                                                \
		if (n > CLASS)                                                             \
			n = CLASS;                                                         \
		if (bpf_probe_read_user(ev->data, n, (const void *)e->cur_base)) {         \
			/* page not present: report the range as a gap, never as bytes */   \
			fill_data_hdr(ev, e, n, 0, IT_DATA_F_GAP);                          \
			stat_add(IT_STAT_GAP_BYTES, n);                                     \
		} else {                                                                   \
			fill_data_hdr(ev, e, n, n, 0);                                      \
			stat_add(IT_STAT_BYTES, n);                                         \
		}                                                                          \
		bpf_ringbuf_submit(ev, submit_flags());                                    \
		stat_add(IT_STAT_EVENTS, 1);                                               \
		return 0;                                                                  \
	}

EMIT_CLASS(IT_CHUNK_SMALL)
EMIT_CLASS(IT_CHUNK_MEDIUM)
EMIT_CLASS(IT_CHUNK_MAX)

/*
 * The copy state lives in a per-CPU map, not on the stack: a bpf_loop callback given a stack
 * pointer is verified against the caller's exact values, which multiplies the states past the
 * verifier's limit; a map value is just "some scalars", verified once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emit_ctx);
} emit_scratch SEC(".maps");

/*
 * The compatible variant's copy loop is a bounded loop, which the verifier walks once per
 * iteration: its bound covers a 4 MiB --syscall-cap with 64 iovecs. Bytes of a larger syscall
 * past what the steps copied are reported as a gap (counted, never lost silently).
 */
#define COMPAT_EMIT_STEPS ((4u << 20) / IT_CHUNK_MAX + 2 * 64 + 2)

/* Emits one piece (or steps to the next iovec). Returns 1 to stop. */
static __always_inline long emit_piece(struct emit_ctx *e)
{
	if (!e->remaining || e->failed)
		return 1;
	if (!e->cur_len) {
		struct iovec iv = {};
		if (!e->iov || e->iov_idx >= e->iov_cnt || e->iov_idx >= max_iovecs)
			return 1;
		if (bpf_probe_read_user(&iv, sizeof(iv),
					(const void *)(e->iov + (__u64)e->iov_idx * sizeof(iv))))
			return 1;
		e->iov_idx++;
		e->cur_base = (__u64)iv.iov_base;
		e->cur_len = iv.iov_len;
		return 0;
	}
	__u64 n = e->remaining;
	if (n > e->cur_len)
		n = e->cur_len;
	if (n > IT_CHUNK_MAX)
		n = IT_CHUNK_MAX;

	int err;
	if (n <= IT_CHUNK_SMALL)
		err = emit_class_IT_CHUNK_SMALL(e, n);
	else if (n <= IT_CHUNK_MEDIUM)
		err = emit_class_IT_CHUNK_MEDIUM(e, n);
	else
		err = emit_class_IT_CHUNK_MAX(e, n);
	if (err) {
		e->failed = 1;
		return 1;
	}
	e->pos += n;
	e->cur_base += n;
	e->cur_len -= n;
	e->remaining -= n;
	return 0;
}

/* bpf_loop body: one piece of the copy state in emit_scratch. */
static long emit_step(__u32 i, void *arg)
{
	__u32 zero = 0;
	struct emit_ctx *e = bpf_map_lookup_elem(&emit_scratch, &zero);

	return e ? emit_piece(e) : 1;
}

#ifdef IT_VARIANT_COMPAT
/*
 * The compatible loop calls the step through a global function: the verifier checks a global
 * function once on its own (5.6+), instead of once per loop iteration and per exit program.
 */
__noinline int emit_step_global(__u32 i)
{
	return emit_step(i, NULL);
}
#endif

/* The bytes [pos, end) of the syscall that were not captured: one length-only event. */
static __always_inline void emit_gap(struct emit_ctx *e, __u64 end, __u8 flags)
{
	if (end <= e->pos)
		return;
	__u32 len = end - e->pos;
	struct it_data_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		/* Positions still advance: user space sees the hole as a gap. */
		stat_add(IT_STAT_LOST_EVENTS, 1);
		return;
	}
	fill_data_hdr(ev, e, len, 0, flags | IT_DATA_F_GAP);
	bpf_ringbuf_submit(ev, submit_flags());
	stat_add(IT_STAT_GAP_BYTES, len);
}

static __always_inline int exit_io(long ret)
{
	__u32 zero = 0;
	__s64 *n = bpf_map_lookup_elem(&inflight, &zero);
	if (!n || *n <= 0)
		return 0; /* no traced syscall in flight anywhere: the common case */
	__u64 pid_tgid = bpf_get_current_pid_tgid();
#ifndef IT_VARIANT_COMPAT
	struct active_io *a = bpf_task_storage_get(&active, bpf_get_current_task_btf(), 0, 0);
#else
	struct active_io *a = bpf_map_lookup_elem(&active, &pid_tgid);
#endif
	if (!a || !a->valid)
		return 0;
	struct active_io io = *a;
	a->valid = 0;
	inflight_add(-1);
	if (ret <= 0)
		return 0;

	struct conn_state *c = bpf_map_lookup_elem(&conns, &io.conn_key);
	if (!c) {
		/* Closed by another thread meanwhile, or a stale "traced" decision (the state went
		 * with an exited process): decide afresh on the next syscall. */
		bpf_map_delete_elem(&fd_cache, &io.conn_key);
		return 0;
	}

	struct emit_ctx *e = bpf_map_lookup_elem(&emit_scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->conn_id = c->conn_id;
	e->ts = bpf_ktime_get_ns();
	e->dir = io.dir & 1;
#ifndef IT_VARIANT_COMPAT
	e->pos = __sync_fetch_and_add(&c->pos[e->dir], (__u64)ret);
#else
	/* No fetch-and-add before 5.12. Only two threads doing the same direction's syscall on one
	 * fd at the same instant can race here, and their bytes are interleaved for the peer anyway. */
	e->pos = c->pos[e->dir];
	c->pos[e->dir] = e->pos + (__u64)ret;
#endif
	e->syscall_len = ret;
	e->tgid = pid_tgid >> 32;
	e->fd = c->fd;
	e->role = c->role;
	e->sys = io.sys;
	__u64 end = e->pos + (__u64)ret;

	if (io.sys == IT_SYS_SENDFILE) {
		emit_gap(e, end, IT_DATA_F_LENGTH_ONLY);
		return 0;
	}
	e->remaining = ret < syscall_cap ? ret : syscall_cap;
	if (io.vectored == 0) {
		e->cur_base = io.ptr;
		e->cur_len = ret;
	} else if (io.vectored == 1) {
		e->iov = io.ptr;
		e->iov_cnt = io.count;
	} else {
		struct user_msghdr mh = {};
		if (bpf_probe_read_user(&mh, sizeof(mh), (const void *)io.ptr) == 0) {
			e->iov = (__u64)mh.msg_iov;
			e->iov_cnt = mh.msg_iovlen;
		}
	}
	/*
	 * The common case, a plain read/write of at most one piece, is one direct step: a loop
	 * helper costs more than the piece's bookkeeping (~24 ns, bench/RESULTS.md).
	 */
	if (io.vectored == 0 && e->remaining <= IT_CHUNK_MAX) {
		emit_piece(e);
		goto done;
	}
	/* Each piece is one step, plus one step per iovec switch; a short iovec can end a piece
	 * early, so allow two steps per iovec on top of the full-size pieces. */
	__u32 steps = syscall_cap / IT_CHUNK_MAX + 2 * max_iovecs + 2;
#ifndef IT_VARIANT_COMPAT
	bpf_loop(steps, emit_step, NULL, 0);
#else
	/* No bpf_loop before 5.17: a bounded loop (5.3+), see COMPAT_EMIT_STEPS. */
	for (__u32 i = 0; i < COMPAT_EMIT_STEPS && i < steps; i++)
		if (emit_step_global(i))
			break;
#endif
done:
	if (e->failed) {
		stat_add(IT_STAT_LOST_EVENTS, 1);
		if (end > e->pos)
			stat_add(IT_STAT_LOST_BYTES, end - e->pos);
		return 0; /* no event for the rest: the position jump tells user space */
	}
	emit_gap(e, end, 0);
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* A freshly accepted fd must never inherit a stale decision for its number. */
static __always_inline int exit_accept_common(long ret)
{
	if (ret < 0)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	forget_fd(tgid, (__u32)ret);
	return 0;
}

/* ---- process exit --------------------------------------------------------------------------- */

#ifndef IT_VARIANT_COMPAT
struct sweep_ctx {
	__u32 tgid;
	__u32 found;
};

static long sweep_conn(struct bpf_map *map, __u64 *key, struct conn_state *c, struct sweep_ctx *sc)
{
	if ((__u32)(*key >> 32) != sc->tgid)
		return 0;
	emit_conn_event(IT_EV_CLOSE, sc->tgid, c, NULL);
	bpf_map_delete_elem(map, key);
	sc->found++;
	return 0;
}
#else
/*
 * No bpf_for_each_map_elem before 5.13: look up the exiting process's own fd numbers instead
 * (its file table is still there at sched_process_exit), up to the table size, stopping once
 * every connection it owns is found. A bounded loop is verified once per iteration, so one
 * program walks COMPAT_SWEEP_CHUNK fds and tail-calls `sweep_more` for the next chunk; the
 * kernel allows 32 tail calls, so fd numbers up to 33 * 1024 are covered. A connection on a
 * larger fd number stays in `conns` (like a process beyond the `tgid_conns` bound).
 */
#define COMPAT_SWEEP_CHUNK 1024

/* The walk's state lives in a per-CPU map (tail calls keep neither registers nor stack). */
struct sweep_state {
	__s64 owned;
	__s64 found;
	__u32 fd;
	__u32 max_fds;
	__u32 tgid;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sweep_state);
} sweep_scratch SEC(".maps");

/*
 * One fd number of the walk. Returns 1 when the walk is over. A global function, verified once
 * on its own (see emit_step_global), so the chunk loop costs the verifier a few instructions per
 * iteration.
 */
__noinline int sweep_step(void)
{
	__u32 zero = 0;
	struct sweep_state *w = bpf_map_lookup_elem(&sweep_scratch, &zero);
	if (!w || w->fd >= w->max_fds || w->found >= w->owned)
		return 1;
	__u64 key = fd_key(w->tgid, w->fd);
	__u32 tgid = w->tgid;
	w->fd++;
	struct conn_state *c = bpf_map_lookup_elem(&conns, &key);
	if (c) {
		emit_conn_event(IT_EV_CLOSE, tgid, c, NULL);
		bpf_map_delete_elem(&conns, &key);
		w->found++;
	}
	return 0;
}

/* Walks one chunk; returns 1 when the walk is over. */
static __always_inline int sweep_chunk(void)
{
	for (__u32 i = 0; i < COMPAT_SWEEP_CHUNK; i++)
		if (sweep_step())
			return 1;
	return 0;
}

static __always_inline void sweep_finish(struct sweep_state *w)
{
	__u32 tgid = w->tgid;
	bpf_map_delete_elem(&tgid_conns, &tgid);
}

/* The next chunk: loaded, never attached (bare SEC("raw_tp")), reached by tail call only. */
SEC("raw_tp")
int sweep_more(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, int(void *));
} sweep_jmp SEC(".maps") = {
	.values = {[0] = (void *)&sweep_more},
};

SEC("raw_tp")
int sweep_more(void *ctx)
{
	__u32 zero = 0;
	struct sweep_state *w = bpf_map_lookup_elem(&sweep_scratch, &zero);
	if (!w)
		return 0;
	if (!sweep_chunk())
		bpf_tail_call(ctx, &sweep_jmp, 0); /* returns only when out of tail calls */
	sweep_finish(w);
	return 0;
}
#endif

/*
 * An exiting process closes its sockets without close() syscalls: finish its connections here
 * (close events with their final positions), or they would stay in `conns` forever and fill it.
 * Only processes that own traced connections pay for the sweep.
 */
SEC("raw_tracepoint/sched_process_exit")
int on_process_exit(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	if ((__u32)pid_tgid != tgid)
		return 0; /* a thread, not the group leader */
	__s64 *owned = bpf_map_lookup_elem(&tgid_conns, &tgid);
	if (!owned)
		return 0;
#ifndef IT_VARIANT_COMPAT
	struct sweep_ctx sc = {.tgid = tgid};
	bpf_for_each_map_elem(&conns, sweep_conn, &sc, 0);
	bpf_map_delete_elem(&tgid_conns, &tgid);
#else
	__u32 zero = 0;
	struct sweep_state *w = bpf_map_lookup_elem(&sweep_scratch, &zero);
	if (!w)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	w->owned = *owned;
	w->found = 0;
	w->fd = 0;
	w->max_fds = BPF_CORE_READ(task, files, fdt, max_fds);
	w->tgid = tgid;
	if (!sweep_chunk())
		bpf_tail_call(ctx, &sweep_jmp, 0);
	sweep_finish(w);
#endif
	return 0;
}

/* ---- the syscall dispatchers ---------------------------------------------------------------- */

/*
 * Every syscall of every process enters here: the switch sends the unhooked ones away first.
 * The I/O syscalls record their arguments for the exit (enter_io); close() and dup2()/dup3()
 * over an fd end its connection.
 */
IT_SYSCALL_SEC("sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	__u8 sys, dir, vectored = 0;

	switch (id) {
	case IT_NR_READ:
		sys = IT_SYS_READ, dir = IT_DIR_INGRESS;
		break;
	case IT_NR_WRITE:
		sys = IT_SYS_WRITE, dir = IT_DIR_EGRESS;
		break;
	case IT_NR_RECVFROM:
		sys = IT_SYS_RECVFROM, dir = IT_DIR_INGRESS;
		break;
	case IT_NR_SENDTO:
		sys = IT_SYS_SENDTO, dir = IT_DIR_EGRESS;
		break;
	case IT_NR_READV:
		sys = IT_SYS_READV, dir = IT_DIR_INGRESS, vectored = 1;
		break;
	case IT_NR_WRITEV:
		sys = IT_SYS_WRITEV, dir = IT_DIR_EGRESS, vectored = 1;
		break;
	case IT_NR_RECVMSG:
		sys = IT_SYS_RECVMSG, dir = IT_DIR_INGRESS, vectored = 2;
		break;
	case IT_NR_SENDMSG:
		sys = IT_SYS_SENDMSG, dir = IT_DIR_EGRESS, vectored = 2;
		break;
	case IT_NR_SENDFILE:
		/* sendfile(out_fd, in_fd, offset, count): the payload never passes through user
		 * memory, so only its length is reported (a gap of that length, egress). */
		sys = IT_SYS_SENDFILE, dir = IT_DIR_EGRESS;
		break;
	case IT_NR_CLOSE:
		if (!current_is_ia32())
			forget_fd(bpf_get_current_pid_tgid() >> 32, (__u32)IT_ARG1(regs));
		return 0;
	case IT_NR_DUP2: /* dup2/dup3 close newfd implicitly */
	case IT_NR_DUP3:
		if (!current_is_ia32())
			forget_fd(bpf_get_current_pid_tgid() >> 32, (__u32)IT_ARG2(regs));
		return 0;
	case IT_NR_CONNECT: /* the remote end is only known after connect(): decide again */
		if (!current_is_ia32())
			forget_decision(bpf_get_current_pid_tgid() >> 32, (__u32)IT_ARG1(regs));
		return 0;
	default:
		return 0;
	}
	if (current_is_ia32())
		return 0;
	return enter_io(regs, sys, dir, vectored);
}

/*
 * Every syscall's exit: the I/O syscalls copy their payload (exit_io returns at once when no
 * traced syscall is in flight anywhere); a freshly accepted fd must never inherit a stale
 * decision for its number.
 */
IT_SYSCALL_SEC("sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	switch (IT_EXIT_NR(regs)) {
	case IT_NR_READ:
	case IT_NR_WRITE:
	case IT_NR_RECVFROM:
	case IT_NR_SENDTO:
	case IT_NR_READV:
	case IT_NR_WRITEV:
	case IT_NR_RECVMSG:
	case IT_NR_SENDMSG:
	case IT_NR_SENDFILE:
		return exit_io(ret);
	case IT_NR_ACCEPT:
	case IT_NR_ACCEPT4:
		if (!current_is_ia32())
			exit_accept_common(ret);
		return 0;
	default:
		return 0;
	}
}
