package lab

// The SYN flood generator's BPF object (bpf/bench/flood.c) is generated and
// committed like the dataplane's; `make generate` reruns this.
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf/include -I/usr/include/x86_64-linux-gnu" -type flood_frame -type xdp_md flood ../../bpf/bench/flood.c
