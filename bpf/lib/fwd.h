/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Sending a frame on: the layer-2 rewrite and transmit (XDP_TX on the
 * receiving interface, devmap redirect to another), next hops from the
 * kernel's FIB, and ICMP "too big" answers. */
#ifndef XLB_FWD_H
#define XLB_FWD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "csum.h"
#include "maps.h"
#include "parse.h"

/* Address families of struct bpf_fib_lookup (AF_INET, AF_INET6). */
#define XLB_FIB_AF_INET 2
#define XLB_FIB_AF_INET6 10

/* A next hop. */
struct xlb_hop {
	__u8 mac[6];
	__u8 smac[6];
	__u32 ifindex;
	/* The route's MTU from a FIB lookup that checked one (tot_len): the
	 * MTU exceeded (TX_ICMP_TOO_BIG) or, found, the one the next packets
	 * must fit; 0: unknown. */
	__u32 mtu;
	__u32 valid; /* mac, smac and ifindex are set */
};

/* xlb_mac_copy copies a MAC in three 16-bit moves, not six byte moves:
 * the barriers hide the byte alignment of struct ethhdr's and the u8
 * arrays, which are 2-aligned wherever a MAC is kept (the verifier wants
 * stack accesses aligned; packet ones need not be where XDP runs
 * natively). */
static __always_inline void xlb_mac_copy(void *dst, const void *src)
{
	asm volatile("" : "+r"(dst));
	asm volatile("" : "+r"(src));
	((__u16 *)dst)[0] = ((const __u16 *)src)[0];
	((__u16 *)dst)[1] = ((const __u16 *)src)[1];
	((__u16 *)dst)[2] = ((const __u16 *)src)[2];
}

/* xlb_l2_fwd_in rewrites the MACs and sends the frame out of ifindex, by
 * XDP_TX if that is in_ifindex, the receiving interface. l3_off
 * is where the IP header starts: a frame received with VLAN tags leaves
 * without them. xlb forwards at layer 3, as IPVS behind the VLAN device
 * would: the real server (DR: its MAC and interface as the neighbour table
 * has them; NAT, tunnel: the route) decides where the frame goes, not the
 * VLAN it came from; and with the default VLAN offload the kernel has taken
 * the tag off before XDP, so a tag kept here would differ with the NIC's
 * settings. The tags' bytes are given back (bpf_xdp_adjust_head). */
static __always_inline __u32 xlb_l2_fwd_in(struct xdp_md *ctx, __u32 l3_off, const __u8 *mac, const __u8 *smac,
					   __u32 ifindex, __u32 in_ifindex)
{
	void *data, *data_end;
	struct ethhdr *eth;

	if (l3_off != ETH_HLEN) {
		if (l3_off > XLB_MAX_L3_OFF || l3_off < ETH_HLEN ||
		    bpf_xdp_adjust_head(ctx, (int)(l3_off - ETH_HLEN)))
			return XLB_V_DROP_MALFORMED;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	xlb_mac_copy(eth->h_dest, mac);
	xlb_mac_copy(eth->h_source, smac);
	if (ifindex == in_ifindex)
		return XLB_V_TX;
	/* An interface without xlb is not in the devmap: the kernel forwards. */
	if (bpf_redirect_map(&xlb_devmap_v1, ifindex, XDP_PASS) != XDP_REDIRECT)
		return XLB_V_PASS_NO_DEVMAP;
	return XLB_V_REDIRECT;
}

/* xlb_l2_fwd is xlb_l2_fwd_in with the receiving interface read now. */
static __always_inline __u32 xlb_l2_fwd(struct xdp_md *ctx, __u32 l3_off, const __u8 *mac, const __u8 *smac,
					__u32 ifindex)
{
	return xlb_l2_fwd_in(ctx, l3_off, mac, smac, ifindex, ctx->ingress_ifindex);
}

/* xlb_fib finds the next hop toward dst (from src). With tot_len set the
 * route's MTU is checked too. Returns 0 and fills hop, or the verdict:
 * PASS_NO_NEIGH (the kernel must resolve it), TX_ICMP_TOO_BIG (hop->mtu
 * is the MTU), PASS_FIB (no route). */
static __always_inline __u32 xlb_fib(struct xdp_md *ctx, __u8 family, const __be32 *src, const __be32 *dst,
				     __u16 tot_len, struct xlb_hop *hop)
{
	__u32 zero = 0;
	struct xlb_scratch *s = bpf_map_lookup_elem(&xlb_scratch, &zero);
	struct bpf_fib_lookup *f;
	long rc;

	if (!s)
		return XLB_V_PASS_FIB;
	f = (struct bpf_fib_lookup *)s->fib;
	__builtin_memset(f, 0, sizeof(*f));
	f->ifindex = ctx->ingress_ifindex;
	f->tot_len = tot_len;
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
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		__builtin_memcpy(hop->mac, f->dmac, ETH_ALEN);
		__builtin_memcpy(hop->smac, f->smac, ETH_ALEN);
		hop->ifindex = f->ifindex;
		/* Set on success since 5.12 (bpf_fib_set_fwd_params); tot_len
		 * shares its place, so it is only read if one was checked. */
		hop->mtu = tot_len ? f->mtu_result : 0;
		return 0;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return XLB_V_PASS_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		hop->mtu = f->mtu_result;
		return XLB_V_TX_ICMP_TOO_BIG;
	}
	return XLB_V_PASS_FIB;
}

/* xlb_move_l2 moves the Ethernet header (and VLAN tags: l3_off bytes) from
 * from_off to the frame start, swapping the MACs when reply is set. */
static __always_inline int xlb_move_l2(void *data, void *data_end, __u32 from_off, __u32 l3_off, int reply)
{
	__u8 *to = data, *from = data + from_off;

	if ((void *)(from + XLB_MAX_L3_OFF) > data_end || (void *)(to + XLB_MAX_L3_OFF) > data_end)
		return -1;
	if (reply) {
		__u8 mac[ETH_ALEN];

		__builtin_memcpy(mac, from, ETH_ALEN);
		__builtin_memmove(to, from + ETH_ALEN, ETH_ALEN);
		__builtin_memcpy(to + ETH_ALEN, mac, ETH_ALEN);
	} else {
		__builtin_memmove(to, from, 2 * ETH_ALEN);
	}
	/* Ethertype, or VLAN tags and ethertype. */
	__builtin_memmove(to + 12, from + 12, 2);
	if (l3_off >= ETH_HLEN + 4)
		__builtin_memmove(to + 14, from + 14, 4);
	if (l3_off >= ETH_HLEN + 8)
		__builtin_memmove(to + 18, from + 18, 4);
	return 0;
}

/* xlb_icmp_too_big answers the packet's source, from the address it was
 * sent to and out of the receiving interface, with ICMP fragmentation
 * needed (IPv4) or ICMPv6 packet too big carrying mtu. It quotes the
 * original IP header and 8 bytes of its payload. len is the frame length.
 *
 * A global function (verified once, with unknown arguments, instead of at
 * every path of its callers: a rare path that cost the verifier 40,000
 * instructions). It changes the packet's data: its callers return its
 * verdict at once and touch no packet pointer after it (6.1 does not
 * invalidate a caller's packet pointers after a global function, 6.13 and
 * later do). */
__noinline __u32 xlb_icmp_too_big(struct xdp_md *ctx, __u32 l3_off, __u8 family, __u32 mtu, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 keep, hdr, i;
	__u64 sum;

	if (l3_off > XLB_MAX_L3_OFF)
		return XLB_V_DROP_MALFORMED;
	l3_off = xlb_bound_l3(l3_off);
	if (family == XLB_AF_INET) {
		struct iphdr *ip = data + l3_off;

		if ((void *)(ip + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		keep = ip->ihl * 4 + 8;
		hdr = sizeof(struct iphdr) + sizeof(struct xlb_icmphdr);
	} else {
		keep = sizeof(struct ipv6hdr) + 8;
		hdr = sizeof(struct ipv6hdr) + sizeof(struct xlb_icmphdr);
	}
	if (len < l3_off + keep || len > 0xffff)
		return XLB_V_DROP_MALFORMED;
	if (len > l3_off + keep && bpf_xdp_adjust_tail(ctx, (int)(l3_off + keep) - (int)len))
		return XLB_V_DROP_ENCAP;
	if (bpf_xdp_adjust_head(ctx, -(int)hdr))
		return XLB_V_DROP_ENCAP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (xlb_move_l2(data, data_end, hdr, l3_off, 1))
		return XLB_V_DROP_ENCAP;

	if (family == XLB_AF_INET) {
		struct iphdr *nip = data + l3_off;
		struct xlb_icmphdr *ic = (void *)(nip + 1);
		struct iphdr *oip = (void *)(ic + 1);
		__u32 *w = (__u32 *)ic;

		if ((void *)(oip + 1) > data_end)
			return XLB_V_DROP_ENCAP;
		nip->version = 4;
		nip->ihl = 5;
		nip->tos = 0;
		nip->tot_len = bpf_htons(hdr + keep);
		nip->id = 0;
		nip->frag_off = 0;
		nip->ttl = 64;
		nip->protocol = IPPROTO_ICMP;
		nip->check = 0;
		nip->saddr = oip->daddr;
		nip->daddr = oip->saddr;
		nip->check = ~csum_fold64(csum_words((__u32 *)nip, 5));
		ic->type = XLB_ICMP_DEST_UNREACH;
		ic->code = XLB_ICMP_FRAG_NEEDED;
		ic->checksum = 0;
		ic->rest = bpf_htonl(mtu & 0xffff);
		/* ICMP header and quote: at most 8 + 60 + 8 bytes, a multiple of 4. */
		sum = 0;
		for (i = 0; i < (8 + 60 + 8) / 4; i++) {
			if (i >= (8 + keep) / 4 || (void *)(w + i + 1) > data_end)
				break;
			sum += w[i];
		}
		ic->checksum = ~csum_fold64(sum);
	} else {
		struct ipv6hdr *nip = data + l3_off;
		struct xlb_icmphdr *ic;
		struct ipv6hdr *oip;
		__u32 *w;

		/* Every pointer below from this one register, so that the
		 * verifier's bounds check of one holds for the others (the
		 * compiler would otherwise add the variable L2 length again). */
		asm volatile("" : "+r"(nip));
		ic = (void *)(nip + 1);
		oip = (void *)(ic + 1);
		w = (__u32 *)ic;

		if ((void *)oip + keep > data_end)
			return XLB_V_DROP_ENCAP;
		*(__be32 *)nip = bpf_htonl(0x60000000);
		nip->payload_len = bpf_htons(sizeof(*ic) + keep);
		nip->nexthdr = IPPROTO_ICMPV6;
		nip->hop_limit = 64;
		nip->saddr = oip->daddr;
		nip->daddr = oip->saddr;
		ic->type = XLB_ICMPV6_PKT_TOOBIG;
		ic->code = 0;
		ic->checksum = 0;
		ic->rest = bpf_htonl(mtu);
		/* Pseudo-header, then the ICMPv6 message (8 + 48 bytes). */
		sum = csum_words((__u32 *)&nip->saddr, 8);
		sum += bpf_htonl(sizeof(*ic) + keep) + bpf_htonl(IPPROTO_ICMPV6);
		sum += csum_words(w, (8 + 40 + 8) / 4);
		ic->checksum = ~csum_fold64(sum);
	}
	return XLB_V_TX_ICMP_TOO_BIG;
}

#endif /* XLB_FWD_H */
