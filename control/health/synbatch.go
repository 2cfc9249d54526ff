package health

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A synProber's system calls come in batches: the SYNs of the checks a
// Manager starts in one round, and those the timer goroutine resends,
// leave with one sendmmsg; the reader takes the answers waiting with one
// recvmmsg (the kernel's __sys_sendmmsg and do_recvmmsg loop over
// ____sys_sendmsg and ____sys_recvmsg). At 12,800 checks a second, a
// sendto and a recvfrom per check were most of the daemon's system calls
// (issue 13).

// Both are raw system calls (no entersyscall): the sockets are
// non-blocking, the calls return at once. Go's entersyscall wakes the
// runtime's sysmon thread from its deep sleep and makes it poll every
// 20 us for a while after: with the checks' work in bursts every few
// milliseconds, that was thousands of sysmon wake-ups a second (issue 13).

// synBatchMax is the most SYNs one sendmmsg sends, and the most answers
// one recvmmsg reads (UIO_MAXIOV caps a call at 1024).
const synBatchMax = 64

// synOut is a SYN to send.
type synOut struct {
	m   synMatch
	src netip.Addr
	seq uint32
	via *pktPath // nil: through the raw socket
}

// synSendBuf is the memory of a sendmmsg call; its owner sends with it
// from one goroutine at a time.
type synSendBuf struct {
	segs  [synBatchMax][24]byte
	v4    [synBatchMax]unix.RawSockaddrInet4
	v6    [synBatchMax]unix.RawSockaddrInet6
	iovs  [synBatchMax]unix.Iovec
	msgs  [synBatchMax]unix.Mmsghdr
	idx   [synBatchMax]int // the index in the chunk of each of msgs
	batch []synOut
	// The packet socket's (synsend.go).
	frames [synBatchMax][pktFrameLen]byte
	ll     [synBatchMax]unix.RawSockaddrLinklayer
	piovs  [synBatchMax]unix.Iovec
	pmsgs  [synBatchMax]unix.Mmsghdr
	pidx   [synBatchMax]int
	call   mmsgCall
}

// sendSYNs sends the SYNs of syns, synBatchMax per system call, with
// buf; failed is called with the index in syns of each SYN the kernel
// refused and why. It returns an error when the socket cannot be written
// at all (closed); the SYNs from the first unsent one are then lost. The
// SYNs with a path that has its neighbour's address leave through the
// packet socket, the others through the raw socket.
//
// A SYN the interface had no room for fails with ENOBUFS (a veth whose
// peer's ring is full, a queue that drops), and so do the packet
// socket's SYNs after it in syns, unsent: its caller sends them again a
// little later (busySYN). Sent through the stack instead, as they were,
// they met the same full ring, and the stack drops them silently
// (raw_sendmsg reports no ENOBUFS without IP_RECVERR): with a check's
// timeout of 1 s, its SYN's first resend, each was a failed run. In the
// scale benchmark (64,000 checks every 5 s, over veths whose peers' NAPI
// runs in threads), the stack dropped 375 SYNs so in the first minute
// (IpOutDiscards), none with this; a build with rounds of 20 ms (256
// SYNs) lost about 400 a second.
func (p *synProber) sendSYNs(buf *synSendBuf, syns []synOut, failed func(i int, err error)) error {
	var now time.Time
	full := false // the packet socket's device had no room: skip the rest
	for base := 0; base < len(syns); base += synBatchMax {
		chunk := syns[base:min(base+synBatchMax, len(syns))]
		nraw, npkt := 0, 0
		for i, s := range chunk {
			p.fillSYN(&buf.segs[i], s)
			if s.via != nil && p.pkt != nil {
				if now.IsZero() {
					now = time.Now()
				}
				if eth := p.pkt.frame(s.via, now); eth != nil {
					k := npkt
					npkt++
					buf.pidx[k] = i
					if full {
						continue // refused below, unsent
					}
					p.pkt.fillFrame(&buf.frames[k], eth, s, &buf.segs[i])
					buf.piovs[k] = unix.Iovec{Base: &buf.frames[k][0]}
					buf.piovs[k].SetLen(pktFrameLen)
					buf.ll[k] = unix.RawSockaddrLinklayer{Family: unix.AF_PACKET, Protocol: htons(unix.ETH_P_IP), Ifindex: int32(s.via.link.index), Halen: 6}
					copy(buf.ll[k].Addr[:6], eth[0:6])
					h := &buf.pmsgs[k].Hdr
					*h = unix.Msghdr{Iov: &buf.piovs[k]}
					h.SetIovlen(1)
					h.Name, h.Namelen = (*byte)(unsafe.Pointer(&buf.ll[k])), unix.SizeofSockaddrLinklayer
					continue
				}
			}
			buf.idx[nraw] = i
			nraw++
		}
		switch {
		case npkt > 0 && full:
			for _, i := range buf.pidx[:npkt] {
				failed(base+i, unix.ENOBUFS)
			}
		case npkt > 0:
			fail := func(k int, err error) {
				full = full || errors.Is(err, unix.ENOBUFS)
				failed(base+buf.pidx[k], err)
			}
			if err := sendmmsg(p.pkt.rc, &buf.call, buf.pmsgs[:npkt], &p.pkt.calls, fail); err != nil {
				// The packet socket is closed: so is the prober.
				return err
			}
		}
		for k, i := range buf.idx[:nraw] {
			s := chunk[i]
			buf.iovs[k] = unix.Iovec{Base: &buf.segs[i][0]}
			buf.iovs[k].SetLen(len(buf.segs[i]))
			h := &buf.msgs[k].Hdr
			*h = unix.Msghdr{Iov: &buf.iovs[k]}
			h.SetIovlen(1)
			if p.key.v6 {
				buf.v6[k] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: s.m.addr.As16()}
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&buf.v6[k])), unix.SizeofSockaddrInet6
			} else {
				buf.v4[k] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: s.m.addr.As4()}
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&buf.v4[k])), unix.SizeofSockaddrInet4
			}
		}
		if nraw > 0 {
			fail := func(k int, err error) { failed(base+buf.idx[k], err) }
			if err := sendmmsg(p.rc, &buf.call, buf.msgs[:nraw], &p.sendCalls, fail); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendmmsg sends msgs on rc's socket with call; failed is called with
// the index in msgs of each message the kernel refused and why, and with
// ENOBUFS for each one left unsent after the device had no room for one
// (ENOBUFS). It returns an error when the socket cannot be written at
// all (closed).
func sendmmsg(rc syscall.RawConn, call *mmsgCall, msgs []unix.Mmsghdr, calls *atomic.Uint64, failed func(i int, err error)) error {
	if call.write == nil {
		call.write = call.send // once: a method value is an allocation
	}
	defer func() { call.msgs, call.calls = nil, nil }()
	call.calls = calls
	for off := 0; off < len(msgs); {
		call.msgs, call.n, call.errno = msgs[off:], 0, 0
		if err := rc.Write(call.write); err != nil {
			return err
		}
		switch {
		case call.errno == unix.ENOBUFS:
			// No room on the device: the next ones would find none
			// either, one system call each.
			for i := off; i < len(msgs); i++ {
				failed(i, unix.ENOBUFS)
			}
			return nil
		case call.errno != 0:
			// The first message left failed (the kernel stops a batch
			// at an error, and reports it only if nothing was sent).
			failed(off, call.errno)
			off++
		case call.n <= 0:
			failed(off, unix.EIO) // nothing sent, no error: not seen
			off++
		default:
			off += call.n
		}
	}
	return nil
}

// mmsgCall is a sendmmsg call's state, for rc.Write's function: a closure
// of its own for each call (and the variables it shared with sendmmsg)
// was four allocations, 88 bytes at every round of the checks' scheduler,
// most of the steady daemon's garbage at 64,000 checks every 5 s.
type mmsgCall struct {
	msgs  []unix.Mmsghdr // the messages left to send
	calls *atomic.Uint64 // counts the system calls
	n     int            // messages sent by the last call
	errno unix.Errno     // its error, when it sent none
	write func(fd uintptr) bool
}

// send is rc.Write's function: one sendmmsg.
func (c *mmsgCall) send(fd uintptr) bool {
	for {
		c.calls.Add(1)
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&c.msgs[0])), uintptr(len(c.msgs)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // the send buffer is full: wait
		}
		c.n, c.errno = int(r), e
		return true
	}
}

// htons is v in network order, as a sockaddr_ll's protocol.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// fillSYN writes the SYN s into b: a TCP header with an MSS option.
func (p *synProber) fillSYN(b *[24]byte, s synOut) {
	*b = [24]byte{}
	binary.BigEndian.PutUint16(b[0:], p.port)
	binary.BigEndian.PutUint16(b[2:], s.m.port)
	binary.BigEndian.PutUint32(b[4:], s.seq)
	b[12] = 6 << 4 // data offset: 6 words
	b[13] = tcpSYN
	binary.BigEndian.PutUint16(b[14:], synWindow)
	b[20], b[21] = 2, 4 // MSS (RFC 9293 3.2)
	binary.BigEndian.PutUint16(b[22:], p.mss)
	if !p.key.v6 {
		binary.BigEndian.PutUint16(b[16:], tcpChecksum4(s.src, s.m.addr, b[:]))
	}
}

// synRecvBuf is the memory of the reader's recvmmsg calls, and of their
// state: a closure for each call, and the variables it shared with
// recvAnswers, were 3 allocations at every read (every millisecond while
// probes are pending).
type synRecvBuf struct {
	pkts [synBatchMax][128]byte // IPv4's headers with options, or IPv6's TCP header
	v6   [synBatchMax]unix.RawSockaddrInet6
	iovs [synBatchMax]unix.Iovec
	msgs [synBatchMax]unix.Mmsghdr
	done []*synProbe
	errs []error

	// The call of recvAnswers in progress: its prober and wait, what
	// readFD found, and readFD bound once.
	p    *synProber
	wait bool
	got  bool
	rerr error
	read func(fd uintptr) bool
}

// recvAnswers reads the answers waiting on p's socket, synBatchMax per
// system call, and completes their probes. It reports whether it read
// any: when none waits it returns at once unless wait, when it waits in
// the poller for one.
func (p *synProber) recvAnswers(buf *synRecvBuf, wait bool) (bool, error) {
	if buf.read == nil {
		buf.read = buf.readFD
	}
	buf.p, buf.wait, buf.got, buf.rerr = p, wait, false, nil
	err := p.rc.Read(buf.read)
	if err == nil {
		err = buf.rerr
	}
	got := buf.got
	buf.p, buf.rerr = nil, nil
	return got, err
}

// readFD is recvAnswers' read of fd, as syscall.RawConn.Read calls it.
func (buf *synRecvBuf) readFD(fd uintptr) bool {
	p := buf.p
	for {
		for i := range buf.msgs {
			buf.iovs[i] = unix.Iovec{Base: &buf.pkts[i][0]}
			buf.iovs[i].SetLen(len(buf.pkts[i]))
			h := &buf.msgs[i].Hdr
			*h = unix.Msghdr{Iov: &buf.iovs[i]}
			h.SetIovlen(1)
			if p.key.v6 {
				// IPv4's source is in the IP header: no name to fill.
				h.Name, h.Namelen = (*byte)(unsafe.Pointer(&buf.v6[i])), unix.SizeofSockaddrInet6
			}
		}
		p.recvCalls.Add(1)
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&buf.msgs[0])), synBatchMax, 0, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN:
			return buf.got || !buf.wait
		case unix.EINTR:
			continue
		default:
			buf.rerr = os.NewSyscallError("recvmmsg", e)
			return true
		}
		n := int(r)
		if n > 0 {
			buf.got = true
		}
		p.answers(buf, n)
		if n < synBatchMax {
			// The queue was empty: no need to ask again.
			return buf.got || !buf.wait
		}
	}
}

// answers completes the probes the first n answers of buf answer, under
// one lock.
func (p *synProber) answers(buf *synRecvBuf, n int) {
	buf.done, buf.errs = buf.done[:0], buf.errs[:0]
	p.mu.Lock()
	for i := range n {
		var from netip.Addr
		if p.key.v6 {
			if buf.v6[i].Family != unix.AF_INET6 || buf.msgs[i].Hdr.Namelen < unix.SizeofSockaddrInet6 {
				continue
			}
			from = netip.AddrFrom16(buf.v6[i].Addr)
		}
		m, verdict, ok := p.parseAnswer(buf.pkts[i][:min(int(buf.msgs[i].Len), len(buf.pkts[i]))], from)
		if !ok {
			continue
		}
		if pr := p.pending[m.key()]; pr != nil && pr.match == m {
			p.removeLocked(pr)
			buf.done, buf.errs = append(buf.done, pr), append(buf.errs, verdict)
		}
	}
	p.mu.Unlock()
	var now time.Time
	if len(buf.done) > 0 {
		now = time.Now()
	}
	for i, pr := range buf.done {
		pr.endAt(buf.errs[i], now)
		buf.done[i], buf.errs[i] = nil, nil
	}
}

// startBatch holds the SYNs of the checks a Manager starts in one round
// (startCheck), until flush sends them. One goroutine uses it.
type startBatch struct {
	probes []batchedProbe
	rest   []batchedProbe
	mine   []batchedProbe
	syns   []synOut
	buf    synSendBuf
}

type batchedProbe struct {
	p  *synProber
	pr *synProbe
}

func (b *startBatch) add(p *synProber, pr *synProbe) {
	b.probes = append(b.probes, batchedProbe{p, pr})
}

// flush sends the SYNs of b, with one sendmmsg per prober and
// synBatchMax SYNs. A probe whose SYN the kernel refused ends (done, from
// the calling goroutine) with the error, as probe's.
func (b *startBatch) flush() {
	for len(b.probes) > 0 {
		p := b.probes[0].p
		b.syns, b.rest, b.mine = b.syns[:0], b.rest[:0], b.mine[:0]
		for _, e := range b.probes {
			if e.p != p {
				b.rest = append(b.rest, e)
				continue
			}
			b.syns = append(b.syns, synOut{e.pr.match, e.pr.src, e.pr.seq, e.pr.via})
			b.mine = append(b.mine, e)
		}
		fail := func(i int, err error) {
			if errors.Is(err, unix.ENOBUFS) {
				p.busySYN(b.mine[i].pr, b.syns[i].m)
				return
			}
			if pr := b.mine[i].pr; p.cancel(pr) {
				pr.end(os.NewSyscallError("connect", err))
			}
		}
		if err := p.sendSYNs(&b.buf, b.syns, fail); err != nil {
			// Closed: the probes still pending (none, unless closing
			// raced with this) end as a refused SYN.
			for i := range b.mine {
				fail(i, err)
			}
		}
		clear(b.probes)
		clear(b.mine)
		b.probes, b.rest = b.rest, b.probes[:0]
	}
}
