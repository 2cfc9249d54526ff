/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers sed and nq (net/netfilter/ipvs/ip_vs_sed.c, ip_vs_nq.c), over
 * the service's table in configuration order, passing over overloaded
 * real servers and those of weight 0:
 *  - sed: the least (activeconns + 1) / weight, compared as
 *    (a + 1) * w' > (a' + 1) * w; the first of equals wins;
 *  - nq: the first real server with no active connection, else as sed.
 * Only active connections count (TCP ESTABLISHED: dest.h). */
#ifndef XLB_LB_SED_H
#define XLB_LB_SED_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "svc.h"

struct lb_sed_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__u32 nq;
	__u32 best;
	__u64 best_oh; /* activeconns + 1 of best */
	__u64 best_w;
};

static long lb_sed_step(__u32 i, struct lb_sed_ctx *c)
{
	struct xlb_be_conns *conns;
	struct xlb_backend *be;
	__u64 active, oh, w;
	__u32 id;

	if (i >= c->n)
		return 1;
	id = lb_table_get(c->table, i);
	be = lb_backend(id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED) || be->overload || !be->weight)
		return 0;
	conns = bpf_map_lookup_elem(&xlb_be_conns_v1, &id);
	active = conns && conns->active > 0 ? conns->active : 0;
	if (c->nq && !active) {
		/* ip_vs_nq_schedule: an idle real server at once. */
		c->best = id;
		return 1;
	}
	oh = active + 1;
	w = be->weight;
	if (c->best == (__u32)-1 || c->best_oh * w > oh * c->best_w) {
		c->best = id;
		c->best_oh = oh;
		c->best_w = w;
	}
	return 0;
}

/* lb_pick_sed picks by sed's or nq's rule. */
static __noinline __u32 lb_pick_sed(const struct xlb_svc *svc, void *table)
{
	struct lb_sed_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.nq = svc->sched == XLB_SCHED_NQ,
		.best = (__u32)-1,
	};

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_sed_step, &c, 0);
	return c.best;
}

#endif /* XLB_LB_SED_H */
