/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers lc and wlc: the real server with the least (weighted)
 * connections, counted in xlb_be_act_v1, scanned over the service slot's
 * candidates (xlb_cands_v1: ids and weights in one value, written by the
 * control plane with the slot). The scan runs XLB_LC_CHUNK candidates per
 * bpf_loop step, unrolled: the verifier checks one step, not every
 * iteration of a loop (a plain loop over 256 candidates did not load on
 * 6.1 within a minute), and a step costs one callback per chunk instead of
 * one per candidate. Overloaded real servers are passed over
 * (lb_pick_lc). */
#ifndef XLB_LB_LC_H
#define XLB_LB_LC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "svc.h"

#ifndef XLB_LC_CHUNK
#define XLB_LC_CHUNK 8
#endif
_Static_assert(XLB_MAX_BACKENDS_PER_SVC % XLB_LC_CHUNK == 0, "chunks cover the candidates");

struct lb_lc_ctx {
	__u32 cfg_idx;
	__u32 weighted;
	__u32 best;
	__u32 pad;
	__u64 best_load;
	__u64 best_weight;
};

static long lb_lc_step(__u32 i, struct lb_lc_ctx *c)
{
	struct xlb_cands *cs = bpf_map_lookup_elem(&xlb_cands_v1, &c->cfg_idx);
	__u32 base = i * XLB_LC_CHUNK, n, j;

	if (!cs)
		return 1;
	n = cs->n;
	if (base >= n || base >= XLB_MAX_BACKENDS_PER_SVC)
		return 1;
#pragma unroll
	for (j = 0; j < XLB_LC_CHUNK; j++) {
		__u32 k = base + j, id;
		__u64 load, w;
		__s64 *act;

		if (k >= n || k >= XLB_MAX_BACKENDS_PER_SVC)
			return 1;
		id = cs->c[k].id;
		w = c->weighted ? cs->c[k].weight : 1;
		if (!w)
			continue;
		act = bpf_map_lookup_elem(&xlb_be_act_v1, &id);
		load = act && *act > 0 ? *act : 0;
		/* load/w < best_load/best_weight; the first of equals wins, as IPVS. */
		if (c->best == (__u32)-1 || load * c->best_weight < c->best_load * w) {
			c->best = id;
			c->best_load = load;
			c->best_weight = w;
		}
	}
	return 0;
}

/* lb_lc_step_ovl is one candidate of the scan that passes over overloaded
 * real servers (those with connection thresholds, dest.h): run only when
 * the chunked scan picked an overloaded one, one candidate per step (a
 * lookup and a branch more per candidate in the unrolled chunks took the
 * verifier past its million instructions). */
static long lb_lc_step_ovl(__u32 i, struct lb_lc_ctx *c)
{
	struct xlb_cands *cs = bpf_map_lookup_elem(&xlb_cands_v1, &c->cfg_idx);
	struct xlb_backend *be;
	__u64 load, w;
	__s64 *act;
	__u32 id;

	if (!cs || i >= cs->n || i >= XLB_MAX_BACKENDS_PER_SVC)
		return 1;
	id = cs->c[i].id;
	w = c->weighted ? cs->c[i].weight : 1;
	if (!w)
		return 0;
	if (cs->c[i].thresh) {
		be = bpf_map_lookup_elem(&xlb_backends_v1, &id);
		if (!be || be->overload)
			return 0;
	}
	act = bpf_map_lookup_elem(&xlb_be_act_v1, &id);
	load = act && *act > 0 ? *act : 0;
	if (c->best == (__u32)-1 || load * c->best_weight < c->best_load * w) {
		c->best = id;
		c->best_load = load;
		c->best_weight = w;
	}
	return 0;
}

/* lb_pick_lc picks the real server with the least (weighted) connections
 * among the candidates of configuration cfg_idx, passing over overloaded
 * ones, as ip_vs_lc.c and ip_vs_wlc.c do: the chunked scan first; if its
 * pick is overloaded, the scan again a candidate at a time, reading the
 * overload flag of those with thresholds. Not inlined, as every scanning
 * scheduler: its context lives in its own frame, not in the new-flow
 * path's. */
static __noinline __u32 lb_pick_lc(const struct xlb_svc *svc, __u32 cfg_idx)
{
	struct lb_lc_ctx c = {
		.cfg_idx = cfg_idx,
		.weighted = svc->sched == XLB_SCHED_WLC,
		.best = (__u32)-1,
	};
	struct xlb_backend *be;
	__u32 id;

	bpf_loop(XLB_MAX_BACKENDS_PER_SVC / XLB_LC_CHUNK, lb_lc_step, &c, 0);
	id = c.best;
	be = bpf_map_lookup_elem(&xlb_backends_v1, &id);
	if (be && be->overload) {
		c.best = (__u32)-1;
		c.best_load = 0;
		c.best_weight = 0;
		bpf_loop(XLB_MAX_BACKENDS_PER_SVC, lb_lc_step_ovl, &c, 0);
	}
	return c.best;
}

/* lb_sched_loaded reports whether a scheduler reads the backends' load:
 * its SYNs are counted in it at once (a burst of SYNs spreads before their
 * handshakes complete). */
static __always_inline int lb_sched_loaded(__u8 sched)
{
	return sched == XLB_SCHED_LC || sched == XLB_SCHED_WLC;
}

#endif /* XLB_LB_LC_H */
