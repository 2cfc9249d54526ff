//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Benchmark helpers, not part of the product: the floor program xlb is
 * measured against, a wrapper that turns every BPF_PROG_TEST_RUN repetition
 * into a new flow (or alternates two flows), and a live-frames traffic
 * generator with its counter. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* floor: what any L4 forwarder must do at least: parse Ethernet, IPv4 and
 * TCP with bounds checks, rewrite the MACs and transmit. */
SEC("xdp")
int bench_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *th;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	th = (void *)ip + ip->ihl * 4;
	if ((void *)(th + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	eth->h_dest[5] ^= th->dest & 0xff;
	return XDP_TX;
}

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_seq SEC(".maps");

/* bench_mode: 0 = restore only (same flow every time), 1 = a new flow
 * (source address and port from the CPU and a per-CPU sequence) every time,
 * 2 = the template's flow and the flow of bench_alt_saddr:bench_alt_sport
 * in turn, 3 = handshakes: a new flow every other time, its template
 * packet (a SYN) then the same flow's ACK. */
const volatile __u32 bench_mode = 0;

/* Mode 1: new flows per CPU before the 5-tuples repeat: BENCH_NEW_PORTS
 * source ports times 65536 source addresses. A run uses a few million. */
#define BENCH_NEW_PORT_BITS 15
#define BENCH_NEW_PORTS (1U << BENCH_NEW_PORT_BITS)
#define BENCH_NEW_FLOWS ((__u64)BENCH_NEW_PORTS << 16)

/* Mode 2: the second flow's source address and port (network order). */
const volatile __be32 bench_alt_saddr = 0;
const volatile __be16 bench_alt_sport = 0;

/* The frame under test, restored before every run: BPF_PROG_TEST_RUN with
 * repeat does not restore the packet, so a rewriting program would see its
 * own output. 64 bytes: Ethernet, IPv4, TCP, padding. */
struct bench_frame {
	__u8 b[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_frame);
} bench_template SEC(".maps");

static __always_inline int bench_restore(struct xdp_md *ctx, __u64 *seqp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct bench_frame *f = bpf_map_lookup_elem(&bench_template, &zero);
	long grown = (long)data_end - (long)data - (long)sizeof(*f);

	/* A program that encapsulated grew the frame at its head: give the
	 * headroom back, or repetitions would run out of it. */
	if (grown > 0 && grown < 256) {
		if (bpf_xdp_adjust_head(ctx, (int)grown))
			return -1;
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}
	if (!f || data + sizeof(*f) > data_end)
		return -1;
	__builtin_memcpy(data, f->b, sizeof(*f));
	if (bench_mode && seqp) {
		__u64 seq = (*seqp)++;
		struct iphdr *ip = data + sizeof(struct ethhdr);
		struct tcphdr *th = (void *)(ip + 1);
		__be32 old;

		if ((void *)(th + 1) > data_end)
			return -1;
		old = ip->saddr;
		if (bench_mode == 1 || bench_mode == 3) {
			/* Distinct for every (CPU, seq) while seq < BENCH_NEW_FLOWS:
			 * repetitions of one run may move between CPUs. */
			__u32 cpu = bpf_get_smp_processor_id() & 0xff;

			if (bench_mode == 3) {
				if (seq & 1) {
					th->syn = 0;
					th->ack = 1;
				}
				seq >>= 1;
			}
			if (seq >= BENCH_NEW_FLOWS)
				return -1;
			ip->saddr ^= bpf_htonl(cpu << 16 | (__u32)(seq >> BENCH_NEW_PORT_BITS));
			th->source = bpf_htons(1024 + (__u16)(seq & (BENCH_NEW_PORTS - 1)));
		} else if (seq & 1) {
			ip->saddr = bench_alt_saddr;
			th->source = bench_alt_sport;
		}
		/* A valid header checksum (RFC 1624), as xlb checks it for
		 * packets its flow cache does not decide. */
		{
			__u32 sum = (__u16)~ip->check;

			sum += (__u16)~(old & 0xffff) + (__u16)~(old >> 16);
			sum += (ip->saddr & 0xffff) + (ip->saddr >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			sum = (sum & 0xffff) + (sum >> 16);
			ip->check = ~sum;
		}
	}
	return 0;
}

/* bench_wrapper restores the frame (and makes it a new flow in mode 1, or
 * every other time the second flow in mode 2), then tail-calls the program
 * under test. */
SEC("xdp")
int bench_wrapper(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&bench_seq, &zero);

	if (bench_restore(ctx, seq))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &bench_target, 0);
	return XDP_ABORTED;
}

/* bench_gen is the live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES): it
 * writes the whole frame every time (pages are recycled) with one of 1024
 * source ports (bench_mode 0) or as a new flow (bench_mode 1: a new source
 * address and port per frame), and transmits it. */
SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&bench_seq, &zero);
	void *data, *data_end;
	struct tcphdr *th;

	if (!seq || bench_restore(ctx, bench_mode ? seq : NULL))
		return XDP_ABORTED;
	if (bench_mode)
		return XDP_TX;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	th = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	if ((void *)(th + 1) > data_end)
		return XDP_ABORTED;
	th->source = bpf_htons(1024 + ((*seq)++ & 1023));
	return XDP_TX;
}

/* bench_count counts the frames it receives and drops them. */
SEC("xdp")
int bench_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&bench_seq, &zero);

	if (n)
		(*n)++;
	return XDP_DROP;
}
