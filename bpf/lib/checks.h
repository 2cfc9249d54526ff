/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the kernel's input path refuses before IPVS (which sits behind it)
 * sees a packet, checked the same way for the packets xlb forwards: the
 * destination MAC (ip_rcv_core, and IPVS's own PACKET_HOST test), martian
 * sources (ip_route_input_slow, fib_validate_source, ip6_rcv_core) and the
 * reverse path (fib_validate_source with rp_filter). Where the kernel
 * depends on a sysctl its default is followed, except rp_filter, which is
 * the interface's, as the control plane writes it into xlb_ifaces_v1.
 * These run where a decision is not in the flow cache; a cached flow's
 * packets are checked against the destination MAC it was cached with. */
#ifndef XLB_CHECKS_H
#define XLB_CHECKS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "fwd.h"
#include "counters.h"

_Static_assert((XLB_IFACE_SLOTS & (XLB_IFACE_SLOTS - 1)) == 0, "XLB_IFACE_SLOTS is a power of two");

/* xlb_iface returns the settings of interface ifindex: from its slot when
 * it has one (an array lookup), else from xlb_ifaces_v1. */
static __always_inline struct xlb_iface *xlb_iface(__u32 ifindex)
{
	__u32 slot = ifindex & (XLB_IFACE_SLOTS - 1);
	struct xlb_iface *ifc = bpf_map_lookup_elem(&xlb_ifslots_v1, &slot);

	if (ifc && ifc->ifindex == ifindex)
		return ifc;
	return bpf_map_lookup_elem(&xlb_ifaces_v1, &ifindex);
}

static __always_inline int xlb_mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

/* xlb_l2_check checks that a frame xlb is about to act on was sent to this
 * director: XLB_CONTINUE when its destination MAC is the receiving
 * interface's, or one of the MACs of the devices stacked on it (a VLAN
 * device, a macvlan such as VRRP's vmac: xlb_if_macs_v1). Any other
 * unicast MAC is another host's: a copy flooded by a switch or mirrored,
 * which the kernel drops (PACKET_OTHERHOST, ip_rcv_core), and which XDP
 * must not forward a second time (DROP_OTHER_HOST). A broadcast or
 * multicast frame goes to the kernel as it is (PASS_L2_MULTICAST): IPVS
 * takes only PACKET_HOST packets, the kernel delivers such a unicast
 * datagram locally (drop_unicast_in_l2_multicast is 0 by default) and does
 * not forward it (ip_forward). An interface without settings (the program
 * run on a device xlb did not attach to: tests) is not checked. */
static __noinline __u32 xlb_l2_check(struct xdp_md *ctx, const struct xlb_pkt *p)
{
	__u32 ifindex = ctx->ingress_ifindex;
	struct xlb_if_mac k = { .ifindex = ifindex };
	struct xlb_iface *ifc;

	if (p->dmac[0] & 1)
		return XLB_V_PASS_L2_MULTICAST;
	ifc = xlb_iface(ifindex);
	if (!ifc || !(ifc->flags & XLB_IF_F_ATTACHED) || xlb_mac_eq(ifc->mac, p->dmac))
		return XLB_CONTINUE;
	__builtin_memcpy(k.mac, p->dmac, ETH_ALEN);
	if (bpf_map_lookup_elem(&xlb_if_macs_v1, &k))
		return XLB_CONTINUE;
	return XLB_V_DROP_OTHER_HOST;
}

/* xlb_fib_oif looks up the route from src to dst as if received on the
 * packet's interface and returns bpf_fib_lookup's answer, with the egress
 * interface in *oif when there is a route (the neighbour need not be
 * resolved: the kernel sets the ifindex before it looks for one). */
static __always_inline long xlb_fib_oif(struct xdp_md *ctx, __u8 family, const __be32 *src, const __be32 *dst,
					__u32 *oif)
{
	__u32 zero = 0;
	struct xlb_scratch *s = bpf_map_lookup_elem(&xlb_scratch, &zero);
	struct bpf_fib_lookup *f;
	long rc;

	if (!s)
		return -1;
	f = (struct bpf_fib_lookup *)s->fib;
	__builtin_memset(f, 0, sizeof(*f));
	f->ifindex = ctx->ingress_ifindex;
	if (family == XLB_AF_INET) {
		f->family = XLB_FIB_AF_INET;
		f->ipv4_src = src[0];
		f->ipv4_dst = dst[0];
	} else {
		f->family = XLB_FIB_AF_INET6;
		__builtin_memcpy(f->ipv6_src, src, 16);
		__builtin_memcpy(f->ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, f, sizeof(*f), 0);
	*oif = f->ifindex;
	return rc;
}

/* xlb_on_iface reports whether egress interface oif is the receiving
 * interface ifindex, or a device stacked on it (a client on a VLAN whose
 * tag the NIC took off before XDP is routed through the VLAN device). */
static __always_inline int xlb_on_iface(__u32 oif, __u32 ifindex)
{
	struct xlb_iface *up;

	if (oif == ifindex)
		return 1;
	up = bpf_map_lookup_elem(&xlb_ifaces_v1, &oif);
	return up && up->parent == ifindex;
}

/* xlb_src_check checks the source of a packet that would create a flow
 * (vip: the service's address), as the kernel's input path checks it
 * before IPVS schedules: XLB_CONTINUE, DROP_MARTIAN_SRC or DROP_RP_FILTER.
 *
 * IPv4 (ip_route_input_slow): a multicast or limited-broadcast source, a
 * 0.0.0.0/8 source, a 127.0.0.0/8 one (route_localnet is 0 by default);
 * and fib_validate_source: a local address of the director (accept_local
 * is 0 by default; xlb sets it on its interfaces for NAT, for the replies
 * it translates, not for clients), the VIP included; with rp_filter
 * (max(conf/all, conf/IF), strict 1, loose 2) the route back to the source
 * must be unicast and, strict, leave through the receiving interface (or a
 * device stacked on it), loose, exist. When the FIB cannot answer because
 * forwarding is off on the interface (a DR director may run so), the flow
 * is not checked and the event is counted (rp_unchecked).
 *
 * IPv6 (ip6_rcv_core): a multicast or loopback source.
 *
 * vip is the service's IPv4 address. A global function: verified once,
 * with unknown arguments, not again at every path of the new-flow code
 * (16,000 instructions of the verifier's). */
__noinline __u32 xlb_src_check(struct xdp_md *ctx, const struct xlb_pkt *p, __be32 vip)
{
	__u32 ifindex, oif = 0;
	struct xlb_iface *ifc;
	long rc;

	if (!p) /* a global function's pointer may be NULL */
		return XLB_V_PASS_NOT_SERVICE;
	ifindex = ctx->ingress_ifindex;
	if (p->flow.family == XLB_AF_INET6) {
		const __be32 *s = XLB_CA32(p->flow.src);

		if (p->flow.src[0] == 0xff ||
		    (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == bpf_htonl(1)))
			return XLB_V_DROP_MARTIAN_SRC;
		return XLB_CONTINUE;
	}
	{
		__be32 src = XLB_CA32(p->flow.src)[0];
		__u32 s = bpf_ntohl(src);

		if ((s >> 24) == 0 || (s >> 24) == 127 || (s >> 28) == 0xe || s == 0xffffffff || src == vip ||
		    bpf_map_lookup_elem(&xlb_local4_v1, &src))
			return XLB_V_DROP_MARTIAN_SRC;
	}
	ifc = xlb_iface(ifindex);
	if (!ifc || !(ifc->flags & XLB_IF_F_ATTACHED) || !ifc->rp_filter)
		return XLB_CONTINUE;
	/* The route back: from the address the packet was sent to. */
	rc = xlb_fib_oif(ctx, XLB_AF_INET, XLB_CA32(p->flow.dst), XLB_CA32(p->flow.src), &oif);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		if (ifc->rp_filter == 1 && !xlb_on_iface(oif, ifindex))
			return XLB_V_DROP_RP_FILTER;
		return XLB_CONTINUE;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		lb_event(XLB_EV_RP_UNCHECKED);
		return XLB_CONTINUE;
	}
	/* No route, or not a unicast one (blackhole, unreachable, prohibit,
	 * local, broadcast). */
	return XLB_V_DROP_RP_FILTER;
}

/* xlb_adopt_check checks that a NAT reply without state (from real server
 * rs to a client) came from where the real server is: the route toward
 * the real server leaves through the receiving interface (or a device on
 * it). A "reply" from the clients' side is a spoof: adopting it would
 * create two connection entries and send a packet from VIP:port to any
 * address the sender chose (DROP_ADOPT_IFACE). */
static __noinline __u32 xlb_adopt_check(struct xdp_md *ctx, const struct xlb_pkt *p)
{
	__u32 oif = 0;
	long rc = xlb_fib_oif(ctx, p->flow.family, XLB_CA32(p->flow.dst), XLB_CA32(p->flow.src), &oif);

	if ((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) && xlb_on_iface(oif, ctx->ingress_ifindex))
		return XLB_CONTINUE;
	return XLB_V_DROP_ADOPT_IFACE;
}

#endif /* XLB_CHECKS_H */
