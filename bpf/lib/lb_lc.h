/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers lc and wlc: the real server with the least (weighted)
 * connections, counted in xlb_be_act_v1, scanned over the service's table;
 * an overloaded one is passed over, as ip_vs_lc.c and ip_vs_wlc.c do. */
#ifndef XLB_LB_LC_H
#define XLB_LB_LC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "svc.h"

struct lb_lc_ctx {
	void *table;
	__u32 svc;
	__u32 n;
	__u32 weighted;
	__u32 best;
	__u64 best_load;
	__u64 best_weight;
};

static long lb_lc_step(__u32 i, struct lb_lc_ctx *c)
{
	struct xlb_backend *be;
	__u64 load, w;
	__s64 *act;
	__u32 id;

	if (i >= c->n)
		return 1;
	id = lb_table_get(c->table, i);
	be = lb_backend(id, c->svc);
	if (!be || !(be->flags & XLB_BE_F_SCHED) || be->overload)
		return 0;
	act = bpf_map_lookup_elem(&xlb_be_act_v1, &id);
	load = act && *act > 0 ? *act : 0;
	w = c->weighted ? be->weight : 1;
	if (!w)
		return 0;
	/* load/w < best_load/best_weight; the first of equals wins, as IPVS. */
	if (c->best == (__u32)-1 || load * c->best_weight < c->best_load * w) {
		c->best = id;
		c->best_load = load;
		c->best_weight = w;
	}
	return 0;
}

/* lb_pick_lc picks the real server with the least (weighted) connections.
 * Not inlined, as every scanning scheduler: its context lives in its own
 * frame, not in the new-flow path's. */
static __noinline __u32 lb_pick_lc(const struct xlb_svc *svc, void *table)
{
	struct lb_lc_ctx c = {
		.table = table,
		.svc = svc->id,
		.n = svc->table_len,
		.weighted = svc->sched == XLB_SCHED_WLC,
		.best = (__u32)-1,
	};

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_lc_step, &c, 0);
	return c.best;
}

#endif /* XLB_LB_LC_H */
