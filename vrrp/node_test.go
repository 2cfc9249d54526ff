package vrrp

import (
	"bytes"
	"context"
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
// byte and 2 bytes of padding (the source is 10.0.0.x, dst the group).
func (c *fakeConn) ReadPacket(buf []byte) (int, netip.Addr, netip.Addr, int, error) {
	select {
	case b := <-c.in:
		n := copy(buf, b[4:])
		return n, netip.AddrFrom4([4]byte{10, 0, 0, b[1]}), MulticastGroup4, int(b[0]), nil
	case <-c.closed:
		return 0, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
	}
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
	r := &nodeRig{t: t, clock: &fakeClock{now: t0}, net: newFakeNet(), run: &fakeRunner{fail: map[string]bool{}}, runErr: make(chan error, 1)}
	opts := Options{Clock: r.clock, Network: r.net, Runner: r.run, EventBuffer: buf}
	if len(before) > 0 {
		opts.BeforeMaster = before[0]
	}
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

func nodeInst(name string, prio uint8, mods ...func(*InstanceConfig)) InstanceConfig {
	ic := baseInst(name, prio, mods...)
	return ic
}

func TestNodeElectionEventsNotify(t *testing.T) {
	cfg := cfgOf(nodeInst("a", 100, func(ic *InstanceConfig) {
		ic.Notify = Notify{Master: "/bin/to-master", Backup: "/bin/to-backup", Stop: "/bin/stop", Generic: "/bin/notify"}
	}))
	r := startRig(t, cfg, 0)
	if ev := r.nextEvent(); ev.From != Init || ev.To != Backup || ev.Reason != ReasonStartup || !ev.At.Equal(t0) {
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
	if ev.From != Backup || ev.To != Master || ev.Reason != ReasonMasterDown || !ev.At.Equal(t0.Add(6600*time.Millisecond)) || ev.Priority != 100 {
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
