/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The per-CPU established-flow cache (xlb_flowcache) and the flow epochs
 * that invalidate it on every CPU (xlb_epochs). */
#ifndef XLB_FLOWCACHE_H
#define XLB_FLOWCACHE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "fwd.h"
#include "clock.h"

/* lb_flow_eq compares two flows. An IPv4 flow's address words after the
 * first are zero (struct xlb_flow), so once the first words and the
 * family match, an IPv4 flow needs no more. */
static __always_inline int lb_flow_eq(const struct xlb_flow *a, const struct xlb_flow *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	/* Destination and ports first: they differ most between flows of a
	 * bucket; x[9] holds the protocol and family. */
	if (x[4] != y[4] || x[8] != y[8] || x[0] != y[0] || x[9] != y[9])
		return 0;
	if (__builtin_expect(a->family == XLB_AF_INET, 1))
		return 1;
	return x[5] == y[5] && x[6] == y[6] && x[7] == y[7] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* The flow cache's index bits: XLB_FLOW_CACHE_SIZE is a power of two. */
_Static_assert(XLB_FLOW_CACHE_SIZE >= 2 && (XLB_FLOW_CACHE_SIZE & (XLB_FLOW_CACHE_SIZE - 1)) == 0,
	       "XLB_FLOW_CACHE_SIZE is a power of two");
#define XLB_FLOW_CACHE_BITS __builtin_ctz(XLB_FLOW_CACHE_SIZE)

/* lb_cache_idx returns a flow's slot in the flow cache and the epochs: a
 * multiplicative hash of the 5-tuple, whose top bits are the index
 * (Knuth's multiplicative hashing). It is not xlb_hash_flow: the
 * MurmurHash3 rounds there are a chain of some twenty dependent
 * instructions every packet would wait for, here two multiplies run side
 * by side, then one more. Only this director's CPUs use the index: no
 * other program or director needs to agree with it. An IPv6 address is
 * folded to 32 bits first. */
static __always_inline __u32 lb_cache_idx(const struct xlb_flow *f)
{
	const __u32 *w = (const __u32 *)f;
	__u32 s = w[0], d = w[4];
	__u64 h;

	if (f->family != XLB_AF_INET) {
		s ^= w[1] ^ w[2] ^ w[3];
		d ^= w[5] ^ w[6] ^ w[7];
	}
	h = ((__u64)s << 32 | d) ^ (((__u64)w[8] << 8 | f->proto) * 0xc2b2ae3d27d4eb4fULL);
	h *= 0x9e3779b97f4a7c15ULL;
	return h >> (64 - XLB_FLOW_CACHE_BITS);
}

/* lb_cache_slot returns this CPU's flow cache entry at index idx (its
 * slice of xlb_flowcache). */
static __always_inline struct xlb_flow_cache *lb_cache_slot(__u32 idx)
{
	__u32 key = bpf_get_smp_processor_id() * XLB_FLOW_CACHE_SIZE + idx;

	return bpf_map_lookup_elem(&xlb_flowcache, &key);
}

/* lb_epoch returns the epoch counter at flow cache index idx. */
static __always_inline __u32 *lb_epoch(__u32 idx)
{
	return bpf_map_lookup_elem(&xlb_epochs, &idx);
}

/* lb_epoch_bump invalidates every CPU's cached entry of the flow's slot. */
static __always_inline void lb_epoch_bump(const struct xlb_flow *f)
{
	__u32 *e = lb_epoch(lb_cache_idx(f));

	if (e)
		__sync_fetch_and_add(e, 1);
}

/* lb_cache_get returns the cached entry of an established flow if it was
 * copied from the connection table during the current clock tick, the
 * configuration has not changed since, the flow was not scheduled anew
 * (epoch), and the packet was sent to the destination MAC checked when the
 * entry was copied (another is checked again: xlb_l2_check). SYN, FIN and
 * RST always go to the connection table, and so do first fragments: the
 * slow path records their datagram's entry, which the later fragments
 * (without ports) follow. */
static __always_inline struct xlb_flow_cache *lb_cache_get(struct xlb_flow_cache *c, const struct xlb_pkt *p, __u64 now,
							   __u32 gen)
{
	__u32 *epoch;

	if (!c || (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_FIN | XLB_TCP_RST)) || p->frag != XLB_FRAG_NONE)
		return NULL;
	if (c->tick != (__u32)(now >> XLB_ATIME_SHIFT) || c->gen != gen || !lb_flow_eq(&c->flow, &p->flow) ||
	    *(const __u32 *)c->imac != *(const __u32 *)p->dmac || *(const __u16 *)(c->imac + 4) != *(const __u16 *)(p->dmac + 4))
		return NULL;
	epoch = lb_epoch(p->cidx);
	if (!epoch || c->epoch != *epoch)
		return NULL;
	return c;
}

/* lb_cache_put caches how an established flow (TCP established, or UDP)
 * is forwarded: the action, service configuration, backend and next hop. */
static __always_inline void lb_cache_put(struct xlb_flow_cache *c, const struct xlb_pkt *p, __u32 svc,
					 __u32 cfg_idx, __u32 backend, __u8 action, const struct xlb_hop *hop,
					 __u64 now, __u32 gen)
{
	if (!c)
		return;
	c->flow = p->flow;
	c->svc = svc;
	c->cfg_idx = cfg_idx;
	c->backend = backend;
	c->hash = p->hash;
	c->tick = now >> XLB_ATIME_SHIFT;
	c->gen = gen;
	c->action = action;
	c->tun = 0; /* a tunnel's: xlb_cache_tun */
	{
		__u32 *epoch = lb_epoch(p->cidx);

		c->epoch = epoch ? *epoch : 0;
	}
	c->ifindex = hop->ifindex;
	c->mtu = hop->mtu <= 0xffff ? hop->mtu : 0;
	__builtin_memcpy(c->mac, hop->mac, sizeof(c->mac));
	__builtin_memcpy(c->smac, hop->smac, sizeof(c->smac));
	__builtin_memcpy(c->imac, p->dmac, sizeof(c->imac));
}

#endif /* XLB_FLOWCACHE_H */
