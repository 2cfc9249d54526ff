//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb: the XDP entry point. Packets for a virtual service are forwarded to a
 * real server (DR: MAC rewrite); everything else goes to the kernel
 * untouched. See README.md for the maps. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/consts.h"
#include "lib/structs.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Puts the enums into BTF for the generated Go bindings (bpf2go -type) and
 * for bpftool; never read. */
const volatile struct {
	enum xlb_verdict verdict;
	enum xlb_sched sched;
	enum xlb_fwd fwd;
	enum xlb_svc_flags svc_flags;
	enum xlb_backend_flags backend_flags;
	enum xlb_conn_state conn_state;
	enum xlb_conn_flags conn_flags;
} xlb_enums;

/* xlb_done counts a verdict and turns it into an XDP action. */
static __always_inline int xlb_done(__u32 verdict, __u32 len)
{
	lb_count_verdict(verdict, len);
	switch (verdict) {
	case XLB_V_TX:
		return XDP_TX;
	case XLB_V_REDIRECT:
		return XDP_REDIRECT;
	case XLB_V_DROP_MALFORMED:
	case XLB_V_DROP_NO_BACKEND:
	case XLB_V_DROP_NO_MAC:
	case XLB_V_DROP_REDIRECT:
	case XLB_V_DROP_ENCAP:
		return XDP_DROP;
	default:
		return XDP_PASS;
	}
}

/* xlb_clock advances the program's clock. The control plane runs it with
 * BPF_PROG_TEST_RUN every 100 ms: one helper call there instead
 * of one per packet, and a single 64-bit store readers never see torn. */
SEC("xdp")
int xlb_clock(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct xlb_clock *c = bpf_map_lookup_elem(&xlb_clock_v1, &zero);

	if (c)
		c->now = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

/* xlb_l2_fwd sends the frame to a next hop: out of the receiving
 * interface (XDP_TX) or another one (devmap redirect). */
static __always_inline __u32 xlb_l2_fwd(struct xdp_md *ctx, const __u8 *mac, const __u8 *smac, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	if (ifindex == ctx->ingress_ifindex)
		return XLB_V_TX;
	if (bpf_redirect_map(&xlb_devmap_v1, ifindex, 0) != XDP_REDIRECT)
		return XLB_V_DROP_REDIRECT;
	return XLB_V_REDIRECT;
}

/* xlb_fwd_dr sends the frame to a direct-routing real server's MAC. */
static __always_inline __u32 xlb_fwd_dr(struct xdp_md *ctx, const struct xlb_backend *be)
{
	if (!(be->flags & XLB_BE_F_HAS_MAC))
		return XLB_V_DROP_NO_MAC;
	return xlb_l2_fwd(ctx, be->mac, be->smac, be->ifindex);
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	struct xlb_flow_cache *cache = NULL, *hit;
	struct xlb_backend *be = NULL;
	struct xlb_svc *svc = NULL;
	struct xlb_globals *g;
	struct xlb_pkt p = {};
	struct xlb_conn *ct;
	__u32 cfg_idx = 0, id = 0, verdict;
	int is_new = 0;
	__u64 now;

	verdict = xlb_parse(ctx, &p);
	if (verdict != XLB_CONTINUE)
		return xlb_done(verdict, p.len);
	if (p.frag == XLB_FRAG_LATER)
		return xlb_done(XLB_V_PASS_FRAG_MISS, p.len);
	g = lb_globals();
	if (!g)
		return xlb_done(XLB_V_PASS_NOT_SERVICE, p.len);
	now = lb_now();

	/* Established flows: the per-CPU cache, array lookups only. */
	cache = lb_cache_slot(xlb_hash_flow(&p.flow));
	hit = lb_cache_get(cache, &p, now, g->gen);
	if (hit) {
		lb_count(&xlb_svc_stat_v1, hit->svc, p.len, 0, 0);
		lb_count(&xlb_be_stat_v1, hit->backend, p.len, 0, 0);
		return xlb_done(xlb_l2_fwd(ctx, hit->mac, hit->smac, hit->ifindex), p.len);
	}

	/* The connection table. */
	ct = bpf_map_lookup_elem(&xlb_conns_v1, &p.flow);
	if (ct) {
		svc = lb_svc_of(ct->svc, &p.flow, &cfg_idx);
		if (svc)
			be = lb_conn_use(ct, &p, now, &id);
		if (be && (be->flags & XLB_BE_F_HAS_MAC) &&
		    (p.flow.proto != IPPROTO_TCP || ct->state == XLB_CT_ESTABLISHED))
			lb_cache_put(cache, &p, svc->id, id, be, now, g->gen);
	}
	if (!svc) {
		svc = lb_svc_lookup(&p.flow, &cfg_idx);
		if (!svc)
			return xlb_done(XLB_V_PASS_NOT_SERVICE, p.len);
		if (!(svc->flags & XLB_SVC_F_ENABLED))
			return xlb_done(XLB_V_PASS_DISABLED, p.len);
	}
	if (!be) {
		is_new = p.flow.proto != IPPROTO_TCP ||
			 (p.tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
		be = lb_schedule(svc, cfg_idx, &p, is_new, now, &id);
		if (!be) {
			lb_count(&xlb_svc_stat_v1, svc->id, p.len, 0, 0);
			return xlb_done(XLB_V_DROP_NO_BACKEND, p.len);
		}
		lb_conn_create(&p, svc->id, id, now);
		is_new = 1;
	}
	lb_count(&xlb_svc_stat_v1, svc->id, p.len, is_new, 0);
	lb_count(&xlb_be_stat_v1, id, p.len, is_new, 0);
	return xlb_done(xlb_fwd_dr(ctx, be), p.len);
}
