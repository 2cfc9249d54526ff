package xdp

// Benchmark helpers (floor program, new-flow wrapper, live-frames generator),
// compiled into test-only bindings (bench_bpfel_test.go).
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../bpf/include -I/usr/include/x86_64-linux-gnu" -type bench_frame bench ../../bpf/bench/bench.c
