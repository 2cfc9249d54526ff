package vrrp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fakes for the node tests: a clock moved by hand, one host's network,
// a script runner that records, and the rig that starts a node on them.

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c      *fakeClock
	f      func()
	at     time.Time
	active bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	t := &fakeTimer{c: c, f: f}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

// Advance moves the time and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

func (c *fakeClock) fireLocked() {
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			go t.f()
		}
	}
}

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.at, t.active = t.c.now.Add(d), true
	t.c.fireLocked()
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.active = false
}

type sentAdvert struct {
	Advert
	src, dst netip.Addr
}

// fakeNet is one host with interfaces eth0 (10.0.0.1, fe80::1) and eth1.
type fakeNet struct {
	mu     sync.Mutex
	links  map[string]Link
	addrs  map[netip.Addr]VIP
	sent   []sentAdvert
	frames [][]byte
	conns  map[epKey]*fakeConn
	fconns map[epKey]*fakeConn
	report func(string, bool)
}

type fakeConn struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	net    *fakeNet
	key    epKey
}

func newFakeNet() *fakeNet {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	return &fakeNet{
		links: map[string]Link{
			"eth0": {Name: "eth0", Index: 2, MAC: mac, Up: true, Addr4: netip.MustParseAddr("10.0.0.1"), Addr6: netip.MustParseAddr("fe80::1")},
			"eth1": {Name: "eth1", Index: 3, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Up: true, Addr4: netip.MustParseAddr("10.1.0.1")},
		},
		addrs: map[netip.Addr]VIP{}, conns: map[epKey]*fakeConn{}, fconns: map[epKey]*fakeConn{},
	}
}

func (f *fakeNet) Link(name string, exclude []netip.Addr) (Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[name]
	if !ok {
		return Link{}, fmt.Errorf("link %s: not found", name)
	}
	return l, nil
}

func (f *fakeNet) newConn(m map[epKey]*fakeConn, k epKey) *fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fakeConn{in: make(chan []byte, 64), closed: make(chan struct{}), net: f, key: k}
	m[k] = c
	return c
}

func (f *fakeNet) ListenVRRP(ifname string, v6 bool) (PacketConn, error) {
	if _, err := f.Link(ifname, nil); err != nil {
		return nil, err
	}
	return f.newConn(f.conns, epKey{ifname, v6}), nil
}

func (f *fakeNet) ListenFrames(ifname string, v6 bool) (FrameConn, error) {
	return f.newConn(f.fconns, epKey{ifname, v6}), nil
}

func (f *fakeNet) AddAddr(v VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[v.Prefix.Addr()] = v
	return nil
}

func (f *fakeNet) DelAddr(v VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, v.Prefix.Addr())
	return nil
}

func (f *fakeNet) EnsureVMAC(parent, name string, mac net.HardwareAddr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[name] = Link{Name: name, Index: 9, MAC: mac, Up: true}
	return nil
}

func (f *fakeNet) DeleteVMAC(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.links, name)
	return nil
}

func (f *fakeNet) WatchLinks(ctx context.Context, report func(string, bool)) error {
	f.mu.Lock()
	f.report = report
	f.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (f *fakeNet) setLink(t *testing.T, name string, up bool) {
	t.Helper()
	waitUntil(t, "link watcher", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.report != nil })
	f.mu.Lock()
	l := f.links[name]
	l.Up = up
	f.links[name] = l
	report := f.report
	f.mu.Unlock()
	report(name, up)
}

func (f *fakeNet) hasAddr(a string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.addrs[netip.MustParseAddr(a)]
	return ok
}

func (f *fakeNet) adverts() []sentAdvert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func (f *fakeNet) sentFrames() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.frames)
}

// inject delivers a packet to the VRRP socket of (ifname, v6).
func (f *fakeNet) inject(t *testing.T, ifname string, v6 bool, b []byte) {
	t.Helper()
	var c *fakeConn
	waitUntil(t, "socket "+ifname, func() bool { f.mu.Lock(); defer f.mu.Unlock(); c = f.conns[epKey{ifname, v6}]; return c != nil })
	c.in <- b
}

func (f *fakeNet) injectFrame(t *testing.T, ifname string, b []byte) {
	t.Helper()
	var c *fakeConn
	waitUntil(t, "frames "+ifname, func() bool { f.mu.Lock(); defer f.mu.Unlock(); c = f.fconns[epKey{ifname, false}]; return c != nil })
	c.in <- b
}

// Packets injected carry a 4-byte header: TTL, then the source's last
// byte (the source is 10.0.0.x, dst the group), a kind and a byte of
// padding. Kind rawIPv4 carries a whole IPv4 datagram instead, stripped as
// the Linux socket does it (stripIPv4).
func (c *fakeConn) ReadPacket(buf []byte) (int, netip.Addr, netip.Addr, int, error) {
	for {
		select {
		case b := <-c.in:
			n := copy(buf, b[4:])
			if b[2] == rawIPv4 {
				if m, src, dst, ttl, ok := stripIPv4(buf[:n]); ok {
					return m, src, dst, ttl, nil
				}
				continue // not VRRP over IPv4: the Linux socket skips it too
			}
			return n, netip.AddrFrom4([4]byte{10, 0, 0, b[1]}), MulticastGroup4, int(b[0]), nil
		case <-c.closed:
			return 0, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
		}
	}
}

const rawIPv4 = 1 // injected packet kind: a whole IPv4 datagram

// ipv4Datagram wraps a VRRP payload in an IPv4 header from src to the
// VRRP group with TTL 255, then lets mod change the header.
func ipv4Datagram(src netip.Addr, payload []byte, mod func(h []byte)) []byte {
	b := make([]byte, ipv4HeaderLen+len(payload))
	b[0], b[1] = 4<<4|ipv4HeaderLen/4, vrrpTOS
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	b[8], b[9] = vrrpTTL, IPProtoVRRP
	copy(b[12:16], src.AsSlice())
	copy(b[16:20], MulticastGroup4.AsSlice())
	copy(b[ipv4HeaderLen:], payload)
	if mod != nil {
		mod(b[:ipv4HeaderLen])
	}
	return append([]byte{0, 0, rawIPv4, 0}, b...)
}

func (c *fakeConn) WritePacket(payload []byte, src, dst netip.Addr) error {
	a, err := ParseAdvert(payload, src, dst)
	if err != nil {
		return fmt.Errorf("node sent a bad advert: %w", err)
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.sent = append(c.net.sent, sentAdvert{a, src, dst})
	return nil
}

func (c *fakeConn) ReadFrame(buf []byte) (int, error) {
	select {
	case b := <-c.in:
		return copy(buf, b), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *fakeConn) WriteFrame(b []byte) error {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	c.net.frames = append(c.net.frames, bytes.Clone(b))
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// fakeRunner records script runs; scripts in fail exit 1.
type fakeRunner struct {
	mu   sync.Mutex
	runs []string
	fail map[string]bool
}

func (r *fakeRunner) Run(ctx context.Context, command string, args ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, strings.Join(append([]string{command}, args...), " "))
	if r.fail[command] {
		return errors.New("exit status 1")
	}
	return nil
}

func (r *fakeRunner) setFail(cmd string, fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[cmd] = fail
}

func (r *fakeRunner) ran(cmd string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.runs {
		if strings.HasPrefix(s, cmd) {
			out = append(out, s)
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type nodeRig struct {
	t      *testing.T
	clock  *fakeClock
	net    *fakeNet
	run    *fakeRunner
	node   *Node
	runErr chan error
}

func startRig(t *testing.T, cfg Config, buf int, before ...func(Event)) *nodeRig {
	t.Helper()
	return startRigWith(t, cfg, func(o *Options) {
		o.EventBuffer = buf
		if len(before) > 0 {
			o.BeforeMaster = before[0]
		}
	})
}

// startRigWith starts a node on the fake clock and network; mod may change
// its options (a real Runner, a logger).
func startRigWith(t *testing.T, cfg Config, mod func(*Options)) *nodeRig {
	t.Helper()
	r := &nodeRig{t: t, clock: &fakeClock{now: t0}, net: newFakeNet(), run: &fakeRunner{fail: map[string]bool{}}, runErr: make(chan error, 1)}
	opts := Options{Clock: r.clock, Network: r.net, Runner: r.run}
	mod(&opts)
	n, err := NewNode(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.node = n
	go func() { r.runErr <- n.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return r
}

func (r *nodeRig) status(name string) InstanceStatus {
	for _, s := range r.node.Status() {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no instance %s", name)
	return InstanceStatus{}
}

func (r *nodeRig) waitState(name string, st State) {
	r.t.Helper()
	waitUntil(r.t, name+" "+st.String(), func() bool { return r.status(name).State == st })
}

// advanceUntil moves the fake time by 100ms steps until instance "a" is
// in state st: goroutines waiting on the clock need no exact ordering.
func (r *nodeRig) advanceUntil(st State) {
	r.t.Helper()
	waitUntil(r.t, "a "+st.String(), func() bool {
		if r.status("a").State == st {
			return true
		}
		r.clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
		return false
	})
}

func (r *nodeRig) nextEvent() Event {
	r.t.Helper()
	select {
	case ev := <-r.node.Events():
		return ev
	case <-time.After(10 * time.Second):
		r.t.Fatal("no event")
	}
	return Event{}
}

// advertFrom builds an injected packet (see ReadPacket) from 10.0.0.<last>.
func advertFrom(t *testing.T, last byte, ttl byte, a Advert) []byte {
	t.Helper()
	b, err := a.Marshal(netip.AddrFrom4([4]byte{10, 0, 0, last}), MulticastGroup4)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{ttl, last, 0, 0}, b...)
}

// cloneConfig copies c deep enough for a test to change its instances.
func cloneConfig(c Config) Config {
	c.Instances = slices.Clone(c.Instances)
	c.Scripts = slices.Clone(c.Scripts)
	c.SyncGroups = slices.Clone(c.SyncGroups)
	return c
}

func nodeInst(name string, prio uint8, mods ...func(*InstanceConfig)) InstanceConfig {
	ic := baseInst(name, prio, mods...)
	return ic
}
