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

/* xlb_fwd_dr sends the frame to the real server's MAC: out of the
 * receiving interface (XDP_TX) or another one (devmap redirect). */
static __always_inline __u32 xlb_fwd_dr(struct xdp_md *ctx, const struct xlb_backend *be)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (!(be->flags & XLB_BE_F_HAS_MAC))
		return XLB_V_DROP_NO_MAC;
	if ((void *)(eth + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, be->smac, ETH_ALEN);
	if (be->ifindex == ctx->ingress_ifindex)
		return XLB_V_TX;
	if (bpf_redirect_map(&xlb_devmap_v1, be->ifindex, 0) != XDP_REDIRECT)
		return XLB_V_DROP_REDIRECT;
	return XLB_V_REDIRECT;
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	struct xlb_pkt p = {};
	struct xlb_backend *be;
	struct xlb_svc *svc;
	__u32 cfg_idx = 0, id = 0, verdict;
	int is_new = 0;
	__u64 now;

	verdict = xlb_parse(ctx, &p);
	if (verdict != XLB_CONTINUE)
		return xlb_done(verdict, p.len);
	if (p.frag == XLB_FRAG_LATER)
		return xlb_done(XLB_V_PASS_FRAG_MISS, p.len);

	svc = lb_svc_lookup(&p.flow, &cfg_idx);
	if (!svc)
		return xlb_done(XLB_V_PASS_NOT_SERVICE, p.len);
	if (!(svc->flags & XLB_SVC_F_ENABLED))
		return xlb_done(XLB_V_PASS_DISABLED, p.len);

	now = bpf_ktime_get_coarse_ns();
	be = lb_conn_lookup(&p, svc->id, now, &id);
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
