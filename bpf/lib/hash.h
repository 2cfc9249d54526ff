/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flow hashing for the consistent-hash schedulers. The hash is fixed (no
 * random seed) so that two directors with the same configuration map a flow
 * to the same real server: a flow survives a failover. */
#ifndef XLB_HASH_H
#define XLB_HASH_H

#include <linux/types.h>
#include "structs.h"

#define XLB_HASH_SEED 0x786c6232 /* "xlb2" */

static __always_inline __u32 xlb_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* One MurmurHash3 (x86_32) block step. */
static __always_inline __u32 xlb_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = xlb_rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = xlb_rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

/* MurmurHash3 finalisation. */
static __always_inline __u32 xlb_fmix(__u32 h, __u32 len)
{
	h ^= len;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* xlb_hash_src hashes the source address (sh). */
static __always_inline __u32 xlb_hash_src(const struct xlb_flow *f)
{
	const __be32 *s = XLB_CA32(f->src);
	__u32 h = XLB_HASH_SEED;

	h = xlb_mix(h, s[0]);
	if (f->family == XLB_AF_INET6) {
		h = xlb_mix(h, s[1]);
		h = xlb_mix(h, s[2]);
		h = xlb_mix(h, s[3]);
	}
	return xlb_fmix(h, f->family);
}

/* xlb_hash_flow_seed hashes the 5-tuple from seed. */
static __always_inline __u32 xlb_hash_flow_seed(const struct xlb_flow *f, __u32 seed)
{
	const __be32 *s = XLB_CA32(f->src), *d = XLB_CA32(f->dst);
	__u32 h = seed;

	h = xlb_mix(h, s[0]);
	h = xlb_mix(h, d[0]);
	if (f->family == XLB_AF_INET6) {
		h = xlb_mix(h, s[1]);
		h = xlb_mix(h, s[2]);
		h = xlb_mix(h, s[3]);
		h = xlb_mix(h, d[1]);
		h = xlb_mix(h, d[2]);
		h = xlb_mix(h, d[3]);
	}
	h = xlb_mix(h, ((__u32)f->sport << 16) | f->dport);
	return xlb_fmix(h, f->proto);
}

/* xlb_hash_flow hashes the 5-tuple (mh, and the fallback of a non-SYN
 * packet without connection entry). */
static __always_inline __u32 xlb_hash_flow(const struct xlb_flow *f)
{
	return xlb_hash_flow_seed(f, XLB_HASH_SEED);
}

/* xlb_reduce maps a 32-bit hash onto [0, n) without a division. */
static __always_inline __u32 xlb_reduce(__u32 h, __u32 n)
{
	return ((__u64)h * n) >> 32;
}

#endif /* XLB_HASH_H */
