/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The program's clock, advanced by the control plane (xlb_clock), and
 * the global settings (idle timeouts, configuration generation). */
#ifndef XLB_CLOCK_H
#define XLB_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "maps.h"

/* Coarse clock ticks of about one second: atime is rewritten only when it
 * changes, so an established flow writes its entry once a second at most. */
#define XLB_ATIME_SHIFT 30

/* lb_globals returns the global settings. */
static __always_inline struct xlb_globals *lb_globals(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_globals_v1, &zero);
}

/* lb_now reads the program's clock (ns). */
static __always_inline __u64 lb_now(void)
{
	__u32 zero = 0;
	struct xlb_clock *c = bpf_map_lookup_elem(&xlb_clock_v1, &zero);

	return c ? c->now : 0;
}

/* lb_idle reports whether more than timeout ns passed since atime. */
static __always_inline int lb_idle(__u64 now, __u64 atime, __u64 timeout)
{
	return now > atime && now - atime > timeout;
}

#endif /* XLB_CLOCK_H */
