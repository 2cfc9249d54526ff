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
 * A handshake's packets after its SYN (the ACK, a retransmitted SYN) must
 * reach the SYN's real server: each SYN is either recorded in a word, or
 * scheduled the way a packet without state is (lb_schedule with is_new 0:
 * the service's table indexed by the 5-tuple's hash), which its later
 * packets, finding no word of theirs, compute again. So a live word is
 * never taken by another flow (that flow's ACK would then be hashed to
 * another real server and reset: issue 14, at a flood's onset), and a SYN
 * scheduled by hash must still find no free slot when it is retransmitted:
 *
 *  - a SYN whose slot is free (empty, or its word past the SYN-only
 *    timeout) takes the slot (compare-and-swap: of two CPUs, one wins, the
 *    other is hashed), then is scheduled by its scheduler, whose backend
 *    it adds to its word;
 *  - a SYN whose slot holds another flow's live word is scheduled by hash
 *    and writes no word of its own (embryo_busy); it marks the word
 *    contended and restarts its clock, so that the word holds the slot for
 *    a SYN-only timeout after the last SYN that found it there;
 *  - the ACK frees its word, but a contended word becomes a word of no
 *    flow (hash bits 0) that holds the slot until then: the flows hashed
 *    because of it, still in their handshake, keep being hashed.
 *
 * A handshake thus keeps its real server while its retransmissions come
 * less than a SYN-only timeout apart (Linux: 1, 2, 4... 32 s; tcp_fin_timeout
 * 120 s by default). Spoofed SYNs below the flood limit can fill the
 * array: new flows are then scheduled by hash, as in flood mode.
 *
 * Above the SYN rate limit on a CPU the director is in SYN flood mode for
 * XLB_SYN_FLOOD_HOLD (consts.h): a SYN without a word of its own is
 * scheduled by hash and writes nothing, not even a mark, so the cost of a
 * flooded SYN is a lookup and a hash. The client's ACK, and any
 * retransmission of the SYN while the mode lasts, compute the same real
 * server; the words written before the flood keep their slots, and a
 * handshake completed during the flood gets its connection entry like any
 * other. For XLB_SYN_FLOOD_HOLD after the mode (its tail) a SYN is still
 * scheduled by hash, though it takes a free slot's word as usual: a SYN
 * hashed in the mode's last minute and retransmitted after it finds the
 * same real server, and one hashed in the tail finds its word after it. Katran's SYN limiter routes by consistent hash above its limit
 * too, but inserts nothing for such flows; IPVS's own defences are
 * secure_tcp (a shorter SYN_RECV timeout) and drop_entry (random deletion
 * of entries). */
#ifndef XLB_EMBRYO_H
#define XLB_EMBRYO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "parse.h"
#include "maps.h"
#include "hash.h"
#include "clock.h"
#include "counters.h"

_Static_assert((XLB_MAX_EMBRYOS & (XLB_MAX_EMBRYOS - 1)) == 0, "XLB_MAX_EMBRYOS is a power of two");
_Static_assert(XLB_MAX_BACKENDS <= (1 << XLB_EMB_BE_BITS), "a backend id fits an embryonic word");

#define XLB_EMB_SEED 0x656d6231 /* "emb1": the word's hash, independent of the slot's */
#define XLB_EMB_BE_MASK ((1ULL << XLB_EMB_BE_BITS) - 1)
#define XLB_EMB_TICK_MASK ((1ULL << XLB_EMB_TICK_BITS) - 1)
#define XLB_EMB_COUNTED (1ULL << XLB_EMB_COUNTED_BIT)
#define XLB_EMB_CONTENDED (1ULL << XLB_EMB_CONTENDED_BIT)
#define XLB_EMB_TICKS (XLB_EMB_TICK_MASK << XLB_EMB_TICK_SHIFT)

/* SYNs per CPU per window above which SYN flood mode starts; 0: never.
 * Set at load by the control plane (Options.SYNFloodRate). */
const volatile __u32 xlb_syn_limit = (__u32)((XLB_SYN_RATE * (1ULL << XLB_SYN_WINDOW_SHIFT)) / 1000000000ULL);

/* lb_emb_slot returns the word of a flow's slot. */
static __always_inline __u64 *lb_emb_slot(__u32 hash)
{
	__u32 idx = hash & (XLB_MAX_EMBRYOS - 1);

	return bpf_map_lookup_elem(&xlb_embryos_v1, &idx);
}

/* lb_emb_touch loads the word of a flow's slot without waiting for it: a
 * SYN's slot, read later, is mostly a cache miss (a random word of 8 MiB),
 * which then overlaps the misses of the code in between. */
static __always_inline void lb_emb_touch(__u32 hash)
{
	__u64 *slot = lb_emb_slot(hash);

	if (slot) {
		__u64 w = *(volatile __u64 *)slot;

		asm volatile("" : : "r"(w));
	}
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
 * director is in SYN flood mode (XLB_SYN_FLOOD: starting it when this CPU
 * passes the limit), in its tail (XLB_SYN_TAIL: for XLB_SYN_FLOOD_HOLD
 * after it, while SYNs hashed in the mode may be retransmitted), or
 * neither (0). The shared state is written only when the mode starts or is
 * extended, at most once per window per CPU. */
enum { XLB_SYN_TAIL = 1, XLB_SYN_FLOOD = 2 };

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
	if (f->until > now)
		return XLB_SYN_FLOOD;
	return f->until && f->until + XLB_SYN_FLOOD_HOLD > now ? XLB_SYN_TAIL : 0;
}

/* lb_syn_flooded reports whether the director is in SYN flood mode. */
static __always_inline int lb_syn_flooded(__u64 now)
{
	__u32 zero = 0;
	struct xlb_syn_flood *f = bpf_map_lookup_elem(&xlb_syn_flood, &zero);

	return f && f->until > now;
}

/* lb_emb_contend is called by a SYN (not in flood mode) whose slot holds
 * word *wp, not its own. Returns 1 if the slot is free: the SYN may take
 * it, from *wp (set to the word last seen). Otherwise marks the word
 * contended, its clock restarted, and returns 0: the SYN is scheduled by
 * hash. The mark is made before the SYN is scheduled: an ACK freeing the
 * word meanwhile makes the CAS fail, and the slot is seen free. Bounded:
 * a word changes a few times at most in the while (a mark, its flow's
 * ACK, another SYN taking the slot); after the last try the SYN is hashed
 * unmarked. */
static __always_inline int lb_emb_contend(__u64 *slot, __u64 *wp, __u64 now, __u64 timeout)
{
	__u64 tick = ((now >> XLB_ATIME_SHIFT) & XLB_EMB_TICK_MASK) << XLB_EMB_TICK_SHIFT;
	__u64 w = *wp, nw, old;
	int i;

	for (i = 0; i < 3; i++) {
		if (!lb_emb_live(w, now, timeout)) {
			*wp = w;
			return 1;
		}
		nw = (w & ~XLB_EMB_TICKS) | XLB_EMB_CONTENDED | tick;
		if (nw == w)
			return 0;
		old = __sync_val_compare_and_swap(slot, w, nw);
		if (old == w)
			return 0;
		w = old;
	}
	return 0;
}

/* lb_emb_take frees flow fp's word w at its handshake's next packet: to 0,
 * or, contended, to a word of no flow holding the slot (its mark and
 * clock). Returns whether this packet freed it (another CPU may have). */
static __always_inline int lb_emb_take(__u64 *slot, __u64 w, __u32 fp)
{
	__u64 nw, old;
	int i;

	for (i = 0; i < 2; i++) {
		nw = (w & XLB_EMB_CONTENDED) ? (w & (XLB_EMB_CONTENDED | XLB_EMB_TICKS)) : 0;
		old = __sync_val_compare_and_swap(slot, w, nw);
		if (old == w)
			return 1;
		if ((__u32)old != fp)
			return 0;
		w = old; /* marked contended meanwhile */
	}
	return 0;
}

#endif /* XLB_EMBRYO_H */
