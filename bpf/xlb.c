//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* xlb: the XDP entry point. Packets of a virtual service are forwarded to a
 * real server (DR: MAC rewrite; NAT: address translation; tunnel:
 * encapsulation), NAT replies translated back, ICMP errors about tracked
 * flows sent where the flow goes, later fragments after their first;
 * everything else goes to the kernel untouched. See README.md for the maps. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lib/consts.h"
#include "lib/structs.h"
#include "lib/maps.h"
#include "lib/parse.h"
#include "lib/fwd.h"
#include "lib/nat.h"
#include "lib/encap.h"
#include "lib/counters.h"
#include "lib/clock.h"
#include "lib/svc.h"
#include "lib/conn.h"
#include "lib/flowcache.h"
#include "lib/frag.h"
#include "lib/lb.h"
#include "lib/embryo.h"
#include "lib/checks.h"
#include "lib/sync.h"
#include "lib/probe.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Puts the enums into BTF for the generated Go bindings (bpf2go -type), for
 * the names Go reads at load (verdicts, events, schedulers, forwarding modes)
 * and for bpftool; never read. */
const volatile struct {
	enum xlb_verdict verdict;
	enum xlb_sched sched;
	enum xlb_fwd fwd;
	enum xlb_svc_flags svc_flags;
	enum xlb_backend_flags backend_flags;
	enum xlb_conn_state conn_state;
	enum xlb_conn_flags conn_flags;
	enum xlb_event event;
	enum xlb_action action;
	enum xlb_iface_flags iface_flags;
	enum xlb_limits limits;
	enum xlb_embryo_word embryo_word;
	enum xlb_sync_flags sync_flags;
	enum xlb_fc_tun fc_tun;
	struct xlb_sync_rec sync_rec; /* the ring's records (a ring buffer has no value type) */
	struct xlb_probe_ans probe_ans;
} xlb_enums;

/* xlb_done counts a verdict and turns it into an XDP action. */
static __always_inline int xlb_done(__u32 verdict, __u32 len)
{
	lb_count_verdict(verdict, len);
	switch (verdict) {
	case XLB_V_TX:
	case XLB_V_TX_ICMP_TOO_BIG:
	case XLB_V_TX_PROBE_RST:
		return XDP_TX;
	case XLB_V_REDIRECT:
		return XDP_REDIRECT;
	case XLB_V_DROP_MALFORMED:
	case XLB_V_DROP_NO_BACKEND:
	case XLB_V_DROP_NO_MAC:
	case XLB_V_DROP_ENCAP:
	case XLB_V_DROP_TOO_BIG:
	case XLB_V_DROP_IP_CSUM:
	case XLB_V_DROP_IP_OPTIONS:
	case XLB_V_DROP_SOURCE_ROUTE:
	case XLB_V_DROP_TCP_HEADER:
	case XLB_V_DROP_UDP_LENGTH:
	case XLB_V_DROP_IPV6_HBH:
	case XLB_V_DROP_IPV6_EXT:
	case XLB_V_DROP_MARTIAN_SRC:
	case XLB_V_DROP_RP_FILTER:
	case XLB_V_DROP_OTHER_HOST:
	case XLB_V_DROP_ADOPT_IFACE:
	case XLB_V_PROBE_REFUSED:
		return XDP_DROP;
	default:
		return XDP_PASS;
	}
}

static __always_inline int xlb_sent(__u32 v)
{
	return v == XLB_V_TX || v == XLB_V_REDIRECT;
}

/* xlb_clock advances the program's clock. The control plane runs it with
 * BPF_PROG_TEST_RUN every 100 ms: one helper call there instead of one per
 * packet, and a single 64-bit store readers never see torn. */
SEC("xdp")
int xlb_clock(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct xlb_clock *c = bpf_map_lookup_elem(&xlb_clock_v1, &zero);

	if (c)
		c->now = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

/* xlb_xmit forwards a packet of a flow by its action. cached: the next hop
 * is known (hop->valid: flow cache); otherwise it comes from the backend
 * (DR) or the FIB and is returned in hop for caching. */
static __always_inline __u32 xlb_xmit(struct xdp_md *ctx, struct xlb_pkt *p, __u8 action, const struct xlb_svc *svc,
				      const struct xlb_backend *be, struct xlb_hop *hop)
{
	__u32 v;

	if (action != XLB_ACT_DR && (!svc || !be))
		return XLB_V_DROP_MALFORMED;
	switch (action) {
	case XLB_ACT_DR:
		if (!hop->valid) {
			if (!be || !(be->flags & XLB_BE_F_HAS_MAC))
				return XLB_V_DROP_NO_MAC;
			__builtin_memcpy(hop->mac, be->mac, ETH_ALEN);
			__builtin_memcpy(hop->smac, be->smac, ETH_ALEN);
			hop->ifindex = be->ifindex;
			hop->valid = 1;
		}
		return xlb_l2_fwd(ctx, p->l3_off, hop->mac, hop->smac, hop->ifindex);
	case XLB_ACT_NAT_IN:
		v = 0;
		if (!hop->valid) {
			v = xlb_fib(ctx, p->flow.family, XLB_CA32(p->flow.src), XLB_CA32(be->addr), 0, hop);
			if (v != 0 && v != XLB_V_PASS_NO_NEIGH)
				return v;
			hop->valid = !v;
		}
		/* Without a neighbour yet the kernel forwards the translated
		 * packet and resolves it. */
		if (xlb_nat(ctx, p, 0, XLB_CA32(be->addr), be->port) != XLB_CONTINUE)
			return XLB_V_DROP_MALFORMED;
		return v ? v : xlb_l2_fwd(ctx, p->l3_off, hop->mac, hop->smac, hop->ifindex);
	case XLB_ACT_NAT_OUT:
		v = 0;
		if (!hop->valid) {
			v = xlb_fib(ctx, p->flow.family, XLB_CA32(svc->vip), XLB_CA32(p->flow.dst), 0, hop);
			if (v != 0 && v != XLB_V_PASS_NO_NEIGH)
				return v;
			hop->valid = !v;
		}
		if (xlb_nat(ctx, p, 1, XLB_CA32(svc->vip), svc->port) != XLB_CONTINUE)
			return XLB_V_DROP_MALFORMED;
		return v ? v : xlb_l2_fwd(ctx, p->l3_off, hop->mac, hop->smac, hop->ifindex);
	case XLB_ACT_TUNNEL:
		return xlb_encap(ctx, p, svc, be, hop);
	}
	return XLB_V_DROP_MALFORMED;
}

static __always_inline __u8 xlb_action(const struct xlb_svc *svc)
{
	if (svc->fwd == XLB_FWD_NAT)
		return XLB_ACT_NAT_IN;
	if (svc->fwd == XLB_FWD_TUNNEL)
		return XLB_ACT_TUNNEL;
	return XLB_ACT_DR;
}

/* xlb_count counts a forwarded packet for its service and backend. */
static __always_inline void xlb_count(__u32 svc, __u32 backend, __u32 len, int is_new, __u8 action)
{
	int out = action == XLB_ACT_NAT_OUT;

	lb_count(&xlb_svc_stat_v1, svc, len, is_new, out);
	if (backend < XLB_MAX_BACKENDS)
		lb_count(&xlb_be_stat_v3, bpf_get_smp_processor_id() * XLB_MAX_BACKENDS + backend, len, is_new, out);
	if (out)
		lb_event(XLB_EV_NAT_REPLY);
}

/* xlb_delivered reports whether a packet reaches the real server or the
 * client: sent by XDP, or translated and left to the kernel to forward
 * while it resolves a neighbour. */
static __always_inline int xlb_delivered(__u32 v)
{
	return xlb_sent(v) || v == XLB_V_PASS_NO_NEIGH;
}

/* Where a decision came from (struct xlb_decision.kind). */
enum {
	XLB_D_CACHE = 0, /* the flow cache */
	XLB_D_SLOW,      /* the connection table or the scheduler */
	XLB_D_FRAG,      /* a later fragment's entry */
	XLB_D_ICMP,      /* an ICMP error about a tunnelled flow */
};

/* A forwarding decision: the entry program sends the packet (one call site
 * of the transmit code keeps the stack of every call chain small). */
struct xlb_decision {
	struct xlb_svc *svc;
	struct xlb_backend *be;
	__u32 svc_id;
	__u32 backend;
	__u32 cfg_idx; /* the service's configuration (XLB_D_SLOW) */
	__u8 action;
	__u8 kind;
	__u8 is_new;
	__u8 cacheable;
	__u8 had_ct;   /* XLB_NEW: a connection entry was found, expired or closing */
	__u8 pad;
	__u16 sync;    /* what to report to the peers (sync.h), 0: nothing */
};

/* xlb_slow's answer for a packet of a service without a live connection
 * entry: xlb_new schedules it (a function of its own, so that neither
 * frame holds both the lookup's and the scheduler's variables). */
#define XLB_NEW (XLB_CONTINUE + 1)

/* xlb_frag_later decides for a non-first fragment: where its first
 * fragment went. Fragments whose first fragment was not seen go to the
 * kernel. */
static __noinline __u32 xlb_frag_later(struct xdp_md *ctx, struct xlb_pkt *p, __u64 now, struct xlb_decision *d)
{
	__u32 cfg_idx, v;
	struct xlb_frag_key k = {};
	struct xlb_frag *fe;

	lb_frag_key(&k, p);
	fe = bpf_map_lookup_elem(&xlb_frags_v1, &k);
	if (!fe || lb_idle(now, fe->atime, XLB_FRAG_TIMEOUT))
		return XLB_V_PASS_FRAG_MISS;
	v = xlb_l2_check(ctx, p);
	if (v != XLB_CONTINUE)
		return v;
	d->svc = lb_svc_by_id(fe->svc, &cfg_idx);
	d->be = d->svc ? lb_backend(fe->backend, fe->svc) : NULL;
	if (!d->be)
		return XLB_V_PASS_FRAG_MISS;
	d->svc_id = fe->svc;
	d->backend = fe->backend;
	d->action = fe->action;
	d->kind = XLB_D_FRAG;
	return XLB_CONTINUE;
}

/* xlb_icmp_error handles an ICMP error about a tracked flow: an error about
 * a reply (from the VIP) goes to the flow's real server, an error from a
 * NAT real server to the client, translated. The quoted packet is the one
 * that caused the error; reversed, it is the flow's key. DR and NAT are
 * sent here; a tunnelled flow's error is returned as a decision. */
static __noinline __u32 xlb_icmp_error(struct xdp_md *ctx, struct xlb_pkt *p, struct xlb_decision *d)
{
	__u32 cfg_idx;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct xlb_flow k = {};
	struct xlb_backend *be;
	struct xlb_hop hop = {};
	struct xlb_svc *svc;
	struct xlb_conn *ct;
	__u32 off = p->l4_off + 8, v;
	__be16 *ports;
	int out;

	if (off > XLB_MAX_L4_OFF + 8)
		return XLB_V_PASS_ICMP_NO_FLOW;
	k.family = p->flow.family;
	if (p->flow.family == XLB_AF_INET) {
		struct iphdr *iip = data + off;

		if ((void *)(iip + 1) > data_end)
			return XLB_V_PASS_ICMP_NO_FLOW;
		ports = (void *)iip + iip->ihl * 4;
		XLB_A32(k.src)[0] = iip->daddr;
		XLB_A32(k.dst)[0] = iip->saddr;
		k.proto = iip->protocol;
	} else {
		struct ipv6hdr *iip = data + off;

		if ((void *)(iip + 1) > data_end)
			return XLB_V_PASS_ICMP_NO_FLOW;
		ports = (void *)(iip + 1);
		__builtin_memcpy(k.src, &iip->daddr, 16);
		__builtin_memcpy(k.dst, &iip->saddr, 16);
		k.proto = iip->nexthdr;
	}
	if ((void *)(ports + 2) > data_end || (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP))
		return XLB_V_PASS_ICMP_NO_FLOW;
	k.sport = bpf_ntohs(ports[1]);
	k.dport = bpf_ntohs(ports[0]);

	ct = bpf_map_lookup_elem(&xlb_conns_v1, &k);
	if (ct) {
		d->svc_id = ct->svc;
		d->backend = ct->backend;
		out = ct->flags & XLB_CT_F_REPLY;
	} else {
		/* A flow in its handshake (DR, tunnel): its SYN's entry. */
		struct xlb_globals *g = lb_globals();
		__u64 *slot = lb_emb_slot(xlb_hash_flow(&k));
		__u64 w = slot ? *slot : 0;

		if (!g || (__u32)w != lb_emb_fp(&k) || !lb_emb_live(w, lb_now(), g->tcp_fin_timeout))
			return XLB_V_PASS_ICMP_NO_FLOW;
		d->backend = lb_emb_backend(w);
		be = bpf_map_lookup_elem(&xlb_backends_v1, &d->backend);
		if (!be)
			return XLB_V_PASS_ICMP_NO_FLOW;
		d->svc_id = be->svc;
		out = 0;
	}
	v = xlb_l2_check(ctx, p);
	if (v != XLB_CONTINUE)
		return v;
	if (out) {
		/* From a NAT real server, about a packet it got from the client. */
		svc = lb_svc_by_id(d->svc_id, &cfg_idx);
	} else {
		/* About a reply from the VIP: to the flow's real server. */
		svc = lb_svc_of(d->svc_id, &k, &off);
	}
	be = svc ? lb_backend(d->backend, d->svc_id) : NULL;
	if (!be)
		return XLB_V_PASS_ICMP_NO_FLOW;
	d->svc = svc;
	d->be = be;
	d->kind = XLB_D_ICMP;
	d->action = out ? XLB_ACT_NAT_OUT : xlb_action(svc);
	if (d->action == XLB_ACT_TUNNEL || d->action == XLB_ACT_DR)
		return XLB_CONTINUE;

	/* NAT: translate the outer and the quoted headers. */
	if (out)
		v = xlb_fib(ctx, p->flow.family, XLB_CA32(svc->vip), XLB_CA32(p->flow.dst), 0, &hop);
	else
		v = xlb_fib(ctx, p->flow.family, XLB_CA32(p->flow.src), XLB_CA32(be->addr), 0, &hop);
	if (v && v != XLB_V_PASS_NO_NEIGH)
		return v;
	if (out)
		v = xlb_icmp_nat(ctx, p, 1, XLB_CA32(svc->vip), XLB_CA32(svc->vip), svc->port) != XLB_CONTINUE ? XLB_V_DROP_MALFORMED : v;
	else
		v = xlb_icmp_nat(ctx, p, 0, XLB_CA32(be->addr), XLB_CA32(be->addr), be->port) != XLB_CONTINUE ? XLB_V_DROP_MALFORMED : v;
	if (!v)
		v = xlb_l2_fwd(ctx, p->l3_off, hop.mac, hop.smac, hop.ifindex);
	if (xlb_sent(v)) {
		lb_event(XLB_EV_ICMP_ERROR);
		xlb_count(d->svc_id, d->backend, p->len, 0, d->action);
	}
	return v;
}

/* xlb_reply translates a NAT reply (from the real server) back to the
 * VIP:port and sends it toward the client. */
static __always_inline __u32 xlb_reply(struct xdp_md *ctx, struct xlb_pkt *p, struct xlb_conn *ct,
				       struct xlb_flow_cache *cache, __u64 now, __u32 gen)
{
	__u32 cfg_idx;
	struct xlb_backend *be;
	struct xlb_hop hop = {};
	struct xlb_svc *svc;
	__u32 v;

	svc = lb_svc_by_id(ct->svc, &cfg_idx);
	be = svc ? lb_backend(ct->backend, ct->svc) : NULL;
	if (!be)
		return XLB_V_PASS_NOT_SERVICE;
	lb_conn_touch(ct, p, now);
	v = xlb_xmit(ctx, p, XLB_ACT_NAT_OUT, svc, be, &hop);
	if (xlb_sent(v)) {
		if (hop.valid && !(p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_FIN | XLB_TCP_RST)))
			lb_cache_put(cache, p, ct->svc, cfg_idx, ct->backend, XLB_ACT_NAT_OUT, &hop, now, gen);
		if (p->frag == XLB_FRAG_FIRST)
			lb_frag_put(p, ct->svc, ct->backend, XLB_ACT_NAT_OUT, now);
	}
	if (xlb_delivered(v))
		xlb_count(ct->svc, ct->backend, p->len, 0, XLB_ACT_NAT_OUT);
	return v;
}

/* xlb_nat_adopt takes over a NAT flow from a reply this director has no
 * state for (after a failover, the real server's replies reach the new
 * master before, or without, the client's packets): the reply's source
 * names the real server and service; the entries of both directions are
 * created, so the client's next packets go to the real server that serves
 * the connection, whatever the scheduler. Only a reply received from where
 * the real server is (xlb_adopt_check) and sent to this director
 * (xlb_l2_check) is adopted. Returns XLB_CONTINUE with the reply entry in
 * *out, PASS_NOT_SERVICE for a packet that is no such reply, or the
 * verdict of a refusal. */
static __always_inline __u32 xlb_nat_adopt(struct xdp_md *ctx, const struct xlb_pkt *p, __u64 now,
					   struct xlb_conn **out)
{
	__u32 cfg_idx;
	struct xlb_svc_key k = {
		.port = p->flow.sport,
		.proto = p->flow.proto,
		.family = p->flow.family,
	};
	struct xlb_conn v = { .atime = now, .state = XLB_CT_ESTABLISHED };
	struct xlb_flow fwd = {};
	struct xlb_nat_real *nr;
	struct xlb_backend *be;
	struct xlb_svc *svc;
	__u32 verdict;

	__builtin_memcpy(k.addr, p->flow.src, sizeof(k.addr));
	nr = bpf_map_lookup_elem(&xlb_nat_reals_v1, &k);
	if (!nr)
		return XLB_V_PASS_NOT_SERVICE;
	svc = lb_svc_by_id(nr->svc, &cfg_idx);
	be = svc && svc->fwd == XLB_FWD_NAT ? lb_backend(nr->backend, nr->svc) : NULL;
	if (!be)
		return XLB_V_PASS_NOT_SERVICE;
	{
		/* Only replies the director forwards: not those to its own
		 * addresses (its health checks of the real server). */
		struct xlb_hop hop;

		verdict = xlb_fib(ctx, p->flow.family, XLB_CA32(svc->vip), XLB_CA32(p->flow.dst), 0, &hop);
		if (verdict && verdict != XLB_V_PASS_NO_NEIGH)
			return XLB_V_PASS_NOT_SERVICE;
	}
	if (xlb_tcp_syn(p))
		return XLB_V_PASS_NOT_SERVICE; /* a connection the real server opens: not a reply */
	verdict = xlb_l2_check(ctx, p);
	if (verdict == XLB_CONTINUE)
		verdict = xlb_adopt_check(ctx, p);
	if (verdict != XLB_CONTINUE)
		return verdict;
	v.backend = nr->backend;
	v.svc = nr->svc;
	/* The client's direction: client -> VIP:port. */
	__builtin_memcpy(fwd.src, p->flow.dst, sizeof(fwd.src));
	__builtin_memcpy(fwd.dst, svc->vip, sizeof(fwd.dst));
	fwd.sport = p->flow.dport;
	fwd.dport = svc->port;
	fwd.proto = p->flow.proto;
	fwd.family = p->flow.family;
	v.flags = XLB_CT_F_COUNTED | XLB_CT_F_BOUND;
	if (bpf_map_update_elem(&xlb_conns_v1, &fwd, &v, BPF_NOEXIST) == 0) {
		lb_active_add(v.backend, 1);
		lb_dest_bind(v.backend, be, lb_ct_active(fwd.proto, v.state));
		lb_epoch_bump(&fwd);
	}
	v.flags = XLB_CT_F_REPLY;
	if (bpf_map_update_elem(&xlb_conns_v1, &p->flow, &v, BPF_ANY))
		return XLB_V_PASS_NOT_SERVICE;
	lb_event(XLB_EV_NAT_ADOPT);
	*out = bpf_map_lookup_elem(&xlb_conns_v1, &p->flow);
	return *out ? XLB_CONTINUE : XLB_V_PASS_NOT_SERVICE;
}

/* lb_conn_lost counts a flow whose connection entry is gone although this
 * CPU cached it during the last two ticks, in the current configuration:
 * the LRU evicted an established flow (an idle one would have been cached
 * long before its timeout). */
static __always_inline void lb_conn_lost(const struct xlb_flow_cache *c, const struct xlb_pkt *p, __u64 now,
					 const struct xlb_globals *g)
{
	__u32 tick = now >> XLB_ATIME_SHIFT;

	if (c && c->gen == g->gen && tick - c->tick <= 2 && g->tcp_timeout > (4ULL << XLB_ATIME_SHIFT) &&
	    lb_flow_eq(&c->flow, &p->flow))
		lb_event(XLB_EV_CONN_EVICTED);
}

/* xlb_slow decides for a packet the flow cache did not know: from the
 * connection table. It returns XLB_CONTINUE with d filled, XLB_NEW with
 * d->svc, cfg_idx and had_ct for a packet of a service without a live
 * entry (xlb_new schedules it), or the verdict (NAT replies are sent
 * here). */
static __noinline __u32 xlb_slow(struct xdp_md *ctx, struct xlb_pkt *p, struct xlb_flow_cache *cache, __u64 now,
				 struct xlb_decision *d)
{
	struct xlb_globals *g = lb_globals();
	struct xlb_backend *be = NULL;
	struct xlb_svc *svc = NULL;
	struct xlb_conn *ct;
	__u32 cfg_idx = 0, id = 0, v;

	if (!g)
		return XLB_V_PASS_NOT_SERVICE;
	/* A TCP SYN reads its embryonic slot next (xlb_new): loaded now, that
	 * cache miss overlaps the connection table's instead of following it
	 * (the two were most of a new flow's cost). */
	if (xlb_tcp_syn(p))
		lb_emb_touch(p->hash);
	ct = bpf_map_lookup_elem(&xlb_conns_v1, &p->flow);
	if (!ct && lb_sync_wanted(p) && lb_sync_promote(&p->flow, now))
		ct = bpf_map_lookup_elem(&xlb_conns_v1, &p->flow);
	if (ct) {
		v = xlb_l2_check(ctx, p);
		if (v != XLB_CONTINUE)
			return v;
		if (ct->flags & XLB_CT_F_REPLY)
			return xlb_reply(ctx, p, ct, cache, now, g->gen);
		svc = lb_svc_of(ct->svc, &p->flow, &cfg_idx);
		if (svc) {
			__u8 was = ct->state;

			be = lb_conn_use(ct, p, now, &id);
			if (be && ct->state != was)
				d->sync = lb_sync_what(svc, ct->state);
		}
		if (be) {
			d->cacheable = p->flow.proto != IPPROTO_TCP || ct->state == XLB_CT_ESTABLISHED;
			if (svc->fwd == XLB_FWD_NAT)
				lb_reply_put(p, svc->id, id, be, now, 1);
			d->svc = svc;
			d->cfg_idx = cfg_idx;
			d->be = be;
			d->svc_id = svc->id;
			d->backend = id;
			d->action = xlb_action(svc);
			d->kind = XLB_D_SLOW;
			return XLB_CONTINUE;
		}
	} else if (!xlb_tcp_syn(p)) {
		/* A SYN starts a flow: its missing entry says nothing of an
		 * eviction, and the flow cache's line it would read is a
		 * cache miss of its own (4% of a new flow's samples). */
		lb_conn_lost(cache, p, now, g);
	}
	if (!svc) {
		svc = lb_svc_lookup(&p->flow, &cfg_idx);
		if (!svc) {
			if (!g->nat_reals || ct)
				return XLB_V_PASS_NOT_SERVICE;
			v = xlb_nat_adopt(ctx, p, now, &ct);
			if (v != XLB_CONTINUE)
				return v;
			return xlb_reply(ctx, p, ct, cache, now, g->gen);
		}
		if (!(svc->flags & XLB_SVC_F_ENABLED))
			return XLB_V_PASS_DISABLED;
		if (!ct) {
			v = xlb_l2_check(ctx, p);
			if (v != XLB_CONTINUE)
				return v;
		}
	}
	d->svc = svc;
	d->cfg_idx = cfg_idx;
	d->had_ct = ct != NULL;
	return XLB_NEW;
}

/* xlb_conn_new records the connection entry of decision d (lb_conn_create).
 * A function of its own: the entries it writes live in its frame, not in
 * xlb_new's, which is on the scheduler's call chain (TestCallChainStack). */
static __noinline void xlb_conn_new(const struct xlb_pkt *p, const struct xlb_decision *d, __u64 now, int held,
				    int bound)
{
	lb_conn_create(p, d->svc, d->backend, d->be, now, held, bound);
}

/* xlb_new schedules a packet of service d->svc that has no live connection
 * entry, after the checks the kernel makes before IPVS would (martian
 * source, reverse path). A TCP SYN of a DR or tunnel service records an
 * embryonic entry (embryo.h), or in SYN flood mode or when its slot is
 * held is scheduled by hash; the handshake's ACK creates the connection
 * entry from the entry, or by the same hash. Other packets
 * (UDP, NAT services, a SYN reusing a closing flow's 5-tuple, a packet
 * without state after a failover) create the connection entry at once.
 * Returns XLB_CONTINUE with d filled, or the verdict. */
static __noinline __u32 xlb_new(struct xdp_md *ctx, struct xlb_pkt *p, __u64 now, struct xlb_decision *d)
{
	struct xlb_globals *g = lb_globals();
	struct xlb_svc *svc = d->svc;
	struct xlb_backend *be = NULL;
	__u32 id = 0, fp = 0, v;
	__u64 *slot = NULL, w = 0, fin_timeout;
	int syn, held, bound, emb, emb_syn, flood, claim, counted;

	if (!g || !svc)
		return XLB_V_PASS_NOT_SERVICE;
	fin_timeout = g->tcp_fin_timeout;
	emb = p->flow.proto == IPPROTO_TCP && svc->fwd != XLB_FWD_NAT && !d->had_ct;
	syn = xlb_tcp_syn(p);
	if (emb) {
		fp = lb_emb_fp(&p->flow);
		slot = lb_emb_slot(p->hash);
		if (slot) {
			w = *slot;
			if ((__u32)w == fp && lb_emb_live(w, now, fin_timeout)) {
				/* Its SYN's decision: a retransmitted SYN, or the
				 * handshake's next packet. */
				id = lb_emb_backend(w);
				be = lb_backend(id, svc->id);
			}
		}
	}
	held = bound = 0;
	if (be && !syn) {
		/* The handshake goes on: its SYN's entry becomes the
		 * connection's, and with it the SYN's counts (its inactive
		 * connection in dest.h's, its lc/wlc load). */
		bound = lb_emb_take(slot, w, fp);
		held = bound && (w & XLB_EMB_COUNTED);
		lb_event(XLB_EV_EMBRYO_PROMOTED);
		/* Established now: the flow cache serves its next packets. */
		d->cacheable = !(p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_FIN | XLB_TCP_RST));
		goto create;
	}
	if (be && !(be->flags & XLB_BE_F_SCHED)) {
		/* A retransmitted SYN whose real server takes no new flows any
		 * more (down, drained or removed since its SYN): the handshake
		 * has not ended, so it is scheduled again, as IPVS schedules
		 * a packet whose connection lost its destination with
		 * expire_nodest_conn; its word is freed first, and with it the
		 * SYN's counts. */
		if (lb_emb_take(slot, w, fp)) {
			lb_dest_unbind(id, 0);
			if (w & XLB_EMB_COUNTED)
				lb_active_add(id, -1);
		}
		lb_event(XLB_EV_EMBRYO_RESCHEDULED);
		be = NULL;
		w = *slot;
	}
	if (be)
		goto out; /* a retransmitted SYN keeps its real server */

	/* A new flow: what the kernel would refuse before IPVS. */
	v = xlb_src_check(ctx, p, XLB_CA32(svc->vip)[0]);
	if (v != XLB_CONTINUE)
		return v;
	/* A SYN of a DR or tunnel service takes its slot's embryonic entry
	 * if the slot is free, then is scheduled (by hash in the flood mode's
	 * tail); in SYN flood mode, or if the slot holds another flow's live
	 * entry, it is scheduled by hash and takes none (embryo.h). Any other packet gets a connection entry
	 * now. Without an embryonic entry, a TCP packet after the SYN had its
	 * SYN scheduled by hash or through another director: a new
	 * connection for this one unless its SYN was counted here during a
	 * flood. One call site of the scheduler for all, as of xlb_conn_new
	 * for a promoted handshake and a new connection: the verifier checks
	 * each call site's code again. */
	emb_syn = emb && syn;
	flood = emb_syn ? lb_syn_flood(now) : 0;
	claim = emb_syn && flood != XLB_SYN_FLOOD && slot && lb_emb_contend(slot, &w, now, fin_timeout);
	counted = claim && lb_sched_loaded(svc->sched);
	if (claim && __sync_val_compare_and_swap(slot, w, lb_emb_word(fp, 0, counted, now)) != w) {
		/* Another CPU's SYN took the slot since it was read: this
		 * one is hashed, and marks that SYN's entry. */
		claim = 0;
		w = *slot;
		lb_emb_contend(slot, &w, now, fin_timeout);
	}
	d->is_new = emb_syn || !emb || !lb_syn_flooded(now);
	be = lb_schedule(svc, d->cfg_idx, p, emb_syn ? claim && !flood : syn || p->flow.proto != IPPROTO_TCP, now, &id);
	if (!be) {
		if (claim)
			lb_emb_take(slot, *slot, fp);
		goto no_backend;
	}
	if (claim) {
		/* The slot was taken before scheduling: its backend now. */
		__sync_fetch_and_or(slot, (__u64)(id & XLB_EMB_BE_MASK) << XLB_EMB_BE_SHIFT);
		if (counted)
			lb_active_add(id, 1);
		/* ip_vs_bind_dest: the SYN is the backend's inactive
		 * connection from now on (its upper threshold counts it). */
		lb_dest_bind(id, be, 0);
		goto out;
	}
	if (emb_syn) {
		lb_event(flood == XLB_SYN_FLOOD ? XLB_EV_SYN_FLOOD : XLB_EV_EMBRYO_BUSY);
		goto out;
	}
create:
	d->be = be;
	d->backend = id;
	xlb_conn_new(p, d, now, held, bound);
	d->sync = XLB_SYNC_CREATED;
	/* The 5-tuple may be reused: what any CPU cached for it is stale. */
	lb_epoch_bump(&p->flow);
out:
	d->be = be;
	d->svc_id = svc->id;
	d->backend = id;
	d->action = xlb_action(svc);
	d->kind = XLB_D_SLOW;
	return XLB_CONTINUE;
no_backend:
	d->is_new = 0;
	lb_count(&xlb_svc_stat_v1, svc->id, p->len, 0, 0);
	return XLB_V_DROP_NO_BACKEND;
}

SEC("xdp")
int xlb_xdp(struct xdp_md *ctx)
{
	struct xlb_flow_cache *cache = NULL, *hit;
	/* Set where used: not zeroed for a DR flow the cache forwards. */
	struct xlb_decision d;
	struct xlb_hop hop;
	struct xlb_globals *g;
	struct xlb_pkt p = {};
	__u32 verdict, in_ifindex;
	__u64 now;

	/* Read first, for the flow cache's DR packets: three dependent loads
	 * (rxq->dev->ifindex) that overlap the parsing instead of waiting at
	 * the end. */
	in_ifindex = ctx->ingress_ifindex;
	asm volatile("" : "+r"(in_ifindex));
	verdict = xlb_parse(ctx, &p);
	if (verdict != XLB_CONTINUE)
		return xlb_done(verdict, p.len);
	g = lb_globals();
	if (!g)
		return xlb_done(XLB_V_PASS_NOT_SERVICE, p.len);
	now = lb_now();

	hit = NULL;
	if (p.frag != XLB_FRAG_LATER && !p.icmp_err) {
		/* Established flows: the per-CPU cache, array lookups only. */
		p.cidx = lb_cache_idx(&p.flow);
		cache = lb_cache_slot(p.cidx);
		hit = lb_cache_get(cache, &p, now, g->gen);
		if (hit && hit->action == XLB_ACT_DR) {
			/* The common case, kept short. */
			verdict = xlb_l2_fwd_in(ctx, p.l3_off, hit->mac, hit->smac, hit->ifindex, in_ifindex);
			if (xlb_sent(verdict))
				xlb_count(hit->svc, hit->backend, p.len, 0, XLB_ACT_DR);
			return xlb_done(verdict, p.len);
		}
		if (hit && hit->action == XLB_ACT_TUNNEL) {
			/* Tunnelled flows, kept short too: the entry holds the
			 * outer IPv4 header (xlb_cache_tun); anything else needs
			 * the service's and the backend's configuration. */
			p.hash = hit->hash;
			verdict = XLB_CONTINUE;
			if (hit->tun & XLB_FC_TUN4)
				verdict = xlb_encap_cached(ctx, &p, hit, in_ifindex);
			if (verdict == XLB_CONTINUE) {
				d.svc = lb_svc_at(hit->svc, hit->cfg_idx);
				d.be = d.svc ? lb_backend(hit->backend, hit->svc) : NULL;
				if (d.be)
					verdict = xlb_encap_slow(ctx, &p, d.svc, d.be, hit, &hop);
			}
			if (verdict != XLB_CONTINUE) {
				if (xlb_delivered(verdict))
					xlb_count(hit->svc, hit->backend, p.len, 0, XLB_ACT_TUNNEL);
				return xlb_done(verdict, p.len);
			}
			hit = NULL;
		}
		if (hit) {
			__builtin_memset(&d, 0, sizeof(d));
			p.hash = hit->hash;
			d.action = hit->action;
			d.svc_id = hit->svc;
			d.backend = hit->backend;
			d.svc = lb_svc_at(d.svc_id, hit->cfg_idx);
			d.be = d.svc ? lb_backend(d.backend, d.svc_id) : NULL;
			if (d.be) {
				__builtin_memcpy(hop.mac, hit->mac, ETH_ALEN);
				__builtin_memcpy(hop.smac, hit->smac, ETH_ALEN);
				hop.ifindex = hit->ifindex;
				hop.mtu = hit->mtu;
				hop.valid = 1;
			} else {
				hit = NULL;
			}
		}
	}
	verdict = XLB_CONTINUE;
	if (!hit) {
		/* Not decided by the flow cache. First what ip_rcv_core checks of
		 * every IPv4 packet, the header checksum (about 10 ns, not spent
		 * on the flow cache's packets: their real server's kernel checks
		 * it, and DR and NAT keep a wrong sum wrong, a tunnel carries the
		 * header as it is). */
		if (p.flow.family == XLB_AF_INET && !xlb_ip_csum_ok(ctx, p.l3_off))
			return xlb_done(XLB_V_DROP_IP_CSUM, p.len);
		/* The answers to the control plane's health checks. */
		if (p.flow.proto == IPPROTO_TCP && p.frag == XLB_FRAG_NONE && lb_probe_port(p.flow.dport)) {
			verdict = xlb_probe(ctx, &p, now);
			if (verdict != XLB_CONTINUE)
				return xlb_done(verdict, p.len);
		}
		p.hash = xlb_hash_flow(&p.flow);
		__builtin_memset(&d, 0, sizeof(d));
		__builtin_memset(&hop, 0, sizeof(hop));
		if (p.frag == XLB_FRAG_LATER) {
			verdict = xlb_frag_later(ctx, &p, now, &d);
		} else if (p.icmp_err) {
			verdict = xlb_icmp_error(ctx, &p, &d);
			p.df = 0; /* never answer an error with an error */
		} else {
			verdict = xlb_slow(ctx, &p, cache, now, &d);
			if (verdict == XLB_NEW)
				verdict = xlb_new(ctx, &p, now, &d);
		}
	}
	if (verdict != XLB_CONTINUE)
		return xlb_done(verdict, p.len);

	verdict = xlb_xmit(ctx, &p, d.action, d.svc, d.be, &hop);
	if (xlb_sent(verdict)) {
		switch (d.kind) {
		case XLB_D_SLOW:
			if (d.cacheable && hop.valid) {
				lb_cache_put(cache, &p, d.svc_id, d.cfg_idx, d.backend, d.action, &hop, now, g->gen);
				if (cache && d.action == XLB_ACT_TUNNEL && d.svc && d.be)
					xlb_cache_tun(cache, d.svc, d.be, p.hash);
			}
			if (p.frag == XLB_FRAG_FIRST)
				lb_frag_put(&p, d.svc_id, d.backend, d.action, now);
			break;
		case XLB_D_FRAG:
			lb_event(XLB_EV_FRAG_LATER);
			break;
		case XLB_D_ICMP:
			lb_event(XLB_EV_ICMP_ERROR);
			break;
		}
	}
	if (d.sync == XLB_SYNC_CREATED)
		d.sync = d.svc ? lb_sync_new(&p, d.svc) : 0;
	if (d.sync)
		lb_sync_report(&p.flow, d.svc_id, d.backend, d.sync);
	/* New flows are counted even when not delivered (the connection is
	 * tracked). */
	if (d.is_new || xlb_delivered(verdict))
		xlb_count(d.svc_id, d.backend, p.len, d.is_new, d.action);
	return xlb_done(verdict, p.len);
}
