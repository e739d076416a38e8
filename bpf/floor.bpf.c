// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Empty programs on exactly the hooks capture.bpf.c uses (the raw sys_enter/sys_exit
 * tracepoints and sched_process_exit). Only for bench/: attaching them measures what the hooks
 * alone cost (docs/performance.md "the floor"), so infertap's own cost can be told apart from
 * the kernel's tracepoint machinery.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("raw_tracepoint/sys_enter")
int floor_sys_enter(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int floor_sys_exit(void *ctx)
{
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int floor_process_exit(void *ctx)
{
	return 0;
}
