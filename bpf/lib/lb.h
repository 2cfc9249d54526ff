/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Scheduling a new flow: persistence, then the service's scheduler, each
 * in a header of its own (lb_rr.h, lb_lc.h, lb_sed.h, lb_fo.h, lb_twos.h,
 * lb_hash.h). A new scheduler is a value of enum xlb_sched (consts.h), its
 * header with its pick function, a case below, and its entry in Go's
 * dataplane.SchedulerTable. Every scheduler passes over overloaded real
 * servers (over their connection thresholds: dest.h), as IPVS's do. */
#ifndef XLB_LB_H
#define XLB_LB_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "svc.h"
#include "lb_rr.h"
#include "lb_lc.h"
#include "lb_sed.h"
#include "lb_fo.h"
#include "lb_twos.h"
#include "lb_hash.h"

/* lb_pickable reports whether a backend the scheduler took from the
 * configuration it read may take the flow: schedulable, or retired since.
 * A program that read a service's slot just before the control plane
 * flipped it schedules from the previous configuration until it returns
 * (each new flow sees one configuration whole), and the control plane
 * retires the real servers the new one dropped right after the flip: such
 * a flow goes where the configuration it read said, as IPVS sends a flow
 * scheduled before ipvsadm -d returned. Only a previous slot names a
 * retired backend; persistence does not take one (its own check). */
static __always_inline int lb_pickable(const struct xlb_backend *be)
{
	return be->flags & (XLB_BE_F_SCHED | XLB_BE_F_RETIRED);
}

/* xlb_schedule picks a real server for a flow without a connection entry
 * of service svc (configuration cfg_idx). A new flow (TCP SYN, UDP) goes
 * through the service's scheduler; any other packet (e.g. after a failover
 * to this director) through the consistent hash, so that two directors
 * with the same configuration agree for sh and mh services. Persistence
 * comes first. p->hash is the 5-tuple's hash (mh): computed once per
 * packet. Returns the backend's id, or (__u32)-1 for none.
 *
 * A global function: the verifier checks it once, with unknown arguments
 * (a static one is checked again at every call, with the caller's state,
 * and the schedulers' scans made the program cost the verifier close to its
 * million instructions). Its arguments are what global functions may take
 * since 5.12 (scalars, pointers to memory of a known size that may be
 * NULL); it returns a scalar, as they must. */
__noinline __u32 xlb_schedule(const struct xlb_svc *svc, __u32 cfg_idx, const struct xlb_pkt *p, int is_new,
			      __u64 now)
{
	const struct xlb_flow *f;
	struct xlb_persist_key pk = {};
	struct xlb_persist *pe = NULL;
	struct xlb_backend *be;
	int sched;
	void *table;
	__u32 id;

	if (!svc || !p)
		return (__u32)-1;
	f = &p->flow;
	sched = svc->sched;
	if (!is_new && sched != XLB_SCHED_SH)
		sched = XLB_SCHED_MH;
	if (svc->persist_timeout) {
		__builtin_memcpy(pk.addr, f->src, sizeof(pk.addr));
		pk.svc = svc->id;
		pk.family = f->family;
		pe = bpf_map_lookup_elem(&xlb_persist_v1, &pk);
		if (pe && !lb_idle(now, pe->atime, (__u64)svc->persist_timeout * 1000000000ULL)) {
			id = pe->backend;
			be = lb_backend(id, svc->id);
			if (be && (be->flags & XLB_BE_F_SCHED)) {
				pe->atime = now;
				return id;
			}
		}
	}

	table = lb_table(cfg_idx);
	if (!table || !svc->table_len)
		return (__u32)-1;
	switch (sched) {
	case XLB_SCHED_RR:
	case XLB_SCHED_WRR:
		id = lb_pick_rr(svc, table);
		break;
	case XLB_SCHED_LC:
	case XLB_SCHED_WLC:
		id = lb_pick_lc(svc, cfg_idx);
		break;
	case XLB_SCHED_SED:
	case XLB_SCHED_NQ:
		id = lb_pick_sed(svc, table);
		break;
	case XLB_SCHED_FO:
	case XLB_SCHED_OVF:
		id = lb_pick_fo(svc, table);
		break;
	case XLB_SCHED_TWOS:
		id = lb_pick_twos(svc, table);
		break;
	default:
		id = lb_pick_hash(svc, sched, table, f, p->hash);
		break;
	}
	be = lb_backend(id, svc->id);
	if (be && be->overload && is_new) {
		/* rr and wrr go on along their cycle; sh and mh have no other
		 * real server for the flow (IPVS's without their fallback flag);
		 * the scanning schedulers never pick an overloaded one. */
		if (sched == XLB_SCHED_RR || sched == XLB_SCHED_WRR) {
			id = lb_rr_skip(svc, table);
			be = lb_backend(id, svc->id);
		} else {
			be = NULL;
		}
	}
	if (!be || !lb_pickable(be))
		return (__u32)-1;

	if (svc->persist_timeout) {
		struct xlb_persist v = { .atime = now, .backend = id };

		bpf_map_update_elem(&xlb_persist_v1, &pk, &v, BPF_ANY);
	}
	return id;
}

/* lb_schedule is xlb_schedule returning the backend (its entry looked up
 * again: a global function returns no pointer), or NULL. */
static __always_inline struct xlb_backend *lb_schedule(const struct xlb_svc *svc, __u32 cfg_idx,
						       const struct xlb_pkt *p, int is_new, __u64 now,
						       __u32 *backend_id)
{
	__u32 id = xlb_schedule(svc, cfg_idx, p, is_new, now);
	struct xlb_backend *be = lb_backend(id, svc->id);

	if (!be || !lb_pickable(be))
		return NULL;
	*backend_id = id;
	return be;
}

#endif /* XLB_LB_H */
