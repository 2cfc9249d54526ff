package vrrp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Node tests with a fake clock, network and script runner: the loop, the
// dispatch of packets, events, notify, tracking, reconfigure and shutdown,
// without root. The real drivers are tested in the namespace lab.

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

func TestNodeElectionEventsNotify(t *testing.T) {
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Master: "/bin/to-master", Backup: "/bin/to-backup", Stop: "/bin/stop", Generic: "/bin/notify"}
	}))
	r := startRig(t, cfg, 0)
	// Tentative until the Master_Down_Timer (3.6s) and a second.
	if ev := r.nextEvent(); ev.From != Init || ev.To != Backup || ev.Reason != ReasonStartup || !ev.At.Equal(t0) ||
		!ev.TentativeUntil.Equal(t0.Add(4600*time.Millisecond)) {
		t.Fatalf("first event %+v", ev)
	}
	// A better master: its adverts keep us backup.
	adv := Advert{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
	r.clock.Advance(3 * time.Second)
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 255, adv))
	waitUntil(t, "advert received", func() bool { return r.status("a").AdvertsReceived == 1 })
	r.clock.Advance(3 * time.Second) // 6s: 3s since the advert, under 3.6s
	// Rejects: bad TTL, unknown VRID, corrupt checksum.
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 64, adv))
	other := adv
	other.VRID = 99
	r.net.inject(t, "eth0", false, advertFrom(t, 2, 255, other))
	bad := advertFrom(t, 2, 255, adv)
	bad[len(bad)-1] ^= 0xff
	r.net.inject(t, "eth0", false, bad)
	waitUntil(t, "rx errors", func() bool {
		e := r.status("a").RxErrors
		return e[RxTTL] == 1 && e[RxVRID] == 1 && e[RxChecksum] == 1
	})
	if r.status("a").State != Backup {
		t.Fatal("took over while the master was alive")
	}
	r.clock.Advance(600 * time.Millisecond) // 6.6s: 3.6s since the advert
	ev := r.nextEvent()
	if ev.From != Backup || ev.To != Master || ev.Reason != ReasonMasterDown || !ev.At.Equal(t0.Add(6600*time.Millisecond)) || ev.Priority != 100 ||
		!ev.TentativeUntil.IsZero() {
		t.Fatalf("takeover event %+v", ev)
	}
	waitUntil(t, "VIP added", func() bool { return r.net.hasAddr("10.0.0.100") })
	waitUntil(t, "advert and GARPs sent", func() bool { return len(r.net.adverts()) >= 1 && len(r.net.sentFrames()) >= 5 })
	a := r.net.adverts()[0]
	if a.Priority != 100 || a.src != netip.MustParseAddr("10.0.0.1") || a.dst != MulticastGroup4 || a.VRID != 51 {
		t.Fatalf("advert %+v", a)
	}
	if f := r.net.sentFrames()[0]; !bytes.Equal(f, garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.0.0.100"))) {
		t.Fatalf("GARP %x", f)
	}
	waitUntil(t, "notify", func() bool { return len(r.run.ran("/bin/notify")) == 2 })
	if got := r.run.ran("/bin/"); !slices.Equal(got, []string{"/bin/to-backup", "/bin/notify INSTANCE a BACKUP 100",
		"/bin/to-master", "/bin/notify INSTANCE a MASTER 100"}) {
		t.Fatalf("notify runs %q", got)
	}
	// Adverts every second.
	r.clock.Advance(time.Second)
	waitUntil(t, "second advert", func() bool { return len(r.net.adverts()) == 2 })

	// Shutdown: priority 0, VIP removed, notify_stop, Run returns, Events closes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-r.runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The master resigned: forwarding goes on for 3 intervals and 200ms.
	if g := r.node.ResignGrace(); g != 3200*time.Millisecond {
		t.Fatalf("resign grace %v", g)
	}
	sent := r.net.adverts()
	if last := sent[len(sent)-1]; last.Priority != 0 {
		t.Fatalf("last advert priority %d", last.Priority)
	}
	if r.net.hasAddr("10.0.0.100") {
		t.Fatal("VIP left after shutdown")
	}
	if got := r.run.ran("/bin/"); !slices.Contains(got, "/bin/stop") || got[len(got)-1] != "/bin/notify INSTANCE a STOP 100" {
		t.Fatalf("notify runs %q", got)
	}
	if ev := r.nextEvent(); ev.To != Init || ev.Reason != ReasonShutdown {
		t.Fatalf("last event %+v", ev)
	}
	if _, ok := <-r.node.Events(); ok {
		t.Fatal("Events not closed")
	}
	if err := r.node.Reconfigure(cfg); err == nil {
		t.Fatal("Reconfigure after stop succeeded")
	}
}

// TestNodeSyncGroupNotify: a sync group's scripts run once each time all
// its members reach a state (the specific one, then the generic one with
// keepalived's "GROUP" <name> <state>), and notify_stop when the node stops.
func TestNodeSyncGroupNotify(t *testing.T) {
	cfg := cfgOf(nodeInst("a", 100), nodeInst("b", 100, func(ic *InstanceConfig) {
		ic.Interface, ic.VRID = "eth1", 52
		ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
	}))
	cfg.SyncGroups = []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}, Notify: Notify{
		Master: "/bin/g-master", Backup: "/bin/g-backup", Fault: "/bin/g-fault", Stop: "/bin/g-stop", Generic: "/bin/g-notify"}}}
	r := startRig(t, cfg, 0)
	waitUntil(t, "group BACKUP", func() bool { return len(r.run.ran("/bin/g-")) == 2 })
	r.advanceUntil(Master)
	r.waitState("b", Master)
	waitUntil(t, "group MASTER", func() bool { return len(r.run.ran("/bin/g-")) == 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/g-backup", "/bin/g-notify GROUP g BACKUP", "/bin/g-master", "/bin/g-notify GROUP g MASTER",
		"/bin/g-stop", "/bin/g-notify GROUP g STOP"}
	if got := r.run.ran("/bin/g-"); !slices.Equal(got, want) {
		t.Fatalf("group notify runs %q\nwant %q", got, want)
	}
}

// TestNodeNeedsRunner: vrrp runs no command by itself: a configuration
// with a track script or notify commands needs Options.Runner, at start
// and at a reload.
func TestNodeNeedsRunner(t *testing.T) {
	withNotify := func(ic *InstanceConfig) { ic.Notify.Master = "/bin/m" }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"track script", Config{Instances: []InstanceConfig{nodeInst("a", 100)}, Scripts: []ScriptConfig{{Name: "chk", Script: "/bin/true"}}}, `vrrp script "chk"`},
		{"instance notify", cfgOf(nodeInst("a", 100, withNotify)), `notify of vrrp instance "a"`},
		{"sync group notify", Config{Instances: []InstanceConfig{nodeInst("a", 100)},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a"}, Notify: Notify{Generic: "/bin/n"}}}}, `notify of vrrp sync group "g"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewNode(tc.cfg, Options{})
			if !errors.Is(err, ErrNoRunner) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewNode without a Runner: %v", err)
			}
			if _, err := NewNode(tc.cfg, Options{Runner: &fakeRunner{}}); err != nil {
				t.Fatalf("NewNode with a Runner: %v", err)
			}
		})
	}
	// Without commands no Runner is needed; a reload that brings some is
	// refused and changes nothing.
	r := startRigWith(t, cfgOf(nodeInst("a", 100)), func(o *Options) { o.Runner = nil })
	r.waitState("a", Backup)
	if err := r.node.Reconfigure(cfgOf(nodeInst("a", 100, withNotify))); !errors.Is(err, ErrNoRunner) {
		t.Fatalf("reload with notify and no Runner: %v", err)
	}
	r.advanceUntil(Master)
}

// TestNodeForgedInterval (issue 11): a forged advert with a higher
// priority and the longest interval, through the receive path: counted
// under interval_limit, logged once for its source, learned as 3 intervals,
// and the backup takes over 3 x 3s + 1.82s after it (RFC 5798 alone: 150s).
func TestNodeForgedInterval(t *testing.T) {
	var logs nettest.SyncBuffer
	r := startRigWith(t, cfgOf(nodeInst("a", 100)), func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if ev := r.nextEvent(); ev.To != Backup {
		t.Fatalf("first event %+v", ev)
	}
	forged := Advert{Version: 3, VRID: 51, Priority: 200, Interval: MaxAdvertIntervalV3, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
	r.clock.Advance(time.Second)
	for range 2 {
		r.net.inject(t, "eth0", false, advertFrom(t, 66, 255, forged))
	}
	waitUntil(t, "forged adverts counted", func() bool { return r.status("a").RxErrors[RxIntervalLimit] == 2 })
	st := r.status("a")
	if st.AdvertsReceived != 2 || st.MasterPriority != 200 || st.MasterAdvertInterval != 3*time.Second {
		t.Fatalf("status after the forged adverts: %+v", st)
	}
	if n := strings.Count(logs.String(), "advertisement interval above the learned limit"); n != 1 {
		t.Fatalf("logged %d times, want once for the one source:\n%s", n, logs.String())
	}
	r.advanceUntil(Master)
	ev := r.nextEvent()
	if d := ev.At.Sub(t0); ev.To != Master || d < 11820*time.Millisecond || d > 12*time.Second {
		t.Fatalf("takeover %+v, %v after the start, want 11.82s", ev, d)
	}
}

func TestNodeEventsDropOldest(t *testing.T) {
	r := startRig(t, cfgOf(nodeInst("a", 255, func(ic *InstanceConfig) {
		ic.TrackInterfaces = []TrackInterface{{Name: "eth1"}}
	})), 2)
	r.waitState("a", Master)
	for range 3 {
		r.net.setLink(t, "eth1", false)
		r.waitState("a", Fault)
		r.net.setLink(t, "eth1", true)
		r.waitState("a", Backup)
		r.clock.Advance(2 * time.Second) // owner: back to master after 1s + skew
		r.waitState("a", Master)
	}
	// 1 + 3*3 events went into a buffer of 2: the newest two remain.
	a, b := r.nextEvent(), r.nextEvent()
	if a.From != Fault || a.To != Backup || b.From != Backup || b.To != Master {
		t.Fatalf("remaining events %+v %+v", a, b)
	}
	if d := r.node.EventsDropped(); d != 8 {
		t.Fatalf("dropped %d events, want 8", d)
	}
}

func TestNodeTrackScriptAndReconfigure(t *testing.T) {
	cfg := Config{
		Instances: []InstanceConfig{nodeInst("a", 255, func(ic *InstanceConfig) {
			ic.TrackScripts = []TrackScript{{Name: "chk"}}
			ic.Notify.Generic = "/bin/notify"
		})},
		Scripts: []ScriptConfig{{Name: "chk", Script: "/bin/chk", Interval: time.Second}},
	}
	r := startRig(t, cfg, 0)
	r.waitState("a", Master)
	r.run.setFail("/bin/chk", true)
	r.advanceUntil(Fault) // the next script run fails

	if got := r.status("a").Faults; !slices.Equal(got, []string{"script chk failed"}) {
		t.Fatalf("faults %q", got)
	}
	r.run.setFail("/bin/chk", false)
	r.advanceUntil(Master) // through BACKUP: owner takes over after 1s

	// Reload: a new VIP on the master is added and announced; the state
	// is kept.
	cfg2 := cloneConfig(cfg)
	cfg2.Instances[0].VIPs = append(slices.Clone(cfg2.Instances[0].VIPs), VIP{Prefix: netip.MustParsePrefix("10.0.0.101/24")})
	before := r.status("a").Transitions
	if err := r.node.Reconfigure(cfg2); err != nil {
		t.Fatal(err)
	}
	if !r.net.hasAddr("10.0.0.101") || r.status("a").State != Master || r.status("a").Transitions != before {
		t.Fatalf("after reload: vip %v, %+v", r.net.hasAddr("10.0.0.101"), r.status("a"))
	}
	// An invalid config is refused and changes nothing.
	bad := cloneConfig(cfg2)
	bad.Instances = append(bad.Instances, nodeInst("b", 100, func(ic *InstanceConfig) { ic.AuthType = AuthAH }))
	if err := r.node.Reconfigure(bad); !errors.Is(err, ErrAHNotSupported) {
		t.Fatalf("AH reload: %v", err)
	}
	// A config whose interface does not exist is refused too.
	missing := cloneConfig(cfg2)
	missing.Instances = append(missing.Instances, nodeInst("c", 100, func(ic *InstanceConfig) {
		ic.Interface, ic.VRID = "eth9", 60
		ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.9.0.100/24")}}
	}))
	if err := r.node.Reconfigure(missing); err == nil || !strings.Contains(err.Error(), "eth9") {
		t.Fatalf("reload with a missing interface: %v", err)
	}
	if len(r.node.Status()) != 1 {
		t.Fatalf("failed reload changed the instances: %+v", r.node.Status())
	}
	// Removing the instance: priority 0, VIPs removed, DELETED.
	if err := r.node.Reconfigure(Config{}); err != nil {
		t.Fatal(err)
	}
	if r.net.hasAddr("10.0.0.100") || r.net.hasAddr("10.0.0.101") {
		t.Fatal("VIPs left after removal")
	}
	sent := r.net.adverts()
	if sent[len(sent)-1].Priority != 0 {
		t.Fatal("no priority 0 on removal")
	}
	waitUntil(t, "DELETED notify", func() bool { return slices.Contains(r.run.ran("/bin/notify"), "/bin/notify INSTANCE a DELETED 255") })
}

func TestNodeSplitBrainFromFrames(t *testing.T) {
	r := startRig(t, cfgOf(nodeInst("a", 255, func(ic *InstanceConfig) { ic.Notify.Fault = "/bin/fault" })), 0)
	r.waitState("a", Master)
	foreign := net.HardwareAddr{2, 9, 9, 9, 9, 9}
	vip := netip.MustParseAddr("10.0.0.100")
	// Our own MAC never counts.
	r.net.injectFrame(t, "eth0", garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip))
	// Another station's GARP starts a probe round...
	r.net.injectFrame(t, "eth0", garpFrame(foreign, vip))
	probe := arpProbeFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip)
	waitUntil(t, "probe", func() bool {
		return slices.ContainsFunc(r.net.sentFrames(), func(f []byte) bool { return bytes.Equal(f, probe) })
	})
	// ...and answers are the evidence. Rounds run on the fake clock: keep
	// answering while moving time until a round has judged.
	reply := arpFrame(arpReply, net.HardwareAddr{2, 0, 0, 0, 0, 1}, foreign, vip, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.IPv4Unspecified())
	waitUntil(t, "split brain", func() bool {
		r.net.injectFrame(t, "eth0", reply)
		r.clock.Advance(50 * time.Millisecond)
		s := r.status("a")
		return s.SplitBrain && s.SplitBrainCount == 1
	})
	waitUntil(t, "notify_fault", func() bool { return len(r.run.ran("/bin/fault")) == 1 })
	// No more answers: healed, VIPs re-announced.
	n := len(r.net.sentFrames())
	waitUntil(t, "heal", func() bool {
		r.clock.Advance(50 * time.Millisecond)
		return !r.status("a").SplitBrain
	})
	if c := r.status("a").SplitBrainCount; c != 1 {
		t.Fatalf("split brain count %d", c)
	}
	waitUntil(t, "re-announce", func() bool {
		garp := garpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, vip)
		return slices.ContainsFunc(r.net.sentFrames()[n:], func(f []byte) bool { return bytes.Equal(f, garp) })
	})
}

func TestNodeBeforeMaster(t *testing.T) {
	type call struct {
		ev       Event
		vipAdded bool
		state    State
	}
	calls := make(chan call, 4)
	var r *nodeRig
	ready := make(chan struct{})
	r = startRig(t, cfgOf(nodeInst("a", 100)), 0, func(ev Event) {
		<-ready
		// The VIP is not there yet, and Status works from the hook.
		calls <- call{ev, r.net.hasAddr("10.0.0.100"), r.node.Status()[0].State}
	})
	close(ready)
	r.waitState("a", Backup)
	r.advanceUntil(Master)
	c := <-calls
	if c.ev.Instance != "a" || c.ev.From != Backup || c.ev.To != Master || c.vipAdded || c.state != Master {
		t.Fatalf("BeforeMaster call %+v", c)
	}
	waitUntil(t, "VIP added after the hook", func() bool { return r.net.hasAddr("10.0.0.100") })
}

// TestNodeRxErrorCounters: packets rejected by the decoder (type, length,
// zero interval) and IPv4 datagrams that are no whole VRRP packet
// (fragments, truncated, bad header length) go through the node's receive
// path, the one the Linux socket feeds, and count under their reason: on
// the instance of their VRID, or on every instance of the interface when
// the VRID cannot be read.
func TestNodeRxErrorCounters(t *testing.T) {
	b := func(ic *InstanceConfig) {
		ic.VRID, ic.VIPs = 52, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.101/24")}}
	}
	r := startRig(t, cfgOf(nodeInst("a", 100), nodeInst("b", 100, b)), 0)
	r.waitState("a", Backup)
	src := netip.MustParseAddr("10.0.0.2")
	// good is a valid advert for a (VRID 51); mod changes its bytes, after
	// which the checksum is made right again.
	good := func(mod func([]byte) []byte) []byte {
		a := Advert{Version: 3, VRID: 51, Priority: 200, Interval: time.Second, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.100")}}
		p, err := a.Marshal(src, MulticastGroup4)
		if err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			p = mod(p)
			p[6], p[7] = 0, 0
			binary.BigEndian.PutUint16(p[6:8], checksum16(pseudoHeaderSum(src, MulticastGroup4, IPProtoVRRP, len(p)), p))
		}
		return p
	}
	fragment := func(h []byte) { binary.BigEndian.PutUint16(h[6:8], 0x2000) } // more fragments
	type want map[string]map[string]uint64
	for _, tc := range []struct {
		name string
		pkt  []byte
		want want // counters that move, per instance
	}{
		{"type 2", ipv4Datagram(src, good(func(p []byte) []byte { p[0] = 0x32; return p }), nil), want{"a": {RxType: 1}}},
		{"address count above the length", ipv4Datagram(src, good(func(p []byte) []byte { p[3] = 2; return p }), nil), want{"a": {RxLength: 1}}},
		{"trailing byte", ipv4Datagram(src, good(func(p []byte) []byte { return append(p, 0) }), nil), want{"a": {RxLength: 1}}},
		{"shorter than the header", ipv4Datagram(src, good(nil)[:6], nil), want{"a": {RxLength: 1}}},
		{"zero interval", ipv4Datagram(src, good(func(p []byte) []byte { p[4], p[5] = 0, 0; return p }), nil), want{"a": {RxInterval: 1}}},
		{"one byte: no VRID", ipv4Datagram(src, good(nil)[:1], nil), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"first fragment", ipv4Datagram(src, good(nil), fragment), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"later fragment", ipv4Datagram(src, good(nil), func(h []byte) { binary.BigEndian.PutUint16(h[6:8], 3) }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"truncated datagram", ipv4Datagram(src, good(nil), func(h []byte) { binary.BigEndian.PutUint16(h[2:4], 60) }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"header length under 20", ipv4Datagram(src, good(nil), func(h []byte) { h[0] = 0x44 }), want{"a": {RxLength: 1}, "b": {RxLength: 1}}},
		{"not VRRP: skipped", ipv4Datagram(src, good(nil), func(h []byte) { h[9] = 17 }), want{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]InstanceStatus{"a": r.status("a"), "b": r.status("b")}
			r.net.inject(t, "eth0", false, tc.pkt)
			// Packets are handled in order: once a valid advert that
			// follows is counted, the one under test was handled.
			r.net.inject(t, "eth0", false, ipv4Datagram(src, good(nil), nil))
			waitUntil(t, "the next advert", func() bool { return r.status("a").AdvertsReceived == before["a"].AdvertsReceived+1 })
			for _, name := range []string{"a", "b"} {
				st := r.status(name)
				for _, reason := range RxErrorReasons {
					if got, want := st.RxErrors[reason]-before[name].RxErrors[reason], tc.want[name][reason]; got != want {
						t.Errorf("%s: %s counted %d times, want %d", name, reason, got, want)
					}
				}
			}
			if n := r.status("b").AdvertsReceived; n != 0 {
				t.Errorf("b accepted %d adverts", n)
			}
		})
	}
	// The datagrams carried the source and TTL of their IPv4 header.
	if st := r.status("a"); st.MasterAddr != src || st.RxErrors[RxTTL] != 0 {
		t.Fatalf("status %+v", st)
	}
}

// writeScript writes an executable shell script into dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// TestNodeNotifyScriptHangs: notify scripts (real ones, ExecRunner) run
// off the protocol: a takeover happens on time while the previous notify
// script still hangs, and the scripts of an instance keep their order.
func TestNodeNotifyScriptHangs(t *testing.T) {
	dir := t.TempDir()
	log, release := filepath.Join(dir, "log"), filepath.Join(dir, "release")
	backup := writeScript(t, dir, "backup", "echo backup-start >>"+log+"\n"+
		"while [ ! -e "+release+" ]; do sleep 0.01; done\necho backup-end >>"+log+"\n")
	master := writeScript(t, dir, "master", "echo master >>"+log+"\n")
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Backup: backup, Master: master, Timeout: time.Minute}
	}))
	r := startRigWith(t, cfg, func(o *Options) { o.Runner = ExecRunner{} })
	// Whatever happens, the script ends with the test (before the node's
	// shutdown, which waits for it).
	t.Cleanup(func() { _ = os.WriteFile(release, nil, 0o644) })
	if ev := r.nextEvent(); ev.To != Backup {
		t.Fatalf("first event %+v", ev)
	}
	waitUntil(t, "notify_backup running", func() bool { return readFile(log) == "backup-start\n" })
	// Master_Down_Interval 3.6s: the takeover is due while the script
	// hangs, and happens then.
	r.clock.Advance(3600 * time.Millisecond)
	ev := r.nextEvent()
	if ev.To != Master || ev.Reason != ReasonMasterDown || !ev.At.Equal(t0.Add(3600*time.Millisecond)) {
		t.Fatalf("takeover event %+v", ev)
	}
	waitUntil(t, "VIP and advert", func() bool { return r.net.hasAddr("10.0.0.100") && len(r.net.adverts()) > 0 })
	// The script still hangs (it ends only on release), so nothing above
	// waited for it; notify_master waits behind it.
	if got := readFile(log); got != "backup-start\n" {
		t.Fatalf("notify log %q before the release", got)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "notify_master after notify_backup", func() bool {
		return readFile(log) == "backup-start\nbackup-end\nmaster\n"
	})
}

// processGone reports whether pid has exited (a zombie counts: it is dead
// and waits for its reaper).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// TestNodeNotifyScriptTimeout: a notify script still running at the notify
// timeout is killed with its whole process group (ExecRunner), and the
// next notify script of the instance then runs.
func TestNodeNotifyScriptTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	shPID, bgPID := filepath.Join(dir, "sh.pid"), filepath.Join(dir, "bg.pid")
	backup := writeScript(t, dir, "backup", "sleep 600 &\necho $! >"+bgPID+".tmp && mv "+bgPID+".tmp "+bgPID+"\n"+
		"echo $$ >"+shPID+".tmp && mv "+shPID+".tmp "+shPID+"\nwait\necho backup-end >>"+log+"\n")
	master := writeScript(t, dir, "master", "echo master >>"+log+"\n")
	var logs nettest.SyncBuffer
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Backup: backup, Master: master, Timeout: timeout}
	}))
	start := time.Now()
	r := startRigWith(t, cfg, func(o *Options) {
		o.Runner = ExecRunner{}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	pids := map[string]int{}
	waitUntil(t, "notify_backup running", func() bool {
		for _, f := range []string{shPID, bgPID} {
			pid, err := strconv.Atoi(strings.TrimSpace(readFile(f)))
			if err != nil {
				return false
			}
			pids[f] = pid
		}
		return true
	})
	t.Cleanup(func() {
		for _, pid := range pids {
			if !processGone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// The takeover queues notify_master behind the hanging script.
	r.clock.Advance(3600 * time.Millisecond)
	r.waitState("a", Master)
	// Killed at the timeout (not the 10s default): the script and its
	// child, each of which would live 600s.
	deadline := time.Now().Add(timeout + 5*time.Second)
	for !processGone(pids[shPID]) || !processGone(pids[bgPID]) {
		if time.Now().After(deadline) {
			t.Fatalf("notify script (pid %d, child %d) still running %v after its start, timeout %v",
				pids[shPID], pids[bgPID], time.Since(start), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if el := time.Since(start); el < timeout {
		t.Fatalf("killed %v after the node started, before the %v timeout", el, timeout)
	}
	waitUntil(t, "notify_master after the kill", func() bool { return readFile(log) == "master\n" })
	if !strings.Contains(logs.String(), "notify script failed") || !strings.Contains(logs.String(), context.DeadlineExceeded.Error()) {
		t.Fatalf("log:\n%s", logs.String())
	}
}
