/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The IPv4 header as the kernel's input path accepts it: its options
 * (ip_options_compile, ip_rcv_options) and its checksum (ip_rcv_core). */
#ifndef XLB_IPOPTS_H
#define XLB_IPOPTS_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "csum.h"
#include "maps.h"

/* Returned by the checks when the packet goes on: any other value is an
 * enum xlb_verdict. */
#define XLB_CONTINUE XLB_V_MAX

/* The largest L2 header in front of the IP header: Ethernet and
 * XLB_MAX_VLAN_TAGS tags. */
#define XLB_MAX_L3_OFF (ETH_HLEN + 4 * XLB_MAX_VLAN_TAGS)
_Static_assert(XLB_MAX_L3_OFF <= 0x1f, "xlb_bound_l3 masks with 0x1f");

/* xlb_bound_l3 bounds an L2 header length already checked against
 * XLB_MAX_L3_OFF, for the verifier. */
static __always_inline __u64 xlb_bound_l3(__u64 v)
{
	asm volatile("%0 &= 0x1f" : "+r"(v));
	return v;
}

/* Options already seen (each may appear once; ip_options_compile). */
#define XLB_OPT_SEEN_SRR 1
#define XLB_OPT_SEEN_RR 2
#define XLB_OPT_SEEN_TS 4

/* Timestamp option flags (the low nibble of its fourth byte). */
#define XLB_TS_TSANDADDR 1
#define XLB_TS_PRESPEC 3

/* The walk over a header's options, one bpf_loop step per option. */
struct xlb_ipopt_walk {
	__u32 pos;     /* offset of the next option */
	__u32 len;     /* bytes of options (ihl * 4 - 20) */
	__u32 seen;    /* XLB_OPT_SEEN_* */
	__u32 verdict; /* XLB_CONTINUE, or why the options are refused */
};

/* xlb_ipopt_step checks the option at w->pos of the options copied to the
 * scratch buffer, with the rules ip_options_compile applies to a received
 * packet: every option but END and NOOP has a length of at least 2 that
 * stays inside the header; source routes and record route have a pointer
 * of at least 4, a timestamp of at least 5, and where the pointer says
 * there is room, the room is there; RR, TS and a source route appear once;
 * a router alert is 4 bytes or more; CIPSO is refused (cipso_v4_validate
 * knows no DOI unless one is configured, and none is by default). Options
 * it does not know are accepted, as the kernel does. */
static long xlb_ipopt_step(__u32 i, struct xlb_ipopt_walk *w)
{
	__u32 zero = 0, pos = w->pos, left, olen, ptr, flags;
	struct xlb_scratch *s;
	__u8 *o;

	if (pos >= w->len || pos >= 40)
		return 1;
	s = bpf_map_lookup_elem(&xlb_scratch, &zero);
	if (!s)
		goto bad;
	o = s->ipopt;
	switch (o[pos & 63]) {
	case IPOPT_END:
		return 1; /* the rest is padding */
	case IPOPT_NOOP:
		w->pos = pos + 1;
		return 0;
	}
	left = w->len - pos;
	if (left < 2)
		goto bad;
	olen = o[(pos + 1) & 63];
	if (olen < 2 || olen > left)
		goto bad;
	/* Within the 64-byte buffer, zero past the options. */
	ptr = o[(pos + 2) & 63];
	flags = o[(pos + 3) & 63];
	switch (o[pos & 63]) {
	case IPOPT_LSRR:
	case IPOPT_SSRR:
		if (olen < 3 || ptr < 4 || (w->seen & XLB_OPT_SEEN_SRR))
			goto bad;
		w->seen |= XLB_OPT_SEEN_SRR;
		break;
	case IPOPT_RR:
		if ((w->seen & XLB_OPT_SEEN_RR) || olen < 3 || ptr < 4)
			goto bad;
		if (ptr <= olen && ptr + 3 > olen)
			goto bad;
		w->seen |= XLB_OPT_SEEN_RR;
		break;
	case IPOPT_TIMESTAMP:
		if ((w->seen & XLB_OPT_SEEN_TS) || olen < 4 || ptr < 5)
			goto bad;
		if (ptr <= olen) {
			if (ptr + 3 > olen)
				goto bad;
			if (((flags & 0xf) == XLB_TS_TSANDADDR || (flags & 0xf) == XLB_TS_PRESPEC) && ptr + 7 > olen)
				goto bad;
		} else if ((flags & 0xf) != XLB_TS_PRESPEC && (flags >> 4) == 15) {
			goto bad; /* full, and the overflow counter too */
		}
		w->seen |= XLB_OPT_SEEN_TS;
		break;
	case IPOPT_RA:
		if (olen < 4)
			goto bad;
		break;
	case IPOPT_CIPSO:
		goto bad;
	}
	w->pos = pos + olen;
	return 0;
bad:
	w->verdict = XLB_V_DROP_IP_OPTIONS;
	return 1;
}

/* xlb_ip_options checks the len bytes (4..40) of IPv4 options at offset
 * off: XLB_CONTINUE, DROP_IP_OPTIONS (malformed: ip_options_compile), or
 * DROP_SOURCE_ROUTE (a loose or strict source route, which ip_rcv_options
 * drops unless accept_source_route is set on conf/all and the interface:
 * conf/all is 0 by default). A function of its own and a bpf_loop: the
 * verifier checks the step once, whatever the options. */
static __noinline __u32 xlb_ip_options(struct xdp_md *ctx, __u32 off, __u32 len)
{
	struct xlb_ipopt_walk w = { .verdict = XLB_CONTINUE };
	__u32 zero = 0;
	struct xlb_scratch *s = bpf_map_lookup_elem(&xlb_scratch, &zero);

	if (!s || len > 40)
		return XLB_V_DROP_IP_OPTIONS;
	/* Two comparisons the compiler may not fold into one: the verifier
	 * must see both bounds of the helper's size. */
	asm volatile("" : "+r"(len));
	if (len < 4)
		return XLB_V_DROP_IP_OPTIONS;
	__builtin_memset(s->ipopt, 0, sizeof(s->ipopt));
	if (bpf_xdp_load_bytes(ctx, off, s->ipopt, len))
		return XLB_V_DROP_MALFORMED;
	w.len = len;
	bpf_loop(40, xlb_ipopt_step, &w, 0);
	if (w.verdict != XLB_CONTINUE)
		return w.verdict;
	if (w.seen & XLB_OPT_SEEN_SRR)
		return XLB_V_DROP_SOURCE_ROUTE;
	return XLB_CONTINUE;
}

/* xlb_ip_csum_ok reports whether the IPv4 header at offset l3 sums to
 * 0xffff, as ip_rcv_core requires (ip_fast_csum). */
static __noinline int xlb_ip_csum_ok(struct xdp_md *ctx, __u32 l3)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 *w, n;
	__u64 sum;

	if (l3 > XLB_MAX_L3_OFF)
		return 0;
	l3 = xlb_bound_l3(l3);
	w = data + l3;
	if ((void *)(w + 5) > data_end)
		return 0;
	n = ((struct iphdr *)w)->ihl;
	sum = (__u64)w[0] + w[1] + w[2] + w[3] + w[4];
	/* The options' words, at constant offsets (a loop's bound on the
	 * packet end is rewritten by the compiler into arithmetic on it,
	 * which the verifier refuses). */
#define XLB_CSUM_OPT_WORD(k)                            \
	if (n > (k)) {                                  \
		if ((void *)(w + (k) + 1) > data_end)   \
			return 0;                       \
		sum += w[k];                            \
	}
	XLB_CSUM_OPT_WORD(5)
	XLB_CSUM_OPT_WORD(6)
	XLB_CSUM_OPT_WORD(7)
	XLB_CSUM_OPT_WORD(8)
	XLB_CSUM_OPT_WORD(9)
	XLB_CSUM_OPT_WORD(10)
	XLB_CSUM_OPT_WORD(11)
	XLB_CSUM_OPT_WORD(12)
	XLB_CSUM_OPT_WORD(13)
	XLB_CSUM_OPT_WORD(14)
#undef XLB_CSUM_OPT_WORD
	return csum_fold64(sum) == 0xffff;
}

#endif /* XLB_IPOPTS_H */
