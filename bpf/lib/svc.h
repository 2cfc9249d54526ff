/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Services, their real servers (backends) and scheduling tables: the
 * active configuration slot of a service, looked up by address or by id. */
#ifndef XLB_SVC_H
#define XLB_SVC_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "structs.h"
#include "maps.h"
#include "parse.h"

/* lb_svc_lookup finds the service of a packet by destination address,
 * port and protocol, and returns its active configuration; *cfg_idx is
 * that configuration's index (also the index of its scheduling table). */
static __always_inline struct xlb_svc *lb_svc_lookup(const struct xlb_flow *f, __u32 *cfg_idx)
{
	struct xlb_svc_key k = {
		.port = f->dport,
		.proto = f->proto,
		.family = f->family,
	};
	__u32 *id, *slot, idx;

	__builtin_memcpy(k.addr, f->dst, sizeof(k.addr));
	id = bpf_map_lookup_elem(&xlb_svc_ids_v1, &k);
	if (!id)
		return NULL;
	slot = bpf_map_lookup_elem(&xlb_svc_slot_v1, id);
	if (!slot)
		return NULL;
	idx = *id * 2 + (*slot & 1);
	*cfg_idx = idx;
	return bpf_map_lookup_elem(&xlb_svc_v1, &idx);
}

/* lb_backend returns backend id of service svc, or NULL if the id does
 * not (or no longer) describe one of its real servers. */
static __always_inline struct xlb_backend *lb_backend(__u32 id, __u32 svc)
{
	struct xlb_backend *be = bpf_map_lookup_elem(&xlb_backends_v1, &id);

	if (!be || !(be->flags & XLB_BE_F_IN_USE) || be->svc != svc)
		return NULL;
	return be;
}

/* lb_svc_by_id returns the active configuration of service id (and its
 * index in *cfg_idx) if it forwards. */
static __always_inline struct xlb_svc *lb_svc_by_id(__u32 id, __u32 *cfg_idx)
{
	__u32 *slot = bpf_map_lookup_elem(&xlb_svc_slot_v1, &id);
	struct xlb_svc *svc;
	__u32 idx;

	if (!slot)
		return NULL;
	idx = id * 2 + (*slot & 1);
	svc = bpf_map_lookup_elem(&xlb_svc_v1, &idx);
	if (!svc || !(svc->flags & XLB_SVC_F_ENABLED) || svc->id != id)
		return NULL;
	*cfg_idx = idx;
	return svc;
}

/* lb_svc_at returns configuration cfg_idx of service id if it forwards:
 * the index a flow cache entry recorded, which stays the service's active
 * one as long as the configuration generation does (the control plane
 * flips a service's slot, then bumps the generation): no slot lookup. */
static __always_inline struct xlb_svc *lb_svc_at(__u32 id, __u32 cfg_idx)
{
	struct xlb_svc *svc = bpf_map_lookup_elem(&xlb_svc_v1, &cfg_idx);

	if (!svc || !(svc->flags & XLB_SVC_F_ENABLED) || svc->id != id)
		return NULL;
	return svc;
}

/* lb_svc_of returns the active configuration of service id if it still
 * serves the packet's destination and forwards; NULL otherwise (service
 * removed, its id reused, or disabled). */
static __always_inline struct xlb_svc *lb_svc_of(__u32 id, const struct xlb_flow *f, __u32 *cfg_idx)
{
	struct xlb_svc *svc = lb_svc_by_id(id, cfg_idx);

	if (!svc || svc->port != f->dport || svc->proto != f->proto || svc->family != f->family ||
	    XLB_CA32(svc->vip)[0] != XLB_CA32(f->dst)[0] || XLB_CA32(svc->vip)[1] != XLB_CA32(f->dst)[1] ||
	    XLB_CA32(svc->vip)[2] != XLB_CA32(f->dst)[2] || XLB_CA32(svc->vip)[3] != XLB_CA32(f->dst)[3])
		return NULL;
	return svc;
}

/* lb_table returns the scheduling table of a configuration. */
static __always_inline void *lb_table(__u32 cfg_idx)
{
	return bpf_map_lookup_elem(&xlb_tables_v1, &cfg_idx);
}

static __always_inline __u32 lb_table_get(void *table, __u32 i)
{
	__u32 *id = bpf_map_lookup_elem(table, &i);

	return id ? *id : (__u32)-1;
}

#endif /* XLB_SVC_H */
