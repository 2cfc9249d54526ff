package health

import (
	"fmt"
	"os"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// synFilter is the classic BPF program of a prober's raw socket: it
// passes the TCP segments to port that acknowledge something and carry
// SYN or RST (the answers to a SYN), and drops everything else in the
// kernel, before a copy reaches the socket's queue. An IPv4 raw socket's
// packets start at the IP header (raw_rcv pushes it back), whose
// fragments other than the first carry no TCP header; an IPv6 raw
// socket's start at the TCP header (rawv6_rcv).
func synFilter(v6 bool, port uint16) []bpf.Instruction {
	const (
		pass = 128 // bytes kept: IPv4's 60-byte header and a TCP header
		drop = 0
	)
	var p []bpf.Instruction
	if v6 {
		p = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 2, Size: 2}, // destination port
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: 4},
			bpf.LoadAbsolute{Off: 13, Size: 1}, // flags
		}
	} else {
		p = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 6, Size: 2}, // fragment offset
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 7},
			bpf.LoadMemShift{Off: 0}, // X: the IP header's length
			bpf.LoadIndirect{Off: 2, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(port), SkipTrue: 4},
			bpf.LoadIndirect{Off: 13, Size: 1},
		}
	}
	return append(p,
		bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: tcpACK, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: tcpSYN | tcpRST, SkipTrue: 1},
		bpf.RetConstant{Val: pass},
		bpf.RetConstant{Val: drop},
	)
}

// attachSYNFilter attaches synFilter to the raw socket fd.
func attachSYNFilter(fd int, v6 bool, port uint16) error {
	raw, err := bpf.Assemble(synFilter(v6, port))
	if err != nil {
		return fmt.Errorf("syn filter: %w", err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err)
	}
	return nil
}
