/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers rr and wrr: the next entry of the service's cycle (built in
 * Go: IPVS's order, wrr's interleaved weighted cycle); an overloaded real
 * server is passed over for the next entry, as ip_vs_rr.c and ip_vs_wrr.c
 * go on along their lists. */
#ifndef XLB_LB_RR_H
#define XLB_LB_RR_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "maps.h"
#include "svc.h"

/* lb_pick_rr takes the next entry of the (weighted) round-robin cycle. */
static __always_inline __u32 lb_pick_rr(const struct xlb_svc *svc, void *table)
{
	__u32 id = svc->id;
	__u64 *pos = bpf_map_lookup_elem(&xlb_rr_v1, &id);
	__u64 n;

	if (!pos)
		return (__u32)-1;
	n = __sync_fetch_and_add(pos, 1);
	return lb_table_get(table, n % svc->table_len);
}

struct lb_rr_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__u64 start;
	__u32 found;
	__u32 steps;
};

static long lb_rr_step(__u32 i, struct lb_rr_ctx *c)
{
	struct xlb_backend *be;
	__u32 id;

	if (i >= c->n)
		return 1;
	id = lb_table_get(c->table, (c->start + i) % c->n);
	be = lb_backend(id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED) || be->overload)
		return 0;
	c->found = id;
	c->steps = i + 1;
	return 1;
}

/* lb_rr_skip is lb_pick_rr's next entry after an overloaded real server:
 * the first of the cycle, from the current position, that may take the
 * flow; the position moves past it, so the next flow goes on from there.
 * At most the whole cycle is walked, as IPVS walks its list. */
static __noinline __u32 lb_rr_skip(const struct xlb_svc *svc, void *table)
{
	__u32 id = svc->id;
	__u64 *pos = bpf_map_lookup_elem(&xlb_rr_v1, &id);
	struct lb_rr_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.found = (__u32)-1,
	};

	if (!pos || !c.n)
		return (__u32)-1;
	c.start = *pos;
	bpf_loop(XLB_MAX_RR_CYCLE, lb_rr_step, &c, 0);
	if (c.found != (__u32)-1)
		__sync_fetch_and_add(pos, c.steps);
	return c.found;
}

#endif /* XLB_LB_RR_H */
