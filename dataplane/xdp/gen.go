package xdp

// The BPF objects are generated and committed; `make generate` reruns this
// and CI checks that nothing changes. Flags are pinned here.
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf/include -I/usr/include/x86_64-linux-gnu" -type xlb_verdict -type xlb_limits -type xlb_svc_flags -type xlb_backend_flags -type xlb_conn_state -type xlb_conn_flags -type xlb_flow -type xlb_svc_key -type xlb_svc -type xlb_backend -type xlb_be_conns -type xlb_be_thresh -type xlb_conn -type xlb_persist_key -type xlb_persist -type xlb_stats -type xlb_verdict_stats -type xlb_globals -type xdp_md -type xlb_event -type xlb_action -type xlb_frag_key -type xlb_frag -type xlb_flow_cache -type xlb_iface -type xlb_if_mac -type xlb_iface_flags -type xlb_embryo_word -type xlb_cands -type xlb_cand -type xlb_sync_rec -type xlb_sync_conn -type xlb_sync_cfg -type xlb_sync_stats -type xlb_sync_flags bpf ../../bpf/xlb.c
