/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The connection table (xlb_conns_v1): TCP state and idle timeouts as
 * IPVS's, the lc/wlc load of each backend, its connections as IPVS counts
 * them (dest.h), NAT reply entries. */
#ifndef XLB_CONN_H
#define XLB_CONN_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/in.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "clock.h"
#include "svc.h"
#include "dest.h"

static __always_inline void lb_active_add(__u32 backend, __s64 delta)
{
	__s64 *a = bpf_map_lookup_elem(&xlb_be_act_v1, &backend);

	if (a)
		__sync_fetch_and_add(a, delta);
}

/* lb_conn_release takes a connection out of its backend's lc/wlc load,
 * once. */
static __always_inline void lb_conn_release(struct xlb_conn *ct)
{
	if (ct->flags & XLB_CT_F_COUNTED) {
		__u32 old = __sync_fetch_and_and(&ct->flags, ~(__u32)XLB_CT_F_COUNTED);

		if (old & XLB_CT_F_COUNTED)
			lb_active_add(ct->backend, -1);
	}
}

/* lb_conn_unbind takes an expired connection out of its backend's
 * counts (dest.h), once. */
static __always_inline void lb_conn_unbind(struct xlb_conn *ct, __u8 proto)
{
	if (ct->flags & XLB_CT_F_BOUND) {
		__u32 old = __sync_fetch_and_and(&ct->flags, ~(__u32)XLB_CT_F_BOUND);

		if (old & XLB_CT_F_BOUND)
			lb_dest_unbind(ct->backend, lb_ct_active(proto, ct->state));
	}
}

/* lb_conn_timeout is the idle timeout of a connection entry, in ns. */
static __always_inline __u64 lb_conn_timeout(const struct xlb_conn *ct, __u8 proto)
{
	struct xlb_globals *g = lb_globals();

	if (!g)
		return 0;
	if (proto != IPPROTO_TCP)
		return g->udp_timeout;
	return ct->state == XLB_CT_ESTABLISHED ? g->tcp_timeout : g->tcp_fin_timeout;
}

/* lb_conn_touch advances a live connection: its TCP state from the
 * packet's flags and its access time. */
static __always_inline void lb_conn_touch(struct xlb_conn *ct, const struct xlb_pkt *p, __u64 now)
{
	if (p->flow.proto == IPPROTO_TCP) {
		if (p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) {
			if (ct->state != XLB_CT_CLOSING) {
				if (ct->state == XLB_CT_ESTABLISHED && (ct->flags & XLB_CT_F_BOUND))
					lb_dest_move(ct->backend, 0);
				ct->state = XLB_CT_CLOSING;
			}
			lb_conn_release(ct);
		} else if (ct->state == XLB_CT_NEW && !(p->tcp_flags & XLB_TCP_SYN)) {
			ct->state = XLB_CT_ESTABLISHED;
			if (ct->flags & XLB_CT_F_BOUND)
				lb_dest_move(ct->backend, 1);
		}
	}
	if ((ct->atime >> XLB_ATIME_SHIFT) != (now >> XLB_ATIME_SHIFT))
		ct->atime = now;
}

/* lb_conn_use returns the backend of a live connection entry and advances
 * the entry. An expired entry is released and treated as absent; so is an
 * entry whose backend no longer exists and, for a TCP SYN, a closing entry
 * (the 5-tuple is being reused for a new connection). */
static __always_inline struct xlb_backend *lb_conn_use(struct xlb_conn *ct, const struct xlb_pkt *p, __u64 now,
						       __u32 *backend_id)
{
	struct xlb_backend *be;

	if (lb_idle(now, ct->atime, lb_conn_timeout(ct, p->flow.proto)))
		goto stale;
	if (ct->state == XLB_CT_CLOSING && (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN)
		goto stale;
	be = lb_backend(ct->backend, ct->svc);
	if (!be)
		goto stale;
	lb_conn_touch(ct, p, now);
	*backend_id = ct->backend;
	return be;
stale:
	lb_conn_release(ct);
	lb_conn_unbind(ct, p->flow.proto);
	return NULL;
}

/* lb_reply_key is the NAT reply direction of a flow to backend be. */
static __always_inline void lb_reply_key(struct xlb_flow *k, const struct xlb_pkt *p, const struct xlb_backend *be)
{
	__builtin_memcpy(k->src, be->addr, sizeof(k->src));
	__builtin_memcpy(k->dst, p->flow.src, sizeof(k->dst));
	k->sport = be->port;
	k->dport = p->flow.sport;
	k->proto = p->flow.proto;
	k->family = p->flow.family;
}

/* lb_reply_put records (or, with only_missing, restores after an LRU
 * eviction) the reply entry of a NAT flow: replies from the real server
 * find the VIP:port to translate back to. */
static __always_inline void lb_reply_put(const struct xlb_pkt *p, __u32 svc, __u32 id, const struct xlb_backend *be,
					 __u64 now, int only_missing)
{
	struct xlb_flow k = {};
	struct xlb_conn v = {
		.atime = now,
		.backend = id,
		.svc = svc,
		.flags = XLB_CT_F_REPLY,
		.state = XLB_CT_ESTABLISHED,
	};

	lb_reply_key(&k, p, be);
	if (only_missing && bpf_map_lookup_elem(&xlb_conns_v1, &k))
		return;
	bpf_map_update_elem(&xlb_conns_v1, &k, &v, BPF_ANY);
}

/* lb_conn_create records a new flow on backend id. held: the flow is
 * already counted in the backend's lc/wlc load (its SYN's embryonic entry
 * was); bound: it is already the backend's inactive connection in dest.h's
 * counts (its SYN's was), and moves to active if it is established. */
static __always_inline void lb_conn_create(const struct xlb_pkt *p, const struct xlb_svc *svc, __u32 id,
					   struct xlb_backend *be, __u64 now, int held, int bound)
{
	struct xlb_conn ct = {
		.atime = now,
		.backend = id,
		.svc = svc->id,
		.flags = XLB_CT_F_COUNTED | XLB_CT_F_BOUND,
		.state = XLB_CT_NEW,
	};

	if (p->flow.proto == IPPROTO_TCP) {
		if (p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST)) {
			ct.state = XLB_CT_CLOSING;
			ct.flags = XLB_CT_F_BOUND;
		} else if (!(p->tcp_flags & XLB_TCP_SYN)) {
			ct.state = XLB_CT_ESTABLISHED;
		}
	}
	if (bpf_map_update_elem(&xlb_conns_v1, &p->flow, &ct, BPF_ANY) == 0) {
		if ((ct.flags & XLB_CT_F_COUNTED) && !held)
			lb_active_add(id, 1);
		else if (!(ct.flags & XLB_CT_F_COUNTED) && held)
			lb_active_add(id, -1);
		if (!bound)
			lb_dest_bind(id, be, lb_ct_active(p->flow.proto, ct.state));
		else if (lb_ct_active(p->flow.proto, ct.state))
			lb_dest_move(id, 1);
	} else {
		if (held)
			lb_active_add(id, -1);
		if (bound)
			lb_dest_unbind(id, 0);
	}
	if (svc->fwd == XLB_FWD_NAT)
		lb_reply_put(p, svc->id, id, be, now, 0);
}

#endif /* XLB_CONN_H */
