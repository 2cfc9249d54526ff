/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Embryonic TCP flows and the SYN flood defence.
 *
 * A SYN of a DR or tunnel service is scheduled but inserts nothing into
 * the connection table: its decision goes into one 64-bit word of
 * xlb_embryos_v1 (enum xlb_embryo_word), an array indexed by the flow's
 * hash, and the handshake's next packet from the client (its ACK) creates
 * the connection entry from that word and frees it. A spoofed SYN, which
 * never completes a handshake, thus never inserts into the connection
 * table and never evicts an established flow from it; a retransmitted SYN
 * finds its word and keeps its real server.
 *
 * Above the SYN rate limit on a CPU the director is in SYN flood mode for
 * XLB_SYN_FLOOD_HOLD (consts.h): a SYN is scheduled the way a packet
 * without state is (lb_schedule with is_new 0: the service's table indexed
 * by the 5-tuple's hash) and writes no word. The client's ACK, and any
 * retransmission of the SYN, compute the same real server, so a flood
 * neither disturbs the words written before it nor needs any of its own;
 * a handshake completed during the flood gets its connection entry like
 * any other. Katran's SYN limiter routes by consistent hash above its
 * limit too, but inserts nothing for such flows; IPVS's own defences are
 * secure_tcp (a shorter SYN_RECV timeout) and drop_entry (random deletion
 * of entries). */
#ifndef XLB_EMBRYO_H
#define XLB_EMBRYO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "hash.h"
#include "clock.h"
#include "counters.h"
#include "dest.h"

_Static_assert((XLB_MAX_EMBRYOS & (XLB_MAX_EMBRYOS - 1)) == 0, "XLB_MAX_EMBRYOS is a power of two");
_Static_assert(XLB_MAX_BACKENDS <= (1 << XLB_EMB_BE_BITS), "a backend id fits an embryonic word");

#define XLB_EMB_SEED 0x656d6231 /* "emb1": the word's hash, independent of the slot's */
#define XLB_EMB_BE_MASK ((1ULL << XLB_EMB_BE_BITS) - 1)
#define XLB_EMB_TICK_MASK ((1ULL << XLB_EMB_TICK_BITS) - 1)
#define XLB_EMB_COUNTED (1ULL << XLB_EMB_COUNTED_BIT)

/* SYNs per CPU per window above which SYN flood mode starts; 0: never.
 * Set at load by the control plane (Options.SYNFloodRate). */
const volatile __u32 xlb_syn_limit = (__u32)((XLB_SYN_RATE * (1ULL << XLB_SYN_WINDOW_SHIFT)) / 1000000000ULL);

/* lb_emb_slot returns the word of a flow's slot. */
static __always_inline __u64 *lb_emb_slot(__u32 hash)
{
	__u32 idx = hash & (XLB_MAX_EMBRYOS - 1);

	return bpf_map_lookup_elem(&xlb_embryos_v1, &idx);
}

/* lb_emb_fp is a flow's own bits of its word: a second hash, never 0. */
static __always_inline __u32 lb_emb_fp(const struct xlb_flow *f)
{
	return xlb_hash_flow_seed(f, XLB_EMB_SEED) | 1;
}

/* lb_emb_live reports whether word w is younger than the SYN-only timeout
 * (tcp_fin_timeout, as a connection entry holding only a SYN). */
static __always_inline int lb_emb_live(__u64 w, __u64 now, __u64 timeout)
{
	__u64 age = ((now >> XLB_ATIME_SHIFT) - (w >> XLB_EMB_TICK_SHIFT)) & XLB_EMB_TICK_MASK;
	__u64 max = (timeout >> XLB_ATIME_SHIFT) + 1;

	if (max > XLB_EMB_TICK_MASK - 1)
		max = XLB_EMB_TICK_MASK - 1;
	return w && age <= max;
}

static __always_inline __u32 lb_emb_backend(__u64 w)
{
	return (w >> XLB_EMB_BE_SHIFT) & XLB_EMB_BE_MASK;
}

/* lb_emb_word builds the word of a SYN scheduled to backend id. */
static __always_inline __u64 lb_emb_word(__u32 fp, __u32 id, int counted, __u64 now)
{
	return (__u64)fp | ((__u64)(id & XLB_EMB_BE_MASK) << XLB_EMB_BE_SHIFT) | (counted ? XLB_EMB_COUNTED : 0) |
	       (((now >> XLB_ATIME_SHIFT) & XLB_EMB_TICK_MASK) << XLB_EMB_TICK_SHIFT);
}

/* lb_syn_flood counts a SYN scheduled on this CPU and reports whether the
 * director is in SYN flood mode (starting it when this CPU passes the
 * limit). The shared state is written only when the mode starts or is
 * extended, at most once per window per CPU. */
static __always_inline int lb_syn_flood(__u64 now)
{
	__u32 zero = 0;
	struct xlb_syn_rate *r = bpf_map_lookup_elem(&xlb_syn_rate, &zero);
	struct xlb_syn_flood *f = bpf_map_lookup_elem(&xlb_syn_flood, &zero);
	__u64 w = now >> XLB_SYN_WINDOW_SHIFT;

	if (!r || !f)
		return 0;
	if (r->window != w) {
		r->window = w;
		r->count = 0;
	}
	if (++r->count == (__u64)xlb_syn_limit + 1 && xlb_syn_limit) {
		if (f->until <= now)
			lb_event(XLB_EV_SYN_FLOOD_START);
		f->until = now + XLB_SYN_FLOOD_HOLD;
	}
	return f->until > now;
}

/* lb_syn_flooded reports whether the director is in SYN flood mode. */
static __always_inline int lb_syn_flooded(__u64 now)
{
	__u32 zero = 0;
	struct xlb_syn_flood *f = bpf_map_lookup_elem(&xlb_syn_flood, &zero);

	return f && f->until > now;
}

/* lb_emb_release takes a replaced word's SYN out of its backend's counts
 * if it is still live (the control plane's recount includes exactly
 * those): its inactive connection (dest.h), and its lc/wlc load if it was
 * counted there. */
static __always_inline void lb_emb_release(__u64 old, __u64 now, __u64 timeout)
{
	if (lb_emb_live(old, now, timeout))
		lb_dest_unbind(lb_emb_backend(old), 0);
	if ((old & XLB_EMB_COUNTED) && lb_emb_live(old, now, timeout)) {
		__u32 id = lb_emb_backend(old);
		__s64 *a = bpf_map_lookup_elem(&xlb_be_act_v1, &id);

		if (a)
			__sync_fetch_and_add(a, -1);
	}
}

#endif /* XLB_EMBRYO_H */
