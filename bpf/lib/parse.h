/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Packet parsing: Ethernet (plus up to XLB_MAX_VLAN_TAGS 802.1Q/802.1ad
 * tags), IPv4, IPv6 (with up to XLB_MAX_IPV6_EXT extension headers), TCP,
 * UDP, ICMP. Every access is bounds-checked against data_end, and every
 * header after the IP header against the end of the IP datagram (its total
 * or payload length): bytes after it are Ethernet padding, never a header.
 * What the kernel's input path drops as malformed is dropped here too, by
 * the same rules (the kernel function is named where it is checked). */
#ifndef XLB_PARSE_H
#define XLB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "structs.h"
#include "ipopts.h"

#define XLB_TCP_FIN 0x01
#define XLB_TCP_SYN 0x02
#define XLB_TCP_RST 0x04
#define XLB_TCP_ACK 0x10

#define XLB_IP_DF 0x4000
#define XLB_IP_MF 0x2000
#define XLB_IP_OFFSET 0x1fff

enum xlb_frag_kind {
	XLB_FRAG_NONE = 0,
	XLB_FRAG_FIRST, /* offset 0, more fragments: carries the ports */
	XLB_FRAG_LATER, /* offset > 0: no transport header */
};

/* ICMP and ICMPv6 headers (the uapi headers pull in libc). */
struct xlb_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be32 rest; /* fragmentation needed: unused(16), next-hop MTU(16); ICMPv6 packet too big: MTU */
};

#define XLB_ICMP_DEST_UNREACH 3
#define XLB_ICMP_FRAG_NEEDED 4
#define XLB_ICMPV6_PKT_TOOBIG 2

struct xlb_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct xlb_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

/* A parsed packet. flow is the connection-table key (zero padded). */
struct xlb_pkt {
	struct xlb_flow flow;
	__u32 len;      /* frame length in bytes */
	__u16 l3_off;   /* IP header offset from the frame start */
	__u16 l4_off;   /* transport header offset (0 for later fragments) */
	__u8 tcp_flags;
	__u8 frag;      /* enum xlb_frag_kind */
	__u8 icmp_err;  /* an ICMP/ICMPv6 error (l4_off: its header) */
	__u8 df;        /* IPv4 don't-fragment set, or IPv6 */
	__u32 frag_id;  /* IPv4 ID or IPv6 fragment identification */
	__u32 hash;     /* xlb_hash_flow(&flow), once known */
	__u32 cidx;     /* lb_cache_idx(&flow), once known (flow cache packets) */
	__u8 dmac[6] __attribute__((aligned(4))); /* destination MAC as received */
	__u8 pad[2];
};

/* xlb_flow_ports stores a flow's ports, and xlb_flow_pf its protocol and
 * family (and the zero padding), each pair as one 32-bit word of struct
 * xlb_flow (little-endian: bpf2go builds for bpfel only). The flow cache
 * hashes and compares the flow by 32-bit words right after parsing, and a
 * word load that spans two narrower stores still in flight waits for both
 * to reach the cache (a failed store-to-load forwarding), which cost a
 * cached packet as much as its lookup. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "struct xlb_flow's words are stored little-endian");
/* xlb_tcp_syn reports whether a parsed packet is a TCP SYN (without ACK):
 * a new connection's first packet. */
static __always_inline int xlb_tcp_syn(const struct xlb_pkt *p)
{
	return p->flow.proto == IPPROTO_TCP && (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) == XLB_TCP_SYN;
}

static __always_inline void xlb_flow_ports(struct xlb_flow *f, __u16 sport, __u16 dport)
{
	*(__u32 *)&f->sport = (__u32)sport | (__u32)dport << 16;
}

static __always_inline void xlb_flow_pf(struct xlb_flow *f, __u8 proto, __u8 family)
{
	*(__u32 *)&f->proto = (__u32)proto | (__u32)family << 8;
}

/* Transport headers further into the frame than this are not parsed (the
 * packet goes to the kernel): the bound lets the verifier check accesses
 * at the recorded offsets. */
#define XLB_MAX_L4_OFF 512

/* xlb_parse_l4 reads ports (and TCP flags) at offset off; end is the
 * offset of the end of the IP datagram. */
static __always_inline int xlb_parse_l4(void *data, void *data_end, __u32 off, __u32 end, struct xlb_pkt *p)
{
	if (off > XLB_MAX_L4_OFF)
		return XLB_V_DROP_IPV6_EXT;
	p->l4_off = off;
	if (p->flow.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > data_end || off + sizeof(*th) > end || th->doff < 5)
			return XLB_V_DROP_MALFORMED;
		/* tcp_v4_rcv/tcp_v6_rcv: pskb_may_pull(skb, doff * 4) on the
		 * segment (trimmed to the IP length). A first fragment's header
		 * may continue in the next fragment: the kernel reassembles. */
		if (p->frag == XLB_FRAG_NONE && off + th->doff * 4 > end)
			return XLB_V_DROP_TCP_HEADER;
		xlb_flow_ports(&p->flow, bpf_ntohs(th->source), bpf_ntohs(th->dest));
		p->tcp_flags = ((__u8 *)th)[13];
	} else if (p->flow.proto == IPPROTO_UDP) {
		struct udphdr *uh = data + off;
		__u32 ulen;

		if ((void *)(uh + 1) > data_end || off + sizeof(*uh) > end)
			return XLB_V_DROP_MALFORMED;
		/* __udp4_lib_rcv: the length covers the header and fits the
		 * datagram (a shorter one is trimmed to, and accepted);
		 * __udp6_lib_rcv takes 0 as a jumbogram's (the payload). A first
		 * fragment's length is the reassembled datagram's. */
		ulen = bpf_ntohs(uh->len);
		if (!(ulen == 0 && p->flow.family == XLB_AF_INET6) &&
		    (ulen < sizeof(*uh) || (p->frag == XLB_FRAG_NONE && off + ulen > end)))
			return XLB_V_DROP_UDP_LENGTH;
		xlb_flow_ports(&p->flow, bpf_ntohs(uh->source), bpf_ntohs(uh->dest));
	}
	else if (p->flow.proto == IPPROTO_ICMP || p->flow.proto == IPPROTO_ICMPV6) {
		__u8 *type = data + off;

		if ((void *)(type + 8) > data_end || off + 8 > end)
			return XLB_V_DROP_MALFORMED;
		if (p->flow.proto == IPPROTO_ICMP)
			/* destination unreachable, time exceeded, parameter problem */
			p->icmp_err = *type == 3 || *type == 11 || *type == 12;
		else
			/* destination unreachable, packet too big, time exceeded, parameter problem */
			p->icmp_err = *type >= 1 && *type <= 4;
	}
	/* Other protocols keep zero ports: they match no service. */
	return XLB_CONTINUE;
}

/* xlb_bound_u16 bounds a value for the verifier: kernels before 6.x lose the
 * range of a byte-swapped register (BPF_END), so pointer arithmetic with
 * bpf_ntohs() of a header field is rejected as unbounded. */
static __always_inline __u64 xlb_bound_u16(__u64 v)
{
	asm volatile("%0 &= 0xffff" : "+r"(v));
	return v;
}

/* xlb_bound_l4 bounds an L4 offset already checked against XLB_MAX_L4_OFF. */
_Static_assert(XLB_MAX_L4_OFF <= 0x3ff, "xlb_bound_l4 masks with 0x3ff");
static __always_inline __u64 xlb_bound_l4(__u64 v)
{
	asm volatile("%0 &= 0x3ff" : "+r"(v));
	return v;
}

static __always_inline int xlb_parse_ipv4(struct xdp_md *ctx, void *data, void *data_end, __u32 off,
					  struct xlb_pkt *p)
{
	struct iphdr *ip = data + off;
	__u32 ihl, tot_len;
	__u16 frag_off;

	if ((void *)(ip + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return XLB_V_DROP_MALFORMED;
	ihl = ip->ihl * 4;
	tot_len = xlb_bound_u16(bpf_ntohs(ip->tot_len));
	/* The frame may carry padding after the datagram, never less. */
	if (tot_len < ihl || data + off + tot_len > data_end)
		return XLB_V_DROP_MALFORMED;

	xlb_flow_pf(&p->flow, ip->protocol, XLB_AF_INET);
	XLB_A32(p->flow.src)[0] = ip->saddr;
	XLB_A32(p->flow.dst)[0] = ip->daddr;
	if (ihl > sizeof(*ip)) {
		/* ip_rcv_finish_core -> ip_rcv_options (rare: a call). */
		int v = xlb_ip_options(ctx, off + sizeof(*ip), ihl - sizeof(*ip));

		if (v != XLB_CONTINUE)
			return v;
	}

	frag_off = bpf_ntohs(ip->frag_off);
	p->df = !!(frag_off & XLB_IP_DF);
	if (frag_off & (XLB_IP_MF | XLB_IP_OFFSET)) {
		p->frag_id = ip->id;
		if (frag_off & XLB_IP_OFFSET) {
			p->frag = XLB_FRAG_LATER;
			return XLB_CONTINUE;
		}
		p->frag = XLB_FRAG_FIRST;
	}
	return xlb_parse_l4(data, data_end, off + ihl, off + tot_len, p);
}

static __always_inline int xlb_parse_ipv6(void *data, void *data_end, __u32 off, struct xlb_pkt *p)
{
	struct ipv6hdr *ip6 = data + off;
	__u32 l4, end, plen;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	if (ip6->version != 6)
		return XLB_V_DROP_MALFORMED;
	plen = xlb_bound_u16(bpf_ntohs(ip6->payload_len));
	if (data + off + sizeof(*ip6) + plen > data_end)
		return XLB_V_DROP_MALFORMED;
	/* payload_len 0 is a jumbogram (hop-by-hop option): the frame's end. */
	end = plen ? off + sizeof(*ip6) + plen : p->len;

	p->flow.family = XLB_AF_INET6;
	p->df = 1; /* IPv6 routers never fragment */
	__builtin_memcpy(p->flow.src, &ip6->saddr, 16);
	__builtin_memcpy(p->flow.dst, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	l4 = off + sizeof(*ip6);

	/* XLB_MAX_IPV6_EXT headers, then the transport header. */
#pragma unroll
	for (i = 0; i <= XLB_MAX_IPV6_EXT; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
			/* RFC 8200 4.1: only right after the IPv6 header, where
			 * ipv6_rcv parses it (elsewhere no protocol handles it). */
			if (i > 0)
				return XLB_V_DROP_IPV6_HBH;
			/* fallthrough */
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ipv6_opt_hdr *eh = data + l4;

			if (i == XLB_MAX_IPV6_EXT)
				return XLB_V_DROP_IPV6_EXT;
			if ((void *)(eh + 1) > data_end || l4 + sizeof(*eh) > end)
				return XLB_V_DROP_MALFORMED;
			nexthdr = eh->nexthdr;
			l4 += (eh->hdrlen + 1) * 8;
			break;
		}
		case IPPROTO_FRAGMENT: {
			struct xlb_ipv6_frag_hdr *fh = data + l4;
			__u16 fo;

			if (i == XLB_MAX_IPV6_EXT)
				return XLB_V_DROP_IPV6_EXT;
			if ((void *)(fh + 1) > data_end || l4 + sizeof(*fh) > end)
				return XLB_V_DROP_MALFORMED;
			nexthdr = fh->nexthdr;
			l4 += sizeof(*fh);
			fo = bpf_ntohs(fh->frag_off);
			p->frag_id = fh->id;
			if (fo & 0xfff8) {
				xlb_flow_pf(&p->flow, nexthdr, XLB_AF_INET6);
				p->frag = XLB_FRAG_LATER;
				return XLB_CONTINUE;
			}
			if (fo & 1)
				p->frag = XLB_FRAG_FIRST;
			break;
		}
		default:
			xlb_flow_pf(&p->flow, nexthdr, XLB_AF_INET6);
			return xlb_parse_l4(data, data_end, l4, end, p);
		}
	}
	return XLB_V_DROP_IPV6_EXT; /* not reached */
}

/* xlb_parse fills p. It returns XLB_CONTINUE for an IPv4/IPv6 packet,
 * otherwise the verdict. VLAN tags (802.1Q, 802.1ad, QinQ) are skipped:
 * xlb serves a tagged frame as the same frame untagged, as IPVS behind
 * the VLAN device would, and forwards it untagged (see xlb_l2_fwd). */
static __always_inline int xlb_parse(struct xdp_md *ctx, struct xlb_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;
	int i;

	p->len = data_end - data;
	if ((void *)(eth + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	{
		/* Two loads, not six: packet loads need no alignment where XDP
		 * runs natively (the barrier hides struct ethhdr's packing). */
		const __u8 *d = data;

		asm volatile("" : "+r"(d));
		*(__u32 *)p->dmac = *(const __u32 *)d;
		*(__u16 *)(p->dmac + 4) = *(const __u16 *)(d + 4);
		proto = *(const __be16 *)(d + 12); /* eth->h_proto in one load */
	}
#pragma unroll
	for (i = 0; i < XLB_MAX_VLAN_TAGS; i++) {
		struct xlb_vlan_hdr *vh = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	p->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return xlb_parse_ipv4(ctx, data, data_end, off, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return xlb_parse_ipv6(data, data_end, off, p);
	return XLB_V_PASS_NOT_IP;
}

#endif /* XLB_PARSE_H */
