/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers rr and wrr: the next entry of the service's cycle (built in
 * Go: IPVS's order, wrr's interleaved weighted cycle). */
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

#endif /* XLB_LB_RR_H */
