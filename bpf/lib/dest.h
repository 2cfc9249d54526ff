/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A real server's connections as IPVS counts them (struct ip_vs_dest's
 * activeconns and inactconns, in xlb_be_conns_v1) and its overload flag
 * (IP_VS_DEST_F_OVERLOAD, struct xlb_backend.overload), kept as
 * net/netfilter/ipvs keeps them:
 *  - ip_vs_bind_dest (ip_vs_conn.c): a new connection is counted, inactive
 *    (__ip_vs_update_dest gives every destination IP_VS_CONN_F_INACTIVE),
 *    and the flag is set when active + inactive reaches the upper
 *    threshold;
 *  - set_tcp_state (ip_vs_proto_tcp.c): a TCP connection becomes active
 *    when it enters ESTABLISHED and inactive when it leaves it; UDP ones
 *    stay inactive;
 *  - ip_vs_unbind_dest (ip_vs_conn.c): an expired connection is uncounted
 *    and the flag cleared below the lower threshold, or below 3/4 of the
 *    upper one when there is no lower one.
 * The control plane recounts both from the connection table at every sync
 * (entries that expire unseen, LRU evictions) and clears the flag by the
 * same rule. */
#ifndef XLB_DEST_H
#define XLB_DEST_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"

/* lb_ct_active reports whether a connection in state counts as active. */
static __always_inline int lb_ct_active(__u8 proto, __u8 state)
{
	return proto == IPPROTO_TCP && state == XLB_CT_ESTABLISHED;
}

/* lb_dest_bind counts a new connection of backend id (be) and marks the
 * backend overloaded at its upper threshold (ip_vs_bind_dest). */
static __always_inline void lb_dest_bind(__u32 id, struct xlb_backend *be, int active)
{
	struct xlb_be_conns *c = bpf_map_lookup_elem(&xlb_be_conns_v1, &id);
	struct xlb_be_thresh *th;
	__s64 total;

	if (!c)
		return;
	if (active)
		total = __sync_fetch_and_add(&c->active, 1) + 1 + c->inactive;
	else
		total = __sync_fetch_and_add(&c->inactive, 1) + 1 + c->active;
	if (!(be->flags & XLB_BE_F_THRESH))
		return;
	th = bpf_map_lookup_elem(&xlb_be_thresh_v1, &id);
	if (th && th->upper && total >= th->upper && !be->overload)
		be->overload = 1;
}

/* lb_dest_move moves a counted connection of backend id between inactive
 * and active (set_tcp_state). */
static __always_inline void lb_dest_move(__u32 id, int to_active)
{
	struct xlb_be_conns *c = bpf_map_lookup_elem(&xlb_be_conns_v1, &id);

	if (!c)
		return;
	__sync_fetch_and_add(&c->active, to_active ? 1 : -1);
	__sync_fetch_and_add(&c->inactive, to_active ? -1 : 1);
}

/* lb_dest_keep_overload reports whether a backend with total connections
 * stays overloaded (ip_vs_unbind_dest's rule). */
static __always_inline int lb_dest_keep_overload(const struct xlb_be_thresh *th, __s64 total)
{
	if (th->lower)
		return total >= th->lower;
	if (th->upper)
		return total * 4 >= (__s64)th->upper * 3;
	return 0;
}

/* lb_dest_unbind uncounts an ended connection of backend id and clears
 * the backend's overload flag below its lower threshold
 * (ip_vs_unbind_dest). Not inlined: connections end here only when a
 * packet finds them expired, and the callers' stacks are full. */
static __noinline void lb_dest_unbind(__u32 id, int active)
{
	struct xlb_be_conns *c = bpf_map_lookup_elem(&xlb_be_conns_v1, &id);
	struct xlb_be_thresh *th = NULL;
	struct xlb_backend *be;
	__s64 total;

	if (!c)
		return;
	if (active)
		total = __sync_fetch_and_add(&c->active, -1) - 1 + c->inactive;
	else
		total = __sync_fetch_and_add(&c->inactive, -1) - 1 + c->active;
	be = bpf_map_lookup_elem(&xlb_backends_v1, &id);
	if (!be || !be->overload)
		return;
	if (be->flags & XLB_BE_F_THRESH)
		th = bpf_map_lookup_elem(&xlb_be_thresh_v1, &id);
	if (th && lb_dest_keep_overload(th, total))
		return;
	be->overload = 0;
}

#endif /* XLB_DEST_H */
