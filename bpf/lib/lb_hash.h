/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Schedulers sh and mh: consistent hashing on the service's weighted
 * Maglev table (built in Go), of the source address (sh) or the 5-tuple. */
#ifndef XLB_LB_HASH_H
#define XLB_LB_HASH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "hash.h"
#include "svc.h"

/* lb_pick_hash picks by consistent hash: sh hashes the source address, the
 * others the 5-tuple (hash: xlb_hash_flow(f), the packet's, computed once). */
static __always_inline __u32 lb_pick_hash(const struct xlb_svc *svc, int sched, void *table,
					  const struct xlb_flow *f, __u32 hash)
{
	__u32 h = sched == XLB_SCHED_SH ? xlb_hash_src(f) : hash;

	return lb_table_get(table, xlb_reduce(h, svc->table_len));
}

#endif /* XLB_LB_HASH_H */
