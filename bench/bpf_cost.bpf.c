// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Bench-only: what each helper and map operation of the captured path (bpf/capture.bpf.c) costs
 * on this kernel (bench/bpf_cost.cc, docs/performance.md "Profile of the captured path").
 *
 * Every program is on the raw sys_exit tracepoint, like capture.bpf.c's exit side. For any thread
 * but the driver's measuring thread it returns at once; for that thread it runs one operation
 * COST_REPS times (unrolled). The driver attaches one program at a time, runs a loop of getppid()
 * and reads run_time_ns from BPF_ENABLE_STATS; `op_base` (the same guard, no operation) is
 * subtracted, so a figure is the operation alone, warm (the same map value, the same user bytes,
 * on one CPU), which is the cheapest it can be.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "bpf/infertap_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define COST_REPS 8

/* Set by the driver. */
__u32 target_pid = 0; /* the measuring thread's id */
__u64 ubuf = 0;       /* a 4 KiB user buffer of the driver */
__u64 sink = 0;       /* results land here so nothing is optimised away */
__u64 counter = 0;    /* fetch-add target */
__u64 ring_fail = 0;  /* reservations that failed (the figure would be too low) */

struct scratch {
	char buf[4096];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* Sized like capture.bpf.c's struct emit_ctx. */
struct ctx88 {
	__u64 w[11];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ctx88);
} ctx_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} pstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} arr SEC(".maps");

/* Like `conns` (a plain hash, 8-byte key, 32-byte value); the driver inserts key 1. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ctx88);
} hash SEC(".maps");

/* Like `fd_cache` (LRU hash, 8-byte key, 16-byte value); the driver inserts key 1. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u64);
	__type(value, __u64[2]);
} lru SEC(".maps");

/* Like `active` (task storage). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64[3]);
} tstore SEC(".maps");

/* Drained by the driver on the other CPU, like the agent drains `events`. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);
} ring SEC(".maps");

#define OP(NAME, BODY)                                                               \
	SEC("raw_tracepoint/sys_exit")                                               \
	int op_##NAME(struct bpf_raw_tracepoint_args *ctx)                           \
	{                                                                            \
		if ((__u32)bpf_get_current_pid_tgid() != target_pid)                 \
			return 0;                                                    \
		__u32 zero = 0;                                                      \
		__u64 acc = 0;                                                       \
		_Pragma("clang loop unroll(full)") for (int i = 0; i < COST_REPS; i++) \
		{                                                                    \
			BODY;                                                        \
			asm volatile("" : "+r"(acc)::"memory");                      \
		}                                                                    \
		sink = acc + zero;                                                   \
		return 0;                                                            \
	}

/* The guard and the loop skeleton alone: subtracted from every other figure. */
OP(base, acc += i)

OP(ktime_get_ns, acc += bpf_ktime_get_ns())
OP(get_current_pid_tgid, acc += bpf_get_current_pid_tgid())
/* current_is_ia32(): bpf_get_current_task + a CO-RE read (bpf_probe_read_kernel) of the status. */
OP(ia32_check, {
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	acc += BPF_CORE_READ(t, thread_info.status);
})
/* IT_ARG1/IT_EXIT_NR: one CO-RE read of a pt_regs field (bpf_probe_read_kernel, 8 bytes). */
OP(regs_core_read, {
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	acc += BPF_CORE_READ(regs, orig_ax);
})
OP(array_lookup, {
	__s64 *n = bpf_map_lookup_elem(&arr, &zero);
	if (n)
		acc += *n;
})
OP(atomic_add_array, {
	__s64 *n = bpf_map_lookup_elem(&arr, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
})
OP(fetch_add_global, acc += __sync_fetch_and_add(&counter, 1))
OP(percpu_stat_add, {
	__u32 idx = i & 7;
	__u64 *p = bpf_map_lookup_elem(&pstats, &idx);
	if (p)
		*p += 1;
})
OP(hash_lookup, {
	__u64 key = 1;
	struct ctx88 *v = bpf_map_lookup_elem(&hash, &key);
	if (v)
		acc += v->w[0];
})
OP(lru_hash_lookup, {
	__u64 key = 1;
	__u64 *v = bpf_map_lookup_elem(&lru, &key);
	if (v)
		acc += v[0];
})
OP(task_storage_get, {
	__u64 *v = bpf_task_storage_get(&tstore, bpf_get_current_task_btf(), 0,
					BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (v)
		acc += v[0];
})
OP(scratch_lookup, {
	struct ctx88 *e = bpf_map_lookup_elem(&ctx_scratch, &zero);
	if (e)
		acc += e->w[1];
})
OP(scratch_lookup_memset88, {
	struct ctx88 *e = bpf_map_lookup_elem(&ctx_scratch, &zero);
	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->w[1] = acc;
	}
})
OP(probe_read_user_64, {
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (s)
		acc += bpf_probe_read_user(s->buf, 64, (const void *)ubuf);
})
OP(probe_read_user_4k, {
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (s)
		acc += bpf_probe_read_user(s->buf, 4096, (const void *)ubuf);
})
OP(ringbuf_reserve_submit_64, {
	struct it_data_event *ev = bpf_ringbuf_reserve(&ring, sizeof(*ev) + IT_CHUNK_SMALL, 0);
	if (ev) {
		ev->len = 64;
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	} else {
		__sync_fetch_and_add(&ring_fail, 1);
	}
})
OP(ringbuf_reserve_submit_4k, {
	struct it_data_event *ev = bpf_ringbuf_reserve(&ring, sizeof(*ev) + IT_CHUNK_MAX, 0);
	if (ev) {
		ev->len = 4096;
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	} else {
		__sync_fetch_and_add(&ring_fail, 1);
	}
})
/* reserve + copy 64 B of user memory into the record + submit: one 64 B data event's core. */
OP(ringbuf_event_64_with_copy, {
	struct it_data_event *ev = bpf_ringbuf_reserve(&ring, sizeof(*ev) + IT_CHUNK_SMALL, 0);
	if (ev) {
		if (bpf_probe_read_user(ev->data, 64, (const void *)ubuf))
			ev->flags = 1;
		ev->len = 64;
		bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	} else {
		__sync_fetch_and_add(&ring_fail, 1);
	}
})
OP(ringbuf_query_avail, acc += bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA))

/* emit_step's shape: the callback looks up the per-CPU scratch; two calls (emit, then stop). */
static long loop_cb(__u32 i, void *arg)
{
	__u32 zero = 0;
	struct ctx88 *e = bpf_map_lookup_elem(&ctx_scratch, &zero);
	if (!e)
		return 1;
	e->w[0] += i;
	return i >= 1;
}
OP(bpf_loop_2_callbacks, acc += bpf_loop(200, loop_cb, NULL, 0))
/* The same two callback bodies called directly (what skipping bpf_loop leaves). */
OP(direct_2_callbacks, {
	acc += loop_cb(0, NULL);
	acc += loop_cb(1, NULL);
})
OP(get_current_cgroup_id, acc += bpf_get_current_cgroup_id())

/* Replacements measured for the modern variant (5.15+ helpers, BTF pointers: direct loads). */
OP(task_pt_regs_direct_read, {
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	acc += regs->orig_ax;
})
OP(task_btf_status_direct_read, acc += bpf_get_current_task_btf()->thread_info.status)
