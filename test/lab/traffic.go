package lab

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
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
		ld.results = append(ld.results, Result{At: start, Server: server, Err: err})
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
func (ld *Load) Report(from time.Time) LoadReport {
	r := LoadReport{ByServer: map[string]int{}}
	var lastOK time.Time
	for _, res := range ld.Results() {
		if res.At.Before(from) {
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

func (r LoadReport) String() string {
	s := fmt.Sprintf("%d requests, %d failed, longest gap %v, by server %v", r.Sent, r.Failed, r.Gap.Round(time.Millisecond), r.ByServer)
	if r.Failed > 0 {
		s += fmt.Sprintf(", failures from %s to %s (%v): %v", r.FirstFail.Format("15:04:05.000"), r.LastFail.Format("15:04:05.000"),
			r.LastFail.Sub(r.FirstFail).Round(time.Millisecond), r.Errors)
	}
	return s
}

// Streams are long-lived TCP connections to the echo service, each sending
// a numbered chunk every Interval and verifying its echo.
type Streams struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	broken  int
	errs    []string
	rounds  int
	started int
}

// StartStreams opens n echo connections through the VIP.
func (l *Lab) StartStreams(n int, interval time.Duration) *Streams {
	l.T.Helper()
	s := &Streams{stop: make(chan struct{})}
	for i := range n {
		c, err := l.Dial(netip.AddrPortFrom(l.VIP, EchoPort), 2*time.Second)
		if err != nil {
			l.T.Fatalf("echo connection %d: %v", i, err)
		}
		s.started++
		s.wg.Add(1)
		go s.run(i, c, interval)
	}
	l.T.Cleanup(s.Stop)
	return s
}

func (s *Streams) run(id int, c net.Conn, interval time.Duration) {
	defer s.wg.Done()
	defer c.Close()
	r := bufio.NewReader(c)
	out := make([]byte, 64)
	in := make([]byte, 64)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := uint64(0); ; seq++ {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		binary.BigEndian.PutUint64(out, uint64(id))
		binary.BigEndian.PutUint64(out[8:], seq)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Write(out)
		if err == nil {
			_, err = io.ReadFull(r, in)
		}
		if err == nil && !bytes.Equal(in, out) {
			err = fmt.Errorf("echo mismatch")
		}
		if err != nil {
			select {
			case <-s.stop:
				return
			default:
			}
			s.mu.Lock()
			s.broken++
			s.errs = append(s.errs, fmt.Sprintf("stream %d after %d rounds: %v", id, seq, err))
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		s.rounds++
		s.mu.Unlock()
	}
}

// Stop closes the connections (idempotent).
func (s *Streams) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
}

// Report returns how many connections broke and why.
func (s *Streams) Report() (started, broken, rounds int, errs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started, s.broken, s.rounds, append([]string(nil), s.errs...)
}
