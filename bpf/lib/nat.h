/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* NAT (ipvsadm -m): rewriting the destination of client packets to the
 * real server and the source of its replies back to the VIP, with
 * incremental checksum updates (RFC 1624). */
#ifndef XLB_NAT_H
#define XLB_NAT_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "csum.h"
#include "parse.h"

/* xlb_nat rewrites the packet's destination (out = 0) or source (out = 1)
 * address to addr and, unless it is a later fragment, its port to port,
 * fixing the IPv4 header checksum and the TCP/UDP checksum (pseudo-header
 * included; a zero IPv4 UDP checksum stays zero). p->flow keeps the packet
 * as received. */
static __noinline __u32 xlb_nat(struct xdp_md *ctx, struct xlb_pkt *p, int out, const __be32 *addr,
				     __u16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, l4 = p->l4_off;
	__be32 *field;
	__be16 *pfield;
	__u64 diff;
	int v6 = p->flow.family == XLB_AF_INET6;

	if (l3 > XLB_MAX_L3_OFF || l4 > XLB_MAX_L4_OFF)
		return XLB_V_DROP_MALFORMED;
	l3 = xlb_bound_l3(l3);
	l4 = xlb_bound_l4(l4);
	if (!v6) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		field = out ? &ip->saddr : &ip->daddr;
		diff = csum_diff32(*field, addr[0]);
		ip->check = csum_apply(ip->check, diff);
		*field = addr[0];
	} else {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		field = out ? (__be32 *)&ip6->saddr : (__be32 *)&ip6->daddr;
		diff = csum_diff_addr(field, addr, 1);
		__builtin_memcpy(field, addr, 16);
	}
	if (p->frag == XLB_FRAG_LATER)
		return XLB_CONTINUE;

	if (p->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4;

		if ((void *)(th + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		pfield = out ? &th->source : &th->dest;
		th->check = csum_apply(th->check, diff + csum_diff16(*pfield, bpf_htons(port)));
		*pfield = bpf_htons(port);
	} else if (p->flow.proto == IPPROTO_UDP) {
		struct udphdr *uh = data + l4;

		if ((void *)(uh + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		pfield = out ? &uh->source : &uh->dest;
		if (uh->check || v6) {
			__u16 c = csum_apply(uh->check, diff + csum_diff16(*pfield, bpf_htons(port)));

			uh->check = c ? c : 0xffff;
		}
		*pfield = bpf_htons(port);
	}
	return XLB_CONTINUE;
}

/* xlb_icmp_nat translates an ICMP error of a NAT flow: the outer
 * destination (out = 0: toward the real server) or source (out = 1: toward
 * the client) becomes outer_addr, and in the quoted packet the address and
 * port on the same side of the flow become inner_addr and inner_port:
 * the quoted packet's source for errors going in (it was a reply from the
 * VIP), its destination for errors going out (it was sent to the VIP).
 * Every checksum covering a changed byte is fixed: outer IPv4 header,
 * quoted IPv4 header, ICMP (with ICMPv6's pseudo-header). The quoted
 * TCP/UDP checksum is left as is (it covers a truncated packet). */
static __always_inline __u32 xlb_icmp_nat(struct xdp_md *ctx, struct xlb_pkt *p, int out, const __be32 *outer_addr,
					  const __be32 *inner_addr, __u16 inner_port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, l4 = p->l4_off;
	__u16 *icsum;
	__u64 icmp_diff = 0;
	__be32 *f;

	if (l3 > XLB_MAX_L3_OFF || l4 > XLB_MAX_L4_OFF)
		return XLB_V_DROP_MALFORMED;
	l3 = xlb_bound_l3(l3);
	l4 = xlb_bound_l4(l4);
	if (p->flow.family == XLB_AF_INET) {
		struct iphdr *ip = data + l3;
		struct xlb_icmphdr *ic = data + l4;
		struct iphdr *iip = (void *)(ic + 1);
		__be16 *ports;
		__u32 ihl;
		__u64 d;

		if ((void *)(ip + 1) > data_end || (void *)(iip + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		ihl = iip->ihl * 4;
		if (ihl < 20 || ihl > 60)
			return XLB_V_DROP_MALFORMED;
		ports = (void *)iip + ihl;
		if ((void *)(ports + 2) > data_end)
			return XLB_V_DROP_MALFORMED;
		/* Outer header. */
		f = out ? &ip->saddr : &ip->daddr;
		ip->check = csum_apply(ip->check, csum_diff32(*f, outer_addr[0]));
		*f = outer_addr[0];
		/* Quoted header: the source going in, the destination going out. */
		f = out ? &iip->daddr : &iip->saddr;
		d = csum_diff32(*f, inner_addr[0]);
		*f = inner_addr[0];
		{
			__u16 old = iip->check;

			iip->check = csum_apply(old, d);
			icmp_diff = d + csum_diff16(old, iip->check);
		}
		if (iip->protocol == IPPROTO_TCP || iip->protocol == IPPROTO_UDP) {
			__be16 *pf = out ? &ports[1] : &ports[0];

			icmp_diff += csum_diff16(*pf, bpf_htons(inner_port));
			*pf = bpf_htons(inner_port);
		}
		icsum = &ic->checksum;
		if ((void *)(icsum + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		*icsum = csum_apply(*icsum, icmp_diff);
	} else {
		struct ipv6hdr *ip6 = data + l3;
		struct xlb_icmphdr *ic = data + l4;
		struct ipv6hdr *iip = (void *)(ic + 1);
		__be16 *ports = (void *)(iip + 1);

		if ((void *)(ip6 + 1) > data_end || (void *)(ports + 2) > data_end)
			return XLB_V_DROP_MALFORMED;
		/* ICMPv6's checksum covers the outer addresses (pseudo-header). */
		f = out ? (__be32 *)&ip6->saddr : (__be32 *)&ip6->daddr;
		icmp_diff = csum_diff_addr(f, outer_addr, 1);
		__builtin_memcpy(f, outer_addr, 16);
		f = out ? (__be32 *)&iip->daddr : (__be32 *)&iip->saddr;
		icmp_diff += csum_diff_addr(f, inner_addr, 1);
		__builtin_memcpy(f, inner_addr, 16);
		if (iip->nexthdr == IPPROTO_TCP || iip->nexthdr == IPPROTO_UDP) {
			__be16 *pf = out ? &ports[1] : &ports[0];

			icmp_diff += csum_diff16(*pf, bpf_htons(inner_port));
			*pf = bpf_htons(inner_port);
		}
		ic->checksum = csum_apply(ic->checksum, icmp_diff);
	}
	return XLB_CONTINUE;
}

#endif /* XLB_NAT_H */
