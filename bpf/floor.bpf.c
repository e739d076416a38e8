// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Empty programs on exactly the hooks capture.bpf.c uses. Only for bench/: attaching them
 * measures what the hooks alone cost (docs/performance.md "the floor"), so infertap's own cost can be told
 * apart from the kernel's tracepoint machinery.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EMPTY(kind, name)                                             \
	SEC("tracepoint/syscalls/sys_" #kind "_" #name)               \
	int floor_##kind##_##name(void *ctx)                          \
	{                                                             \
		return 0;                                             \
	}

EMPTY(enter, read)
EMPTY(exit, read)
EMPTY(enter, write)
EMPTY(exit, write)
EMPTY(enter, recvfrom)
EMPTY(exit, recvfrom)
EMPTY(enter, sendto)
EMPTY(exit, sendto)
EMPTY(enter, readv)
EMPTY(exit, readv)
EMPTY(enter, writev)
EMPTY(exit, writev)
EMPTY(enter, recvmsg)
EMPTY(exit, recvmsg)
EMPTY(enter, sendmsg)
EMPTY(exit, sendmsg)
EMPTY(enter, sendfile64)
EMPTY(exit, sendfile64)
EMPTY(enter, close)
EMPTY(enter, dup2)
EMPTY(enter, dup3)
EMPTY(enter, connect)
EMPTY(exit, accept)
EMPTY(exit, accept4)

SEC("tracepoint/sched/sched_process_exit")
int floor_process_exit(void *ctx)
{
	return 0;
}
