//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The lab's SYN flood, not part of the product: a live-frames generator
 * (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) that sends its template
 * SYN from a random source address (in flood_src_net/flood_src_mask) and
 * port every time, and the sink where the director forwards the flood: it
 * counts and drops IPv4 and passes the rest (ARP, so that the director
 * finds its MAC address). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The SYN sent: Ethernet, IPv4 without options, TCP, padding. */
struct flood_frame {
	__u8 b[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flood_frame);
} flood_template SEC(".maps");

/* Frames the sink dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} flood_sunk SEC(".maps");

/* Source addresses: flood_src_net with the bits outside flood_src_mask
 * random (network order). */
const volatile __be32 flood_src_net = 0;
const volatile __be32 flood_src_mask = 0;

/* flood_gen writes the whole frame every time (the pages of live frames
 * are recycled with what the receivers wrote into them). */
SEC("xdp")
int flood_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0, r = bpf_get_prandom_u32(), sum = 0, i;
	struct flood_frame *f = bpf_map_lookup_elem(&flood_template, &zero);
	struct iphdr *ip = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(ip + 1);
	__u16 *w = (void *)ip;

	if (!f || data + sizeof(*f) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, f->b, sizeof(*f));
	ip->saddr = flood_src_net | (bpf_get_prandom_u32() & ~flood_src_mask);
	th->source = bpf_htons(1024 + (r >> 16) % 64512);
	th->seq = bpf_htonl(r);
	ip->check = 0;
#pragma unroll
	for (i = 0; i < sizeof(*ip) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	return XDP_TX;
}

SEC("xdp")
int flood_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0;
	__u64 *n;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&flood_sunk, &zero);
	if (n)
		(*n)++;
	return XDP_DROP;
}
