package health

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A probe's life in a synProber (synprobe.go): start sends its SYN,
// answer (the reader goroutine) or runTimers (the timer goroutine) ends
// it.

// probe sends a SYN to target from src (IPv4 without bindto: the source
// the kernel picks, for the checksum) and waits for its answer until
// deadline (none: zero), or until ctx is done. Its errors read as
// net.Dial's, as connectReset's.
func (p *synProber) probe(ctx context.Context, target netip.AddrPort, src netip.Addr, via *pktPath, deadline time.Time) error {
	result := make(chan error, 1)
	pr, err := p.start(target, src, via, deadline, func(err error) { result <- err }, nil)
	if err != nil {
		return err
	}
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		p.mu.Lock()
		unsent := pr.retry // its SYN waits for room (busySYN)
		p.mu.Unlock()
		p.cancel(pr)
		switch {
		case !errors.Is(ctx.Err(), context.DeadlineExceeded):
			return opErr(target, errCanceled)
		case unsent:
			return opErr(target, errNoRoom)
		}
		return opErr(target, os.ErrDeadlineExceeded)
	}
}

// start sends a SYN to target from src and returns: done is called once
// with the verdict (as probe's), from the prober's goroutines, unless
// start returns an error (errProberClosed, or the SYN could not be sent).
// With a batch, the SYN waits in it, and leaves when the batch is
// flushed (a SYN the kernel refuses then calls done).
func (p *synProber) start(target netip.AddrPort, src netip.Addr, via *pktPath, deadline time.Time, done func(error), b *startBatch) (*synProbe, error) {
	return p.startIn(new(synProbe), target, src, via, deadline, done, b, false, time.Now())
}

// startIn is start in pr, whose memory the caller gives (a Manager's
// run keeps one, asyncRun): it must not be given again before done was
// called, nor, when b is not nil, before b was flushed. With raw, done
// gets the verdict as it is (os.ErrDeadlineExceeded, a refusal...), not
// as net.Dial's error. now is the time (a Manager's round starts its
// checks at one).
func (p *synProber) startIn(pr *synProbe, target netip.AddrPort, src netip.Addr, via *pktPath, deadline time.Time, done func(error), b *startBatch, raw bool, now time.Time) (*synProbe, error) {
	*pr = synProbe{target: target, src: src, via: via, deadline: deadline, rto: synRTO, index: -1, done: done, raw: raw}
	pr.setNext(now.Add(synRTO))
	addr := target.Addr().WithZone("")
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errProberClosed
	}
	for {
		pr.seq = rand.Uint32()
		pr.match = synMatch{addr: addr, port: target.Port(), ack: pr.seq + 1}
		if p.pending[pr.match.key()] == nil {
			break
		}
	}
	p.addLocked(pr)
	if len(p.pending) == 1 && p.tap != nil {
		select { // the reader waits for probes, not for the socket
		case p.busyKick <- struct{}{}:
		default:
		}
	}
	p.timers.push(pr)
	early := p.earlierLocked(pr.next)
	p.mu.Unlock()
	if early {
		p.wakeTimers()
	}
	if b != nil {
		b.add(p, pr)
		return pr, nil
	}
	s := synOut{pr.match, pr.src, pr.seq, pr.via}
	if err := p.send(s); err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			p.busySYN(pr, s.m)
			return pr, nil
		}
		if p.cancel(pr) {
			return nil, opErr(target, os.NewSyscallError("connect", err))
		}
		// Answered or closed meanwhile: done has been called.
	}
	return pr, nil
}

// setNext sets pr's next timer at t, or at its deadline if that comes
// first.
func (pr *synProbe) setNext(t time.Time) {
	pr.next = t
	if !pr.deadline.IsZero() && pr.deadline.Before(t) {
		pr.next = pr.deadline
	}
}

// endAt is end for a probe whose verdict came at now: the readers read
// the clock once for the answers they read together (done may read it,
// ended).
func (pr *synProbe) endAt(err error, now time.Time) {
	pr.ended = now
	pr.end(err)
}

// end calls pr's done with err, as net.Dial's error (errProberClosed,
// and any with raw, as it is).
func (pr *synProbe) end(err error) {
	switch {
	case err == nil, pr.raw, errors.Is(err, errProberClosed):
		pr.done(err)
	default:
		pr.done(opErr(pr.target, err))
	}
}

// errNoRoom is the verdict of a probe whose SYN never found room on its
// interface by its deadline (busySYN).
var errNoRoom error = os.NewSyscallError("connect", unix.ENOBUFS)

// errRefused is the verdict of a RST, one for all: an answer's verdict
// was an allocation of its own, 12,800 a second when 64,000 real servers
// every 5 s refuse.
var errRefused error = os.NewSyscallError("connect", unix.ECONNREFUSED)

// opErr is err as net.Dial's error for target.
func opErr(target netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(target), Err: err}
}

// cancel forgets pr, and reports whether it was pending (done will not
// be called).
func (p *synProber) cancel(pr *synProbe) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending[pr.match.key()] != pr {
		return false
	}
	p.removeLocked(pr)
	return true
}

// synsDeferred counts the SYNs the interface had no room for (busySYN).
var synsDeferred atomic.Uint64

// SYNsDeferred is how many times a tcp check's SYN found no room on its
// interface (ENOBUFS) and was sent again a little later.
func SYNsDeferred() uint64 { return synsDeferred.Load() }

// busySYN sends the SYN m of pr again soon: the interface had no room
// for it (sendSYNs). It waits synBusyWait, doubled at each refusal of the
// same probe's SYN, then the timer goroutine sends it (runTimers); its
// first resend comes synRTO after that. A probe whose SYN never left by
// its deadline ends with ENOBUFS, not as unanswered. Nothing happens if
// pr is no longer pending with m (answered, ended, or started again
// since).
func (p *synProber) busySYN(pr *synProbe, m synMatch) {
	synsDeferred.Add(1)
	now := time.Now()
	p.mu.Lock()
	if p.closed || pr.match != m || p.pending[m.key()] != pr || pr.index < 0 {
		p.mu.Unlock()
		return
	}
	pr.refusals = min(pr.refusals+1, synBusyMaxShift+1)
	pr.retry = true
	pr.setNext(now.Add(synBusyWait << (pr.refusals - 1)))
	if !p.timers.down(pr.index) {
		p.timers.up(pr.index)
	}
	early := p.earlierLocked(pr.next)
	p.mu.Unlock()
	if early {
		p.wakeTimers()
	}
}

// earlierLocked reports whether the timer goroutine must be woken for a
// timer at t, earlier than it wakes (armed; a later one, the usual case,
// does not wake it), once p.mu is released (wakeTimers). Called with
// p.mu held.
func (p *synProber) earlierLocked(t time.Time) bool {
	if !t.Before(p.armed) {
		return false
	}
	p.armed = t
	return true
}

// wakeTimers wakes the timer goroutine (runTimers).
func (p *synProber) wakeTimers() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// addLocked makes pr pending. Called with p.mu held.
func (p *synProber) addLocked(pr *synProbe) {
	p.pending[pr.match.key()] = pr
	p.peak = max(p.peak, len(p.pending))
	if p.tap != nil {
		p.tap.pending.Add(1)
	}
}

// removeLocked forgets pr, whose done the caller then calls. Called with
// p.mu held.
func (p *synProber) removeLocked(pr *synProbe) {
	delete(p.pending, pr.match.key())
	if p.tap != nil {
		p.tap.pending.Add(-1)
	}
	if pr.index >= 0 {
		p.timers.remove(pr.index)
	}
	if len(p.pending) == 0 {
		p.idle = time.Now()
	}
	if n := len(p.pending); p.peak >= pendingShrink && n < p.peak/8 {
		// A new map sized for n (maps.Clone copies the tables as
		// they are).
		m := make(map[uint64]*synProbe, 2*n)
		maps.Copy(m, p.pending)
		p.pending, p.peak = m, n
	}
}

// send sends the SYN of a probe alone.
func (p *synProber) send(s synOut) error {
	buf := sendBufs.Get().(*synSendBuf)
	defer sendBufs.Put(buf)
	var serr error
	err := p.sendSYNs(buf, []synOut{s}, func(_ int, err error) { serr = err })
	if err != nil {
		return err
	}
	return serr
}

// sendBufs are the synSendBufs of send.
var sendBufs = sync.Pool{New: func() any { return new(synSendBuf) }}

// tcpChecksum4 is the checksum of an IPv4 TCP segment (RFC 9293 3.1:
// with the pseudo-header) whose checksum field is zero.
func tcpChecksum4(src, dst netip.Addr, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	sum := uint32(unix.IPPROTO_TCP) + uint32(len(seg))
	sum = onesSum(onesSum(onesSum(sum, s[:]), d[:]), seg)
	return ^foldSum(sum)
}

// ipChecksum is the checksum of an IPv4 header whose checksum is zero.
func ipChecksum(h []byte) uint16 { return ^foldSum(onesSum(0, h)) }

// onesSum adds b's 16-bit big-endian words to sum (RFC 1071; an odd last
// byte padded with zero).
func onesSum(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// foldSum folds a 32-bit sum of words into 16 bits.
func foldSum(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// read is the reader goroutine: it completes the probes the answers that
// pass the filter belong to, and those the tap took, until the prober
// closes. While probes are pending it reads every synReadEvery
// (synTapReadEvery with a tap), all the answers come by then: at 12,800
// checks a second, a wake-up for each answer was the most of the daemon's
// user time left. Otherwise it waits for the next answer (with a tap, for
// the next probe). While a Manager's scheduler drains the tap in its
// rounds (drainProbeTaps), the reader reads every synTapBackstop only:
// the answers arriving where the tap does not take them wait that long.
func (p *synProber) read() {
	buf := new(synRecvBuf)
	var tbuf *tapBuf
	if p.tap != nil {
		tbuf = new(tapBuf)
	}
	every := synReadEvery
	if tbuf != nil {
		every = synTapReadEvery
	}
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		busy := p.busy()
		if !busy && tbuf != nil {
			// The tap takes the answers off the wire, and the raw socket
			// may never hear of them: wait for a probe instead.
			select {
			case <-p.busyKick:
				continue
			case <-p.done:
				return
			}
		}
		if tbuf != nil {
			p.reg.drainTap(p.tap, tbuf)
		}
		if _, err := p.recvAnswers(buf, !busy); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				// A socket that cannot be read answers nothing more:
				// close, and the next checks open another prober.
				p.close()
			}
			return
		}
		if busy {
			wait := every
			if tbuf != nil && tapDrainers.Load() > 0 {
				wait = synTapBackstop
			}
			t.Reset(wait)
			select {
			case <-t.C:
			case <-p.done:
				return
			}
		}
	}
}

// busy reports whether probes are pending.
func (p *synProber) busy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0
}

// parseAnswer returns the match of the probe the segment pkt answers,
// and the verdict it carries: pkt is an IPv4 packet (the raw socket gets
// the IP header), or an IPv6 TCP segment from from. It reports false for
// anything else.
func (p *synProber) parseAnswer(pkt []byte, from netip.Addr) (m synMatch, verdict error, ok bool) {
	addr := from
	tcp := pkt
	if !p.key.v6 {
		if len(pkt) < 20 || pkt[0]>>4 != 4 {
			return m, nil, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || len(pkt) < ihl {
			return m, nil, false
		}
		addr = netip.AddrFrom4([4]byte(pkt[12:16]))
		tcp = pkt[ihl:]
	}
	if len(tcp) < 20 || binary.BigEndian.Uint16(tcp[2:]) != p.port {
		return m, nil, false
	}
	flags := tcp[13]
	switch {
	case flags&tcpACK == 0:
		return m, nil, false
	case flags&tcpRST != 0:
		verdict = errRefused
	case flags&(tcpSYN|tcpFIN) == tcpSYN:
	default:
		return m, nil, false
	}
	m = synMatch{addr: addr, port: binary.BigEndian.Uint16(tcp[0:]), ack: binary.BigEndian.Uint32(tcp[8:])}
	return m, verdict, true
}

// runTimers is the timer goroutine: it resends the SYNs that wait for an
// answer, ends the probes at their deadline and closes the prober when it
// has been idle for synIdleClose.
func (p *synProber) runTimers() {
	t := time.NewTimer(synIdleClose)
	defer t.Stop()
	buf := new(synSendBuf)
	var sends []synOut
	var sent, expired []*synProbe // sent: the probes of sends
	busy := func(i int, err error) {
		if errors.Is(err, unix.ENOBUFS) {
			p.busySYN(sent[i], sends[i].m)
		}
	}
	for {
		p.mu.Lock()
		now := time.Now()
		sends, sent, expired = sends[:0], sent[:0], expired[:0]
		for len(p.timers) > 0 && !p.timers[0].next.After(now) {
			pr := p.timers[0]
			if !pr.deadline.IsZero() && !pr.deadline.After(now) {
				p.removeLocked(pr)
				expired = append(expired, pr)
				continue
			}
			sends = append(sends, synOut{pr.match, pr.src, pr.seq, pr.via})
			sent = append(sent, pr)
			if pr.retry {
				// Its first send, late (busySYN): its resend comes rto
				// after it.
				pr.retry = false
			} else {
				pr.rto *= 2
			}
			pr.setNext(now.Add(pr.rto))
			p.timers.down(0)
		}
		wait := synIdleClose
		switch {
		case len(p.timers) > 0:
			wait = p.timers[0].next.Sub(now)
		case len(p.pending) == 0 && now.Sub(p.idle) >= synIdleClose:
			p.mu.Unlock()
			if p.closeIdle() {
				return
			}
			continue
		case len(p.pending) == 0:
			wait = synIdleClose - now.Sub(p.idle)
		}
		closed := p.closed
		p.armed = now.Add(wait)
		p.mu.Unlock()
		for i, pr := range expired {
			if pr.retry {
				// Its SYN never left: the interface had no room.
				pr.endAt(errNoRoom, now)
			} else {
				pr.endAt(os.ErrDeadlineExceeded, now)
			}
			expired[i] = nil
		}
		if closed {
			return
		}
		// An unsent SYN is an unanswered one: its probe times out, unless
		// the interface had no room for it (sent again soon).
		_ = p.sendSYNs(buf, sends, busy)
		clear(sent)
		t.Reset(wait)
		select {
		case <-t.C:
		case <-p.wake:
		case <-p.done:
			return
		}
	}
}

// closeIdle closes p if it is still idle, and reports whether it did.
func (p *synProber) closeIdle() bool {
	p.reg.mu.Lock()
	p.mu.Lock()
	idle := len(p.pending) == 0 && !p.closed
	if idle {
		_ = p.closeLocked()
	}
	p.mu.Unlock()
	p.reg.mu.Unlock()
	if idle {
		p.closeFiles()
	}
	return idle
}

// close closes p: its pending probes end with errProberClosed, and the
// checks that use p open another.
func (p *synProber) close() {
	p.reg.mu.Lock()
	p.mu.Lock()
	closed := p.closed
	var ended []*synProbe
	if !closed {
		ended = p.closeLocked()
	}
	p.mu.Unlock()
	p.reg.mu.Unlock()
	for _, pr := range ended {
		pr.end(errProberClosed)
	}
	if !closed {
		p.closeFiles()
	}
}

// closeLocked marks p closed, forgets it and returns its pending probes,
// which the caller ends. Called with p.reg.mu and p.mu held.
func (p *synProber) closeLocked() []*synProbe {
	p.closed = true
	if p.reg.m[p.key] == p {
		delete(p.reg.m, p.key)
	}
	var ended []*synProbe
	for _, pr := range p.pending {
		p.removeLocked(pr)
		ended = append(ended, pr)
	}
	close(p.done)
	return ended
}

// closeFiles closes p's sockets. Called without p.mu: closing waits for
// the reader, which may be waiting for the lock to complete a probe.
func (p *synProber) closeFiles() {
	p.unwatchAll()
	p.raw.Close()
	if p.pkt != nil {
		p.pkt.close()
	}
	unix.Close(p.hold)
}
