/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Fragments: where the first fragment of a datagram went, for its later
 * fragments (xlb_frags_v1). */
#ifndef XLB_FRAG_H
#define XLB_FRAG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "counters.h"

/* lb_frag_key is the fragment entry key of a packet. */
static __always_inline void lb_frag_key(struct xlb_frag_key *k, const struct xlb_pkt *p)
{
	__builtin_memcpy(k->src, p->flow.src, sizeof(k->src));
	__builtin_memcpy(k->dst, p->flow.dst, sizeof(k->dst));
	k->id = p->frag_id;
	k->proto = p->flow.proto;
	k->family = p->flow.family;
}

/* lb_frag_put remembers where the first fragment of a datagram went, for
 * its later fragments, and counts it (every path that forwards a first
 * fragment calls this). A function of its own: fragments are rare, and its
 * key and value would otherwise sit in the caller's frame, which with the
 * deepest call chain must fit the verifier's 512 bytes (TestCallChainStack). */
static __noinline void lb_frag_put(const struct xlb_pkt *p, __u32 svc, __u32 backend, __u8 action, __u64 now)
{
	struct xlb_frag_key k = {};
	struct xlb_frag v = {
		.atime = now,
		.backend = backend,
		.svc = svc,
		.action = action,
	};

	lb_frag_key(&k, p);
	bpf_map_update_elem(&xlb_frags_v1, &k, &v, BPF_ANY);
	lb_event(XLB_EV_FRAG_FIRST);
}

#endif /* XLB_FRAG_H */
