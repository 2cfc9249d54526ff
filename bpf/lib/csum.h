/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Internet checksums: incremental updates (RFC 1624) for rewritten
 * addresses and ports, and full sums of small fixed-size buffers for the
 * headers the program builds. The one's complement sum is byte-order
 * independent, so words are summed as loaded from memory. */
#ifndef XLB_CSUM_H
#define XLB_CSUM_H

#include <linux/types.h>

/* csum_fold64 folds a 64-bit accumulator to 16 bits (not complemented). */
static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* csum_diff32 is the sum to add when a 32-bit word changes from old to new. */
static __always_inline __u64 csum_diff32(__u32 old, __u32 new)
{
	return (__u64)(__u32)~old + new;
}

/* csum_diff16 is the sum to add when a 16-bit word changes. */
static __always_inline __u64 csum_diff16(__u16 old, __u16 new)
{
	return (__u64)(__u16)~old + new;
}

/* csum_diff_addr is the sum to add when an address (4 words, or the first
 * only for IPv4) changes. */
static __always_inline __u64 csum_diff_addr(const __be32 *old, const __be32 *new, int v6)
{
	__u64 d = csum_diff32(old[0], new[0]);

	if (v6) {
		d += csum_diff32(old[1], new[1]);
		d += csum_diff32(old[2], new[2]);
		d += csum_diff32(old[3], new[3]);
	}
	return d;
}

/* csum_apply updates a checksum field by a sum of differences. */
static __always_inline __u16 csum_apply(__u16 check, __u64 diff)
{
	return ~csum_fold64((__u64)(__u16)~check + diff);
}

/* csum_words sums n 32-bit words. */
static __always_inline __u64 csum_words(const __u32 *w, int n)
{
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		s += w[i];
	return s;
}

#endif /* XLB_CSUM_H */
