package lab

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/test/packet"
)

// packetGen is the flood's generator where the kernel refuses live frames
// (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES fails with EPERM on some
// sandboxed kernels, for root too): the same SYNs as bpf/bench/flood.c's,
// each from a random source address and port, sent by an AF_PACKET socket
// on f0 with sendmmsg, past the qdisc. Slower than live frames (a syscall
// per batch instead of none), it still offers several times the SYN rate
// that starts flood mode on one CPU.
type packetGen struct {
	fd     int
	frames [][64]byte
	iovs   []unix.Iovec
	msgs   []mmsghdr
	rng    *rand.PCG
	net    uint32 // the sources' network, host order
	host   uint32 // the bits of a source left random
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

const packetGenBatch = 256

// newPacketGen opens the socket on ifindex (in the caller's namespace) and
// prepares a batch of copies of tmpl, sources from net/bits.
func newPacketGen(ifindex int, tmpl []byte, src [4]byte, bits int) (*packetGen, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // 0: sends only
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket: qdisc bypass: %w", err)
	}
	g := &packetGen{fd: fd, frames: make([][64]byte, packetGenBatch), iovs: make([]unix.Iovec, packetGenBatch),
		msgs: make([]mmsghdr, packetGenBatch), rng: rand.NewPCG(rand.Uint64(), rand.Uint64()),
		net: binary.BigEndian.Uint32(src[:]), host: ^uint32(0) >> bits}
	for i := range g.frames {
		copy(g.frames[i][:], tmpl)
		g.iovs[i].Base = &g.frames[i][0]
		g.iovs[i].SetLen(len(g.frames[i]))
		g.msgs[i].hdr.Iov = &g.iovs[i]
		g.msgs[i].hdr.SetIovlen(1)
	}
	return g, nil
}

// send sends n SYNs, from one CPU: flood mode counts SYNs per CPU, and
// the veth hands each frame to the director's XDP program on the CPU that
// sent it (as live frames run on one CPU), so a thread moving between CPUs
// would split the flood's rate.
func (g *packetGen) send(n uint32) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var was, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		return fmt.Errorf("flood: CPU affinity: %w", err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return fmt.Errorf("flood: pin to CPU 0: %w", err)
	}
	defer unix.SchedSetaffinity(0, &was) // before the thread is unlocked
	for n > 0 {
		b := min(n, packetGenBatch)
		for i := range b {
			g.randomize(&g.frames[i])
		}
		sent := uint32(0)
		for sent < b {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(g.fd), uintptr(unsafe.Pointer(&g.msgs[sent])), uintptr(b-sent), 0, 0, 0)
			if errno == unix.EINTR || errno == unix.ENOBUFS || errno == unix.EAGAIN {
				continue
			}
			if errno != 0 {
				return fmt.Errorf("sendmmsg: %w", errno)
			}
			sent += uint32(r)
		}
		n -= b
	}
	return nil
}

// randomize gives frame f a random source address, port and sequence
// number and its IPv4 header checksum, as flood.c does (the TCP checksum
// is left as the template's: the director does not read it).
func (g *packetGen) randomize(f *[64]byte) {
	r := g.rng.Uint64()
	ip := f[14:34]
	binary.BigEndian.PutUint32(ip[12:16], g.net|uint32(r)&g.host)
	binary.BigEndian.PutUint16(f[34:36], uint16(1024+(r>>32)%64512))
	binary.BigEndian.PutUint32(f[38:42], uint32(r>>16))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], packet.Checksum(ip))
}

func (g *packetGen) close() { unix.Close(g.fd) }
