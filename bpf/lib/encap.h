/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Tunnel encapsulation (ipvsadm -i): IPIP or IPv6-in-IPv6 (by the real
 * server's family; an IPv4 VIP in an IPv6 tunnel and the reverse work
 * too), optionally inside GUE (UDP) for networks that only pass UDP. */
#ifndef XLB_ENCAP_H
#define XLB_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "csum.h"
#include "fwd.h"
#include "hash.h"
#include "parse.h"
#include "structs.h"

#define XLB_GUE_HLEN 4 /* GUE version 0 header, no options */

/* GUE ephemeral source ports: the flow hash picks one, so that real
 * servers' NICs spread flows over their queues. */
#define XLB_GUE_SPORT_MIN 49152

/* xlb_tun_src picks the outer source address: the service's (its low
 * tun_src_bits host bits varied by flow, avoiding all-zeros and all-ones)
 * or else the backend's egress address. Returns -1 when there is none. */
static __always_inline int xlb_tun_src(const struct xlb_svc *svc, const struct xlb_backend *be, __u32 hash,
				       __be32 *src)
{
	__u32 bits = svc->tun_src_bits, mask, host;
	int v6 = be->family == XLB_AF_INET6;
	int last = v6 ? 3 : 0;

	const __be32 *ss = XLB_CA32(svc->tun_src), *bs = XLB_CA32(be->tun_src);

	if (ss[0] | ss[1] | ss[2] | ss[3]) {
		__builtin_memcpy(src, svc->tun_src, 16);
		if (bits >= 2 && bits <= 32) {
			mask = bits == 32 ? 0xffffffff : (1U << bits) - 1;
			host = 1 + hash % (mask - 1); /* 1 .. mask-1 */
			src[last] = bpf_htonl((bpf_ntohl(src[last]) & ~mask) | host);
		}
		return 0;
	}
	if (bs[0] | bs[1] | bs[2] | bs[3]) {
		__builtin_memcpy(src, be->tun_src, 16);
		return 0;
	}
	return -1;
}

/* xlb_encap_room makes room for the outer headers (olen bytes, in place of
 * the frame's l3 - ETH_HLEN bytes of VLAN tags: the frame leaves untagged,
 * see xlb_l2_fwd). It changes the packet's data. */
static __always_inline int xlb_encap_room(struct xdp_md *ctx, __u32 l3, __u32 olen)
{
	return bpf_xdp_adjust_head(ctx, -(int)(olen - (l3 - ETH_HLEN)));
}

/* xlb_ip4_outer builds an outer IPv4 header (version 4, IHL 5, ID 0, TTL
 * 64) in registers: h0 holds its bytes 0-7, h1 bytes 8-15 (the checksum
 * in bytes 10 and 11); the destination follows. A sum read back from the
 * packet waited for its narrower stores (a failed store-to-load
 * forwarding for each word). */
static __always_inline void xlb_ip4_outer(__u8 tos, __u32 tot_len, int df, __u8 proto, __be32 src, __be32 dst,
					  __u64 *h0, __u64 *h1)
{
	__u32 w0 = bpf_htonl(0x45000000 | (__u32)tos << 16 | (tot_len & 0xffff));
	__u32 w1 = df ? bpf_htonl(XLB_IP_DF) : 0;
	__u32 w2 = bpf_htonl(64 << 24 | (__u32)proto << 16);

	w2 |= (__u32)(__u16)~csum_fold64((__u64)w0 + w1 + w2 + src + dst) << 16;
	*h0 = (__u64)w1 << 32 | w0;
	*h1 = (__u64)src << 32 | w2;
}

/* xlb_encap_write writes the outer headers in the room xlb_encap_room made
 * and sends the frame to the next hop (mac, from smac out of ifindex; the
 * receiving interface is in_ifindex). inner_len is the inner IP datagram's
 * length. An outer IPv4 header is h0, h1 and dst4 (xlb_ip4_outer); an
 * outer IPv6 one is built here, with the inner packet's tos, the source
 * src6 and the destination dst6. GUE goes to gue_port. */
static __always_inline __u32 xlb_encap_write(struct xdp_md *ctx, __u32 olen, int o6, int gue, __u16 gue_port,
					     __u8 inner_proto, __u32 inner_len, __u64 h0, __u64 h1, __be32 dst4, __u8 tos,
					     const __be32 *src6, const __be32 *dst6, __u32 hash, const __u8 *mac,
					     const __u8 *smac, __u32 ifindex, __u32 in_ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = ETH_HLEN;

	/* The ethertype (last two bytes of the L2 header) becomes the outer
	 * one; xlb_l2_fwd writes the MACs in front of it. */
	{
		__be16 *et = data + l3 - 2;

		if ((void *)(et + 1) > data_end)
			return XLB_V_DROP_ENCAP;
		*et = o6 ? bpf_htons(ETH_P_IPV6) : bpf_htons(ETH_P_IP);
	}

	if (!o6) {
		struct iphdr *oip = data + l3;

		if ((void *)(oip + 1) > data_end)
			return XLB_V_DROP_ENCAP;
		((__u64 *)oip)[0] = h0;
		((__u64 *)oip)[1] = h1;
		oip->daddr = dst4;
	} else {
		struct ipv6hdr *oip = data + l3;

		if ((void *)(oip + 1) > data_end)
			return XLB_V_DROP_ENCAP;
		/* Version 6, traffic class from the inner packet, flow label from the flow. */
		*(__be32 *)oip = bpf_htonl(0x60000000 | ((__u32)tos << 20) | (hash & 0xfffff));
		oip->payload_len = bpf_htons(inner_len + olen - sizeof(*oip));
		oip->nexthdr = gue ? IPPROTO_UDP : inner_proto;
		oip->hop_limit = 64;
		__builtin_memcpy(&oip->saddr, src6, 16);
		__builtin_memcpy(&oip->daddr, dst6, 16);
	}
	if (gue) {
		struct udphdr *uh = data + l3 + (o6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr));
		__u8 *g = (void *)(uh + 1);

		if ((void *)(g + XLB_GUE_HLEN) > data_end)
			return XLB_V_DROP_ENCAP;
		uh->source = bpf_htons(XLB_GUE_SPORT_MIN + hash % (65536 - XLB_GUE_SPORT_MIN));
		uh->dest = bpf_htons(gue_port);
		uh->len = bpf_htons(inner_len + sizeof(*uh) + XLB_GUE_HLEN);
		/* Zero: no UDP checksum, as IPVS's GUE and Linux's fou accept
		 * (RFC 6935 allows it for tunnels over IPv6). */
		uh->check = 0;
		g[0] = 0; /* version 0, C = 0, no options */
		g[1] = inner_proto;
		g[2] = 0;
		g[3] = 0;
	}
	return xlb_l2_fwd_in(ctx, ETH_HLEN, mac, smac, ifindex, in_ifindex);
}

/* xlb_encap_olen is the length of the outer headers: IPv4 or IPv6 (o6), and
 * UDP and GUE (gue). */
static __always_inline __u32 xlb_encap_olen(int o6, int gue)
{
	return (o6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + (gue ? sizeof(struct udphdr) + XLB_GUE_HLEN : 0);
}

/* xlb_tun_src4 is xlb_tun_src toward an IPv4 backend: the address in a
 * register, not on the stack. */
static __always_inline int xlb_tun_src4(const struct xlb_svc *svc, const struct xlb_backend *be, __u32 hash,
					__be32 *src)
{
	const __be32 *ss = XLB_CA32(svc->tun_src), *bs = XLB_CA32(be->tun_src);
	__u32 bits = svc->tun_src_bits, mask;

	if (ss[0] | ss[1] | ss[2] | ss[3]) {
		*src = ss[0];
		if (bits >= 2 && bits <= 32) {
			mask = bits == 32 ? 0xffffffff : (1U << bits) - 1;
			*src = bpf_htonl((bpf_ntohl(ss[0]) & ~mask) | (1 + hash % (mask - 1)));
		}
		return 0;
	}
	if (bs[0] | bs[1] | bs[2] | bs[3]) {
		*src = bs[0];
		return 0;
	}
	return -1;
}

/* xlb_inner_dgram reads the inner IP packet at l3 (of family): its TOS
 * (IPv4; 0 for IPv6) and its datagram's length, 0 for an IPv6 jumbogram
 * (the datagram is the frame's end). -1: the header is past the frame. */
static __always_inline int xlb_inner_dgram(void *data, void *data_end, __u32 l3, __u8 family, __u8 *tos, __u32 *dlen)
{
	if (family == XLB_AF_INET) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > data_end)
			return -1;
		*tos = ip->tos;
		*dlen = bpf_ntohs(ip->tot_len);
	} else {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		*tos = 0;
		*dlen = bpf_ntohs(ip6->payload_len);
		if (*dlen)
			*dlen += sizeof(*ip6);
	}
	return 0;
}

/* xlb_encap encapsulates the IP packet toward backend be and sends it.
 * p->hash is the flow's xlb_hash_flow (the outer source, the GUE source
 * port and the IPv6 flow label vary with it): the caller's, computed once.
 * hop: the cached next hop or, when not valid, filled from the FIB. A packet that would exceed the MTU is
 * answered with ICMP too big when it may not be fragmented (DF, IPv6) and
 * dropped otherwise (counted).
 *
 * A global function: the verifier checks it once, with unknown arguments,
 * not again for every state of its three callers (36,000 instructions of
 * its count). Its pointers may be NULL, as for any global function. It
 * changes the packet's data: its callers return its verdict and touch no
 * packet pointer after it (6.1 does not invalidate a caller's packet
 * pointers after a global function; 6.13 and later do). The flow cache's
 * packets take xlb_encap_cached, inlined, and come here only for what
 * that leaves. */
__noinline __u32 xlb_encap(struct xdp_md *ctx, struct xlb_pkt *p, const struct xlb_svc *svc,
			   const struct xlb_backend *be, struct xlb_hop *hop)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3, inner_len, olen, hash;
	int gue, o6;
	__u8 inner_proto;
	__be32 src[4];
	__u8 tos = 0;
	__u32 v, dlen;
	__u64 h0 = 0, h1 = 0;

	if (!p || !svc || !be || !hop)
		return XLB_V_DROP_ENCAP;
	l3 = p->l3_off;
	hash = p->hash;
	gue = svc->flags & XLB_SVC_F_GUE;
	o6 = be->family == XLB_AF_INET6;
	inner_proto = p->flow.family == XLB_AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	if (l3 > XLB_MAX_L3_OFF)
		return XLB_V_DROP_MALFORMED;
	l3 = xlb_bound_l3(l3);
	if (xlb_tun_src(svc, be, hash, src))
		return XLB_V_DROP_ENCAP;
	/* The inner packet is the IP datagram: a short frame's Ethernet
	 * padding is not tunnelled as payload (the outer lengths would count
	 * it, and the real server's kernel would take it for the datagram's). */
	inner_len = p->len - l3;
	olen = xlb_encap_olen(o6, gue);
	if (xlb_inner_dgram(data, data_end, l3, p->flow.family, &tos, &dlen))
		return XLB_V_DROP_MALFORMED;
	if (dlen && dlen < inner_len) {
		if (bpf_xdp_adjust_tail(ctx, (int)dlen - (int)inner_len))
			return XLB_V_DROP_ENCAP;
		p->len -= inner_len - dlen;
		inner_len = dlen;
	}

	if (hop->valid) {
		/* Cached next hop: does the encapsulated packet fit the route's
		 * MTU the FIB gave when the flow was cached (within a clock
		 * tick; a helper call less per packet), or without one its
		 * device's? If not, the FIB is asked again: it gives the MTU to
		 * answer with, or a new route. */
		__u32 len = 0;

		if (hop->mtu ? inner_len + olen > hop->mtu
			     : bpf_check_mtu(ctx, hop->ifindex, &len, olen, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED)
			hop->valid = 0;
	}
	if (!hop->valid) {
		v = xlb_fib(ctx, be->family, src, XLB_CA32(be->addr), inner_len + olen, hop);
		if (v == XLB_V_TX_ICMP_TOO_BIG) {
			__u32 mtu = hop->mtu > olen ? hop->mtu - olen : 0;

			if (!p->df)
				return XLB_V_DROP_TOO_BIG;
			if (p->flow.family == XLB_AF_INET6 && mtu < 1280)
				mtu = 1280;
			return xlb_icmp_too_big(ctx, l3, p->flow.family, mtu, p->len);
		}
		if (v == XLB_V_PASS_NO_NEIGH)
			return XLB_V_DROP_NO_MAC; /* the control plane has it resolved */
		if (v)
			return v;
		hop->valid = 1;
	}
	if (xlb_encap_room(ctx, l3, olen))
		return XLB_V_DROP_ENCAP;
	if (!o6)
		xlb_ip4_outer(tos, inner_len + olen, p->df, gue ? IPPROTO_UDP : inner_proto, src[0], XLB_CA32(be->addr)[0],
			      &h0, &h1);
	return xlb_encap_write(ctx, olen, o6, gue, svc->gue_port, inner_proto, inner_len, h0, h1, XLB_CA32(be->addr)[0],
			       tos, src, XLB_CA32(be->addr), hash, hop->mac, hop->smac, hop->ifindex,
			       ctx->ingress_ifindex);
}

/* xlb_cache_tun records in flow cache entry c the outer IPv4 header of
 * the flow's packets (of hash hash) toward backend be of service svc, so
 * that xlb_encap_cached needs neither; nothing for an IPv6 one, or
 * without an outer source. */
static __always_inline void xlb_cache_tun(struct xlb_flow_cache *c, const struct xlb_svc *svc,
					  const struct xlb_backend *be, __u32 hash)
{
	__be32 src = 0;

	c->tun = 0;
	if (be->family != XLB_AF_INET || xlb_tun_src4(svc, be, hash, &src))
		return;
	c->tun_src = src;
	c->tun_dst = XLB_CA32(be->addr)[0];
	c->gue_port = svc->gue_port;
	c->tun = XLB_FC_TUN4 | (svc->flags & XLB_SVC_F_GUE ? XLB_FC_TUN_GUE : 0);
}

/* xlb_encap_cached is xlb_encap for a packet of a flow whose outer IPv4
 * header flow cache entry c holds (XLB_FC_TUN4: xlb_cache_tun), with the
 * entry's next hop, inlined in the entry program: neither the service's
 * nor the backend's configuration is read, and there is no call and
 * return per packet (with a return thunk, each return is a mispredicted
 * branch). The common case only: a datagram (its frame's Ethernet padding
 * trimmed) that fits the cached MTU. Anything else returns XLB_CONTINUE
 * with the packet untouched, for xlb_encap. The outer header is built before
 * bpf_xdp_adjust_head, two words kept across the call: the entry
 * program's stack has no room for many more. */
static __always_inline __u32 xlb_encap_cached(struct xdp_md *ctx, struct xlb_pkt *p, const struct xlb_flow_cache *c,
					      __u32 in_ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off, inner_len, olen, dlen;
	__u8 tos = 0, inner_proto;
	__u64 h0, h1;
	int gue;

	if (l3 > XLB_MAX_L3_OFF)
		return XLB_CONTINUE;
	l3 = xlb_bound_l3(l3);
	gue = c->tun & XLB_FC_TUN_GUE;
	inner_len = p->len - l3;
	olen = xlb_encap_olen(0, gue);
	/* A jumbogram (dlen 0) goes to xlb_encap. */
	if (xlb_inner_dgram(data, data_end, l3, p->flow.family, &tos, &dlen) || !dlen)
		return XLB_CONTINUE;
	inner_proto = p->flow.family == XLB_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
	if (dlen > inner_len || !c->mtu || dlen + olen > c->mtu)
		return XLB_CONTINUE;
	xlb_ip4_outer(tos, dlen + olen, p->df, gue ? IPPROTO_UDP : inner_proto, c->tun_src, c->tun_dst, &h0, &h1);
	asm volatile("" : "+r"(h0), "+r"(h1));
	if (dlen < inner_len) {
		/* A short frame's Ethernet padding, trimmed as xlb_encap does
		 * (a pure TCP ACK's frame is padded). */
		if (bpf_xdp_adjust_tail(ctx, (int)dlen - (int)inner_len))
			return XLB_V_DROP_ENCAP;
		p->len -= inner_len - dlen;
	}
	/* Read again after the calls rather than kept across them. */
	gue = c->tun & XLB_FC_TUN_GUE;
	if (xlb_encap_room(ctx, p->l3_off, xlb_encap_olen(0, gue)))
		return XLB_V_DROP_ENCAP;
	gue = c->tun & XLB_FC_TUN_GUE;
	return xlb_encap_write(ctx, xlb_encap_olen(0, gue), 0, gue, c->gue_port,
			       p->flow.family == XLB_AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IPIP, p->len - p->l3_off, h0, h1,
			       c->tun_dst, 0, NULL, NULL, p->hash, c->mac, c->smac, c->ifindex, in_ifindex);
}

/* xlb_encap_slow is xlb_encap with the next hop of flow cache entry c (in
 * hop, the caller's). */
static __always_inline __u32 xlb_encap_slow(struct xdp_md *ctx, struct xlb_pkt *p, const struct xlb_svc *svc,
					    const struct xlb_backend *be, const struct xlb_flow_cache *c,
					    struct xlb_hop *hop)
{
	xlb_mac_copy(hop->mac, c->mac);
	xlb_mac_copy(hop->smac, c->smac);
	hop->ifindex = c->ifindex;
	hop->mtu = c->mtu;
	hop->valid = 1;
	return xlb_encap(ctx, p, svc, be, hop);
}

#endif /* XLB_ENCAP_H */
