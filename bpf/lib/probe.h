/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Health-check probes. A tcp check of the control plane is a half-open
 * probe (control/health/synprobe.go): a SYN from a raw socket, sent from a
 * port a bound, never-listening socket reserves. The control plane
 * registers that port and the source address (xlb_probe_srcs), and the
 * program takes the answers off the wire instead of the kernel: a SYN-ACK
 * (the real server is up) is answered at once with the RST the kernel
 * would send (tcp_v4_send_reset, tcp_v6_send_reset: no socket takes it),
 * which frees the real server's request socket; a RST (refused) is
 * dropped. Both are reported to the control plane in a ring per CPU
 * (xlb_probe_slots), which it reads as the sync reports (sync.h). The
 * kernel's path of each answer (the raw socket's copy, the TCP lookup,
 * the reset built and routed, the read) was most of a check's cost on the
 * director.
 *
 * Only packets the flow cache did not decide come here, and only TCP ones
 * to a registered port (a bit in xlb_probe_ports, an array lookup) are
 * looked up: nothing else pays more than that test. */
#ifndef XLB_PROBE_H
#define XLB_PROBE_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "csum.h"
#include "parse.h"
#include "ipopts.h"
#include "checks.h"

/* Answers are taken only while the control plane advanced the program's
 * clock (every 100 ms, xlb_clock) within this long (ns): the ports of a
 * process that is gone are anyone's, and their answers the kernel's. */
#ifndef XLB_PROBE_STALE
#define XLB_PROBE_STALE (1000ULL * 1000000ULL)
#endif

/* A probe's source (key of xlb_probe_srcs): the director's address and the
 * reserved port. */
struct xlb_probe_src {
	XLB_ADDR(addr);
	__u16 port;  /* host order, as struct xlb_flow's */
	__u8 family; /* XLB_AF_INET or XLB_AF_INET6 */
	__u8 pad;
};

/* An answer reported to the control plane. */
struct xlb_probe_ans {
	XLB_ADDR(addr); /* the real server's */
	__u16 port;     /* the real server's (host order) */
	__u16 dport;    /* the probe's source port (host order) */
	__u32 ack;      /* the acknowledgement number (network order): the probe's sequence + 1 */
	__u8 family;
	__u8 rst;       /* 1: a RST (refused); 0: a SYN-ACK */
	__u8 pad[6];
	__u64 taken;    /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when it was taken: the
			 * check's duration ends there, not when the rings are read */
};

/* A slot of a CPU's answer ring: seq is 0 while it is written, then the
 * answer's sequence number on its CPU plus one (sync.h's slots). */
struct xlb_probe_slot {
	__u64 seq;
	struct xlb_probe_ans ans;
};

/* A CPU's next sequence number, alone in its cache line. */
struct xlb_probe_head {
	__u64 next;
	__u64 pad[7];
};

/* The registered ports, a bit each: port p is bit p % 64 of word p / 64. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 64);
	__type(key, __u32);
	__type(value, __u64);
} xlb_probe_ports SEC(".maps");

/* The registered sources. Not pinned, as the ports: the sockets that
 * reserve them are the process's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_PROBE_SRCS);
	__type(key, struct xlb_probe_src);
	__type(value, __u32);
} xlb_probe_srcs SEC(".maps");

/* The answer rings: XLB_PROBE_SLOTS slots for each possible CPU, in the
 * order of the CPUs (sized at load), mapped into the reader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XLB_PROBE_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xlb_probe_slot);
} xlb_probe_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xlb_probe_head);
} xlb_probe_heads SEC(".maps");

/* lb_probe_port reports whether port (host order) is a probe's. */
static __always_inline int lb_probe_port(__u16 port)
{
	__u32 p = port, idx = p >> 6;
	__u64 *w = bpf_map_lookup_elem(&xlb_probe_ports, &idx);

	return w && ((*w >> (p & 63)) & 1);
}

/* lb_probe_report writes an answer to this CPU's ring (as lb_sync_report). */
static __always_inline void lb_probe_report(const struct xlb_pkt *p, __u32 ack, __u8 rst)
{
	__u32 cpu = bpf_get_smp_processor_id(), idx;
	struct xlb_probe_head *h;
	struct xlb_probe_slot *s;
	__u64 seq;

	h = bpf_map_lookup_elem(&xlb_probe_heads, &cpu);
	if (!h)
		return;
	seq = __sync_fetch_and_add(&h->next, 1);
	idx = cpu * XLB_PROBE_SLOTS + (__u32)(seq & (XLB_PROBE_SLOTS - 1));
	s = bpf_map_lookup_elem(&xlb_probe_slots, &idx);
	if (!s)
		return;
	__sync_lock_test_and_set(&s->seq, 0);
	__builtin_memcpy(s->ans.addr, p->flow.src, sizeof(s->ans.addr));
	s->ans.port = p->flow.sport;
	s->ans.dport = p->flow.dport;
	s->ans.ack = ack;
	s->ans.family = p->flow.family;
	s->ans.rst = rst;
	__builtin_memset(s->ans.pad, 0, sizeof(s->ans.pad));
	s->ans.taken = bpf_ktime_get_ns();
	__sync_lock_test_and_set(&s->seq, seq + 1);
}

/* xlb_probe_rst turns the SYN-ACK in the frame into the RST that answers
 * it, sent back where it came from: MACs swapped, VLAN tags kept, an IP
 * header without options or extension headers from the address it was
 * sent to, and a TCP header whose sequence number is the SYN-ACK's
 * acknowledgement (tcp_v4_send_reset for a segment with ACK set). len is
 * the frame's length.
 *
 * A global function (verified once). It changes the packet's data: its
 * caller returns its verdict at once and touches no packet pointer after
 * it. */
__noinline __u32 xlb_probe_rst(struct xdp_md *ctx, __u32 l3_off, __u32 l4_off, __u32 family, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__be32 saddr[4], daddr[4], ack;
	__u32 iphl, keep;
	__be16 sport, dport;
	__u8 mac[ETH_ALEN];
	struct tcphdr *th;
	struct ethhdr *eth;
	__u64 sum;

	if (l3_off > XLB_MAX_L3_OFF || l4_off > XLB_MAX_L4_OFF)
		return XLB_V_DROP_MALFORMED;
	l3_off = xlb_bound_l3(l3_off);
	th = data + xlb_bound_l4(l4_off);
	if ((void *)(th + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	sport = th->source;
	dport = th->dest;
	ack = th->ack_seq;
	if (family == XLB_AF_INET) {
		struct iphdr *ip = data + l3_off;

		if ((void *)(ip + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		saddr[0] = ip->saddr;
		daddr[0] = ip->daddr;
		iphl = sizeof(struct iphdr);
	} else {
		struct ipv6hdr *ip6 = data + l3_off;

		if ((void *)(ip6 + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		__builtin_memcpy(saddr, &ip6->saddr, sizeof(saddr));
		__builtin_memcpy(daddr, &ip6->daddr, sizeof(daddr));
		iphl = sizeof(struct ipv6hdr);
	}
	keep = l3_off + iphl + sizeof(struct tcphdr);
	if (len < keep || len > 0xffff)
		return XLB_V_DROP_MALFORMED;
	if (len > keep && bpf_xdp_adjust_tail(ctx, (int)keep - (int)len))
		return XLB_V_DROP_ENCAP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	if (family == XLB_AF_INET) {
		struct iphdr *ip = data + l3_off;

		/* One register for both pointers (see xlb_icmp_too_big). */
		asm volatile("" : "+r"(ip));
		th = (void *)(ip + 1);
		if ((void *)(th + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0;
		ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
		ip->id = 0;
		ip->frag_off = bpf_htons(0x4000); /* DF, as ip_send_unicast_reply's */
		ip->ttl = 64;
		ip->protocol = IPPROTO_TCP;
		ip->check = 0;
		ip->saddr = daddr[0];
		ip->daddr = saddr[0];
		ip->check = ~csum_fold64(csum_words((__u32 *)ip, 5));
		sum = (__u64)daddr[0] + saddr[0];
	} else {
		struct ipv6hdr *ip6 = data + l3_off;

		asm volatile("" : "+r"(ip6));
		th = (void *)(ip6 + 1);
		if ((void *)(th + 1) > data_end)
			return XLB_V_DROP_MALFORMED;
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(sizeof(struct tcphdr));
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = 64;
		__builtin_memcpy(&ip6->saddr, daddr, sizeof(daddr));
		__builtin_memcpy(&ip6->daddr, saddr, sizeof(saddr));
		sum = csum_words((__u32 *)&ip6->saddr, 8);
	}
	/* The pseudo-header's protocol and length (RFC 9293 3.1, RFC 8200 8.1). */
	sum += bpf_htonl(sizeof(struct tcphdr)) + bpf_htonl(IPPROTO_TCP);
	__builtin_memset(th, 0, sizeof(*th));
	th->source = dport;
	th->dest = sport;
	th->seq = ack;
	th->doff = 5;
	th->rst = 1;
	sum += csum_words((__u32 *)th, 5);
	th->check = ~csum_fold64(sum);
	return XLB_V_TX_PROBE_RST;
}

/* xlb_probe takes the answer to a health-check probe: XLB_CONTINUE for a
 * packet that is none (not a SYN-ACK or RST, or not to a registered
 * source, or the control plane is gone), otherwise its verdict. Called for
 * TCP packets to a registered port only (lb_probe_port). now: the
 * program's clock. */
static __noinline __u32 xlb_probe(struct xdp_md *ctx, const struct xlb_pkt *p, __u64 now)
{
	struct xlb_probe_src k = { .port = p->flow.dport, .family = p->flow.family };
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 flags = p->tcp_flags, rst;
	struct tcphdr *th;
	__u32 off = p->l4_off, v;

	if (!(flags & XLB_TCP_ACK))
		return XLB_CONTINUE;
	if (flags & XLB_TCP_RST)
		rst = 1;
	else if ((flags & (XLB_TCP_SYN | XLB_TCP_FIN)) == XLB_TCP_SYN)
		rst = 0;
	else
		return XLB_CONTINUE; /* the kernel answers what else comes */
	__builtin_memcpy(k.addr, p->flow.dst, sizeof(k.addr));
	if (!bpf_map_lookup_elem(&xlb_probe_srcs, &k))
		return XLB_CONTINUE;
	if ((__s64)(bpf_ktime_get_coarse_ns() - now) > (__s64)XLB_PROBE_STALE)
		return XLB_CONTINUE;
	v = xlb_l2_check(ctx, p);
	if (v != XLB_CONTINUE)
		return v;
	if (off > XLB_MAX_L4_OFF)
		return XLB_V_DROP_MALFORMED;
	/* 6.1's verifier gives no range to a packet pointer whose offset may
	 * reach 64 KiB: bound it where it is added. */
	th = data + xlb_bound_l4(off);
	if ((void *)(th + 1) > data_end)
		return XLB_V_DROP_MALFORMED;
	lb_probe_report(p, th->ack_seq, rst);
	if (rst)
		return XLB_V_PROBE_REFUSED;
	return xlb_probe_rst(ctx, p->l3_off, p->l4_off, p->flow.family, p->len);
}

#endif /* XLB_PROBE_H */
