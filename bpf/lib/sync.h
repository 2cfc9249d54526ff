/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection sync (control/sync): the program reports the flows a peer
 * director must know (xlb_sync_ring), and takes over the flows a peer
 * reported (xlb_sync_conns_v1) on their first packet here.
 *
 * Reports cost nothing on the established path: a flow is reported when
 * its state changes in the connection table (TCP: established, closing),
 * when it is created in a state worth syncing (UDP; TCP picked up without
 * a SYN), never on a TCP SYN (as IPVS syncs from ESTABLISHED on, so a SYN
 * flood writes nothing) and never from the flow cache. The control plane
 * refreshes long-lived flows by walking the connection table.
 *
 * Imported flows live in a table of their own, written by the control
 * plane and consulted only when the connection table misses: with
 * BPF_F_NO_COMMON_LRU each CPU owns max_entries / CPUs of xlb_conns_v1, so
 * one importing thread writing there would evict its own imports. A local
 * entry always wins over an imported one. */
#ifndef XLB_SYNC_H
#define XLB_SYNC_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"
#include "hash.h"
#include "svc.h"
#include "conn.h"
#include "flowcache.h"

/* Imported connections the table holds. Entries are allocated as imported
 * (BPF_F_NO_PREALLOC): a director that imports nothing spends nothing. */
#ifndef XLB_MAX_SYNC_CONNS
#define XLB_MAX_SYNC_CONNS (1 << 20)
#endif

/* Bytes of the report ring: about 65000 records, seconds of reports at
 * 10,000 new flows/s should the control plane stall. */
#ifndef XLB_SYNC_RING_BYTES
#define XLB_SYNC_RING_BYTES (1 << 22)
#endif

/* The report ring wakes the control plane's reader only once this many
 * bytes wait in it (about 11,000 records); below that the reader finds
 * them on its next poll (dataplane/xdp reportPoll, 10ms). A wakeup for
 * every record (the ring's default when the reader has caught up) cost
 * more than the record: an irq_work and the reader's thread woken per new
 * flow. */
#ifndef XLB_SYNC_WAKEUP_BYTES
#define XLB_SYNC_WAKEUP_BYTES (XLB_SYNC_RING_BYTES / 8)
#endif

/* struct xlb_sync_rec.flags */
enum xlb_sync_flags {
	XLB_SYNC_F_TEMPLATE = 1 << 0, /* the client's persistence template goes along */
};

/* What a report says: the state the flow is in, and its template. A
 * decision's sync field (xlb.c) holds it; 0 reports nothing. */
#define XLB_SYNC_REPORT (1 << 8)
#define XLB_SYNC_TEMPLATE (1 << 9)
/* A decision's sync field when xlb_new made the connection entry: the
 * entry program works out what to report (lb_sync_new), so that xlb_new's
 * paths, which the verifier walks many times, branch no further. */
#define XLB_SYNC_CREATED (1 << 10)

/* A flow reported to the control plane (xlb_sync_ring). */
struct xlb_sync_rec {
	struct xlb_flow flow; /* the client's direction: client -> VIP:port */
	__u32 svc;
	__u32 backend;
	__u8 state;           /* enum xlb_conn_state */
	__u8 flags;           /* enum xlb_sync_flags */
	__u8 pad[6];
};

/* A connection imported from a peer: value of xlb_sync_conns_v1, keyed by
 * the client's direction (struct xlb_flow). */
struct xlb_sync_conn {
	__u64 expires;  /* program clock (ns) after which it is ignored */
	__u32 backend;  /* this director's ids of the peer's real server and service */
	__u32 svc;
	__u8 state;     /* enum xlb_conn_state */
	/* 1: the control plane's recount (dataplane/xdp Sync) counted it in
	 * its real server's load and connections, so its promotion adds
	 * nothing to them (it would count the flow twice until the next
	 * recount). */
	__u8 counted;
	__u8 pad[6];
};

/* Settings of the sync, written by the control plane: the single entry of
 * xlb_sync_config. */
struct xlb_sync_cfg {
	__u32 report;   /* 1: report flows to xlb_sync_ring */
	__u32 imported; /* 1: xlb_sync_conns_v1 may hold entries (0: no lookup on a miss) */
};

/* Per-CPU counters of the sync (xlb_sync_counts). */
struct xlb_sync_stats {
	__u64 reported; /* records written to the ring */
	__u64 lost;     /* records the full ring refused */
	__u64 promoted; /* imported flows taken over on their first packet here */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, XLB_SYNC_RING_BYTES);
} xlb_sync_ring SEC(".maps");

/* Imported connections. Pinned: a restarted backup keeps what it had. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, XLB_MAX_SYNC_CONNS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xlb_flow);
	__type(value, struct xlb_sync_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xlb_sync_conns_v1 SEC(".maps");

/* Not pinned: a new program reports nothing until its control plane asks. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sync_cfg);
} xlb_sync_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xlb_sync_stats);
} xlb_sync_counts SEC(".maps");

static __always_inline struct xlb_sync_cfg *lb_sync_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_sync_config, &zero);
}

static __always_inline struct xlb_sync_stats *lb_sync_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&xlb_sync_counts, &zero);
}

/* lb_sync_what is what a flow of svc in state says to its peers. */
static __always_inline __u16 lb_sync_what(const struct xlb_svc *svc, __u8 state)
{
	return XLB_SYNC_REPORT | state | (svc->persist_timeout ? XLB_SYNC_TEMPLATE : 0);
}

/* lb_sync_new is what a flow just created says: nothing for a TCP SYN (a
 * connection is synced once established), its state otherwise (as
 * lb_conn_create sets it). */
static __always_inline __u16 lb_sync_new(const struct xlb_pkt *p, const struct xlb_svc *svc)
{
	if (p->flow.proto != IPPROTO_TCP)
		return lb_sync_what(svc, XLB_CT_NEW);
	if (p->tcp_flags & XLB_TCP_SYN)
		return 0;
	return lb_sync_what(svc, p->tcp_flags & (XLB_TCP_FIN | XLB_TCP_RST) ? XLB_CT_CLOSING : XLB_CT_ESTABLISHED);
}

/* lb_sync_report writes a flow to the ring, if the control plane asks
 * for reports. what: lb_sync_what's. A function of its own, called from
 * the entry program: it never adds to the deepest call chain. */
static __noinline int lb_sync_report(const struct xlb_flow *flow, __u32 svc, __u32 backend, __u32 what)
{
	struct xlb_sync_cfg *c = lb_sync_cfg();
	struct xlb_sync_stats *st = lb_sync_stats();
	struct xlb_sync_rec *r;

	if (!c || !c->report)
		return 0;
	r = bpf_ringbuf_reserve(&xlb_sync_ring, sizeof(*r), 0);
	if (!r) {
		if (st)
			st->lost++;
		return 0;
	}
	__builtin_memcpy(&r->flow, flow, sizeof(r->flow));
	r->svc = svc;
	r->backend = backend;
	r->state = what & 0xff;
	r->flags = what & XLB_SYNC_TEMPLATE ? XLB_SYNC_F_TEMPLATE : 0;
	__builtin_memset(r->pad, 0, sizeof(r->pad));
	bpf_ringbuf_submit(r, bpf_ringbuf_query(&xlb_sync_ring, BPF_RB_AVAIL_DATA) >= XLB_SYNC_WAKEUP_BYTES ?
				      BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	if (st)
		st->reported++;
	return 1;
}

/* lb_sync_wanted reports whether a packet without a connection entry may
 * be of an imported flow: not a TCP SYN (a new connection), and only while
 * the control plane has imported some. */
static __always_inline int lb_sync_wanted(const struct xlb_pkt *p)
{
	return p->flow.proto != IPPROTO_TCP || (p->tcp_flags & (XLB_TCP_SYN | XLB_TCP_ACK)) != XLB_TCP_SYN;
}

/* lb_sync_promote takes over an imported flow on its first packet here:
 * its entry moves into the connection table, as if this director had
 * scheduled it (lb_conn_create: counted in its real server's lc/wlc load
 * and in its connections as IPVS counts them, dest.h). Returns 1 if it
 * did; the caller looks the entry up again. An expired entry, or one whose
 * real server is gone, is deleted. An entry the control plane's recount
 * counted already (counted) is not counted again. */
static __noinline int lb_sync_promote(const struct xlb_flow *flow, __u64 now)
{
	struct xlb_sync_cfg *c = lb_sync_cfg();
	struct xlb_sync_stats *st;
	struct xlb_sync_conn *ic;
	struct xlb_backend *be;
	struct xlb_conn v = {};
	__u8 counted;

	if (!c || !c->imported)
		return 0;
	ic = bpf_map_lookup_elem(&xlb_sync_conns_v1, flow);
	if (!ic)
		return 0;
	counted = ic->counted;
	v.atime = now;
	v.backend = ic->backend;
	v.svc = ic->svc;
	v.state = ic->state;
	be = lb_backend(v.backend, v.svc);
	if (now >= ic->expires || !be) {
		bpf_map_delete_elem(&xlb_sync_conns_v1, flow);
		return 0;
	}
	bpf_map_delete_elem(&xlb_sync_conns_v1, flow);
	v.flags = XLB_CT_F_BOUND | (v.state == XLB_CT_CLOSING ? 0 : XLB_CT_F_COUNTED);
	if (bpf_map_update_elem(&xlb_conns_v1, flow, &v, BPF_NOEXIST))
		return 0;
	if (!counted) {
		if (v.flags & XLB_CT_F_COUNTED)
			lb_active_add(v.backend, 1);
		lb_dest_bind(v.backend, be, lb_ct_active(flow->proto, v.state));
	}
	lb_epoch_bump(xlb_hash_flow(flow));
	st = lb_sync_stats();
	if (st)
		st->promoted++;
	return 1;
}

#endif /* XLB_SYNC_H */
