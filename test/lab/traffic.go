package lab

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Dial opens a TCP connection from the client namespace.
func (l *Lab) Dial(addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.Client.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	return c, err
}

// Get makes one HTTP request to the VIP (a new connection) and returns the
// name of the real server that answered.
func (l *Lab) Get(timeout time.Duration) (string, error) {
	return l.GetFrom(netip.AddrPortFrom(l.VIP, WebPort), timeout)
}

// GetFrom makes one HTTP/1.0 request to addr.
func (l *Lab) GetFrom(addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := l.Dial(addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr.Addr()); err != nil {
		return "", err
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.")) || !bytes.Contains(resp[:min(len(resp), 16)], []byte(" 200 ")) {
		return "", fmt.Errorf("bad response %.60q", resp)
	}
	i := bytes.Index(resp, []byte("\r\n\r\n"))
	if i < 0 {
		return "", fmt.Errorf("no body in %.60q", resp)
	}
	return strings.TrimSpace(string(resp[i+4:])), nil
}

// Result is one request of a Load.
type Result struct {
	At     time.Time
	Took   time.Duration // until the answer or the error
	Server string
	Err    error
}

// Load is a steady stream of HTTP requests (a new connection each) from
// the client, one every Interval, until Stop.
type Load struct {
	l        *Lab
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}

	mu      sync.Mutex
	results []Result
}

// StartLoad starts a request stream.
func (l *Lab) StartLoad(interval time.Duration) *Load {
	ld := &Load{l: l, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go ld.run()
	l.T.Cleanup(ld.Stop)
	return ld
}

func (ld *Load) run() {
	defer close(ld.done)
	tick := time.NewTicker(ld.interval)
	defer tick.Stop()
	for {
		select {
		case <-ld.stop:
			return
		case <-tick.C:
		}
		start := time.Now()
		server, err := ld.l.Get(2 * time.Second)
		ld.mu.Lock()
		ld.results = append(ld.results, Result{At: start, Took: time.Since(start), Server: server, Err: err})
		ld.mu.Unlock()
	}
}

// Stop stops the stream (idempotent).
func (ld *Load) Stop() {
	select {
	case <-ld.stop:
	default:
		close(ld.stop)
	}
	<-ld.done
}

// Results returns the requests made so far.
func (ld *Load) Results() []Result {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return append([]Result(nil), ld.results...)
}

// LoadReport summarises requests.
type LoadReport struct {
	Sent, Failed int
	// FirstFail and LastFail bound the failures (zero without any).
	FirstFail, LastFail time.Time
	// Gap is the longest time without a successful request start.
	Gap      time.Duration
	ByServer map[string]int
	Errors   []string
}

// Report summarises the results since from (zero: all).
func (ld *Load) Report(from time.Time) LoadReport { return ld.ReportBetween(from, time.Time{}) }

// ReportBetween summarises the requests started in [from, to) (a zero to:
// no end).
func (ld *Load) ReportBetween(from, to time.Time) LoadReport {
	r := LoadReport{ByServer: map[string]int{}}
	var lastOK time.Time
	for _, res := range ld.Results() {
		if res.At.Before(from) || (!to.IsZero() && !res.At.Before(to)) {
			continue
		}
		r.Sent++
		if res.Err != nil {
			r.Failed++
			if r.FirstFail.IsZero() {
				r.FirstFail = res.At
			}
			r.LastFail = res.At
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, res.Err.Error())
			}
			continue
		}
		r.ByServer[res.Server]++
		if !lastOK.IsZero() && res.At.Sub(lastOK) > r.Gap {
			r.Gap = res.At.Sub(lastOK)
		}
		lastOK = res.At
	}
	return r
}

// Share is the fraction of the successful requests that server answered.
func (r LoadReport) Share(server string) float64 {
	if ok := r.Sent - r.Failed; ok > 0 {
		return float64(r.ByServer[server]) / float64(ok)
	}
	return 0
}

func (r LoadReport) String() string {
	s := fmt.Sprintf("%d requests, %d failed, longest gap %v, by server %v", r.Sent, r.Failed, r.Gap.Round(time.Millisecond), r.ByServer)
	if r.Failed > 0 {
		s += fmt.Sprintf(", failures from %s to %s (%v): %v", r.FirstFail.Format("15:04:05.000"), r.LastFail.Format("15:04:05.000"),
			r.LastFail.Sub(r.FirstFail).Round(time.Millisecond), r.Errors)
	}
	return s
}

// StreamStall bounds a round of a stream: a connection whose echo does not
// come back within it has stalled (blackholed) and counts as broken. TCP
// retransmits a lost segment after 0.2, 0.6, 1.4 and 3 s, so a takeover of
// a second or two stays well inside it.
const StreamStall = 5 * time.Second

// Streams are long-lived TCP connections to the echo service, each sending
// a numbered chunk every Interval and verifying its echo. A connection
// breaks when a round fails or makes no progress for StreamStall.
type Streams struct {
	lab      *Lab
	interval time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex
	streams []*StreamReport
}

// StreamReport is what happened to one stream.
type StreamReport struct {
	ID int
	// Client is the connection's address and port on the client.
	Client netip.AddrPort
	// Server is the real server holding the connection (known from its
	// first round, made before the stream starts).
	Server string
	Rounds int
	// Last is when the last verified round ended; MaxGap the longest time
	// between two verified rounds (a takeover shows here).
	Last   time.Time
	MaxGap time.Duration
	// Err says why the stream broke ("" if it did not).
	Err string
}

// StartStreams opens n echo connections through the VIP.
func (l *Lab) StartStreams(n int, interval time.Duration) *Streams {
	l.T.Helper()
	return l.startStreams(EchoPort, interval, func(_ map[string]int, opened int) bool { return opened < n })
}

// StartStreamsEach opens echo connections through the VIP until every real
// server holds at least n of them (the scheduler decides where each goes).
func (l *Lab) StartStreamsEach(n int, interval time.Duration) *Streams {
	l.T.Helper()
	return l.StartStreamsEachTo(EchoPort, n, interval)
}

// StartStreamsEachTo is StartStreamsEach to an echo service on port.
func (l *Lab) StartStreamsEachTo(port uint16, n int, interval time.Duration) *Streams {
	l.T.Helper()
	limit := 20 * n * len(l.Reals)
	return l.startStreams(port, interval, func(by map[string]int, opened int) bool {
		for _, r := range l.Reals {
			if by[r.Name] < n {
				if opened >= limit {
					l.T.Fatalf("%d echo connections, still fewer than %d on %s: %v", opened, n, r.Name, by)
				}
				return true
			}
		}
		return false
	})
}

// StartStreamsTo opens n echo connections to the VIP's port.
func (l *Lab) StartStreamsTo(port uint16, n int, interval time.Duration) *Streams {
	l.T.Helper()
	return l.startStreams(port, interval, func(_ map[string]int, opened int) bool { return opened < n })
}

func (l *Lab) startStreams(port uint16, interval time.Duration, more func(byServer map[string]int, opened int) bool) *Streams {
	l.T.Helper()
	s := &Streams{lab: l, interval: interval, stop: make(chan struct{})}
	l.T.Cleanup(s.Stop)
	by := map[string]int{}
	for id := 0; more(by, id); id++ {
		c, err := l.Dial(netip.AddrPortFrom(l.VIP, port), 2*time.Second)
		if err != nil {
			l.T.Fatalf("echo connection %d: %v", id, err)
		}
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		st := &StreamReport{ID: id, Client: netip.AddrPortFrom(local.Addr().Unmap(), local.Port())}
		r := bufio.NewReader(c)
		// The first round, here: it tells which real server took the
		// connection (it has accepted it once it echoes).
		if err := st.round(c, r, 0); err != nil {
			c.Close()
			l.T.Fatalf("echo connection %d, first round: %v", id, err)
		}
		st.Server = l.echoServerOf(c.LocalAddr().String())
		by[st.Server]++
		s.mu.Lock()
		s.streams = append(s.streams, st)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.run(st, c, r)
	}
	return s
}

// round sends chunk seq and verifies its echo within StreamStall.
func (st *StreamReport) round(c net.Conn, r *bufio.Reader, seq uint64) error {
	out := make([]byte, 64)
	in := make([]byte, 64)
	binary.BigEndian.PutUint64(out, uint64(st.ID))
	binary.BigEndian.PutUint64(out[8:], seq)
	_ = c.SetDeadline(time.Now().Add(StreamStall))
	_, err := c.Write(out)
	if err == nil {
		_, err = io.ReadFull(r, in)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("stalled: no echo for %v", StreamStall)
	}
	if err == nil && !bytes.Equal(in, out) {
		err = fmt.Errorf("echo mismatch")
	}
	if err == nil {
		now := time.Now()
		if !st.Last.IsZero() && now.Sub(st.Last) > st.MaxGap {
			st.MaxGap = now.Sub(st.Last)
		}
		st.Last = now
		st.Rounds++
	}
	return err
}

// run makes a round every interval; once Stop is asked, one more round
// (a stream stalled at that time breaks instead of going unnoticed).
func (s *Streams) run(st *StreamReport, c net.Conn, r *bufio.Reader) {
	defer s.wg.Done()
	defer c.Close()
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		last := false
		select {
		case <-s.stop:
			last = true
		case <-tick.C:
		}
		// st is written here only; readers copy it under s.mu.
		s.mu.Lock()
		cur := *st
		s.mu.Unlock()
		err := cur.round(c, r, seq)
		s.mu.Lock()
		*st = cur
		if err != nil {
			st.Err = fmt.Sprintf("stream %d (%s) after %d rounds: %v", st.ID, st.Server, st.Rounds, err)
		}
		s.mu.Unlock()
		if err != nil || last {
			return
		}
	}
}

// Stop ends the streams (idempotent): each makes one last verified round,
// so one stalled at this point counts as broken.
func (s *Streams) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// Streams returns each stream's report so far.
func (s *Streams) Streams() []StreamReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]StreamReport, len(s.streams))
	for i, st := range s.streams {
		out[i] = *st
	}
	return out
}

// Report returns how many connections broke and why.
func (s *Streams) Report() (started, broken, rounds int, errs []string) {
	for _, st := range s.Streams() {
		started++
		rounds += st.Rounds
		if st.Err != "" {
			broken++
			errs = append(errs, st.Err)
		}
	}
	return started, broken, rounds, errs
}
