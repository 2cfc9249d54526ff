/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Scheduler twos, the power of two choices (net/netfilter/ipvs/ip_vs_twos.c),
 * over the service's table in configuration order, passing over overloaded
 * real servers and those of weight 0:
 *  - T is the sum of the weights; r1 and r2 are random in [0, T] (T + 1
 *    values, so the first real server takes one more than its weight);
 *  - walking the list, each real server's weight is taken off r1 and r2;
 *    the first where r1 drops to 0 or below is choice 1, likewise choice 2;
 *  - choice 2 wins only if it is less loaded per unit of weight:
 *    w2 * overhead1 > w1 * overhead2, where overhead is IPVS's
 *    ip_vs_dest_conn_overhead, activeconns * 256 + inactconns (dest.h).
 * The random numbers are bpf_get_prandom_u32() modulo T + 1, as IPVS's are
 * prandom_u32() modulo T + 1. */
#ifndef XLB_LB_TWOS_H
#define XLB_LB_TWOS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "svc.h"

struct lb_twos_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__s64 r1; /* first pass: the sum of the weights */
	__s64 r2;
	__u32 c1;
	__u32 c2;
};

/* lb_twos_be returns the weight of table entry i if it may take the flow
 * (0 otherwise), its backend id in *id. */
static __always_inline __u32 lb_twos_be(struct lb_twos_ctx *c, __u32 i, __u32 *id)
{
	struct xlb_backend *be;

	*id = lb_table_get(c->table, i);
	be = lb_backend(*id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED) || be->overload)
		return 0;
	return be->weight;
}

/* lb_twos_load is a chosen real server's overhead times the other's
 * weight: twos compares overhead1 * w2 with overhead2 * w1. The ids are
 * read where they are (the context), not copied to the stack. */
static __always_inline __u64 lb_twos_load(const __u32 *id, const __u32 *other)
{
	struct xlb_backend *be = bpf_map_lookup_elem(&xlb_backends_v1, other);
	struct xlb_be_conns *c = bpf_map_lookup_elem(&xlb_be_conns_v1, id);
	__u64 oh;

	if (!be || !c)
		return 0;
	oh = ((c->active > 0 ? c->active : 0) << 8) + (c->inactive > 0 ? c->inactive : 0);
	return oh * be->weight;
}

static long lb_twos_sum(__u32 i, struct lb_twos_ctx *c)
{
	__u32 id;

	if (i >= c->n)
		return 1;
	c->r1 += lb_twos_be(c, i, &id);
	return 0;
}

static long lb_twos_step(__u32 i, struct lb_twos_ctx *c)
{
	__u32 id, w;

	if (i >= c->n)
		return 1;
	w = lb_twos_be(c, i, &id);
	if (!w)
		return 0;
	c->r1 -= w;
	c->r2 -= w;
	if (c->r1 <= 0 && c->c1 == (__u32)-1)
		c->c1 = id;
	if (c->r2 <= 0 && c->c2 == (__u32)-1)
		c->c2 = id;
	if (c->c1 == (__u32)-1 || c->c2 == (__u32)-1)
		return 0;
	/* Both chosen: choice 2 wins if less loaded per unit of weight. */
	if (lb_twos_load(&c->c1, &c->c2) > lb_twos_load(&c->c2, &c->c1))
		c->c1 = c->c2;
	return 1;
}

/* lb_pick_twos picks by twos's rule. */
static __noinline __u32 lb_pick_twos(const struct xlb_svc *svc, void *table)
{
	struct lb_twos_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.c1 = (__u32)-1,
		.c2 = (__u32)-1,
	};
	__u64 total;

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_twos_sum, &c, 0);
	if (c.r1 <= 0)
		return (__u32)-1;
	total = c.r1 + 1;
	c.r1 = bpf_get_prandom_u32() % total;
	c.r2 = bpf_get_prandom_u32() % total;
	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_twos_step, &c, 0);
	return c.c1;
}

#endif /* XLB_LB_TWOS_H */
