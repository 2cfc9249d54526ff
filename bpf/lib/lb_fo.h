/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers fo and ovf (net/netfilter/ipvs/ip_vs_fo.c, ip_vs_ovf.c): the
 * real server of the highest weight, the first of equals in configuration
 * order, among those not overloaded and of a weight above 0; ovf takes only
 * those whose active connections (TCP ESTABLISHED: dest.h) are at most
 * their weight, so that flows overflow to the next weight down. */
#ifndef XLB_LB_FO_H
#define XLB_LB_FO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "svc.h"

struct lb_fo_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__u32 ovf;
	__u32 best;
	__u32 best_w;
};

static long lb_fo_step(__u32 i, struct lb_fo_ctx *c)
{
	struct xlb_backend *be;
	__u32 id, w;

	if (i >= c->n)
		return 1;
	id = lb_table_get(c->table, i);
	be = lb_backend(id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED) || be->overload)
		return 0;
	w = be->weight;
	if (!w)
		return 0;
	if (c->ovf) {
		struct xlb_be_conns *conns = bpf_map_lookup_elem(&xlb_be_conns_v1, &id);

		if (conns && conns->active > (__s64)w)
			return 0;
	}
	if (c->best == (__u32)-1 || w > c->best_w) {
		c->best = id;
		c->best_w = w;
	}
	return 0;
}

/* lb_pick_fo picks by fo's or ovf's rule. */
static __noinline __u32 lb_pick_fo(const struct xlb_svc *svc, void *table)
{
	struct lb_fo_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.ovf = svc->sched == XLB_SCHED_OVF,
		.best = (__u32)-1,
	};

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_fo_step, &c, 0);
	return c.best;
}

#endif /* XLB_LB_FO_H */
