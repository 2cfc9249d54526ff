/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Counters: packets by verdict, events, and the packets, bytes and
 * connections of services and backends. */
#ifndef XLB_COUNTERS_H
#define XLB_COUNTERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"

/* lb_count_verdict counts a packet under its verdict. */
static __always_inline void lb_count_verdict(__u32 verdict, __u32 len)
{
	struct xlb_verdict_stats *s = bpf_map_lookup_elem(&xlb_verdicts_v1, &verdict);

	if (s) {
		s->packets++;
		s->bytes += len;
	}
}

/* lb_event counts an event. */
static __always_inline void lb_event(__u32 ev)
{
	__u64 *n = bpf_map_lookup_elem(&xlb_events_v1, &ev);

	if (n)
		(*n)++;
}

/* lb_count adds a packet (and a connection if new) to a service's or a
 * backend's counters. */
static __always_inline void lb_count(void *map, __u32 id, __u32 len, int new_conn, int out)
{
	struct xlb_stats *s = bpf_map_lookup_elem(map, &id);

	if (!s)
		return;
	if (out) {
		s->packets_out++;
		s->bytes_out += len;
	} else {
		s->packets++;
		s->bytes += len;
	}
	if (new_conn)
		s->conns++;
}

#endif /* XLB_COUNTERS_H */
