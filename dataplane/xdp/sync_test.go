package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

func manualEnv(t *testing.T) *env {
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes, ManualClock: true,
		TCPTimeout: 900 * time.Second, TCPFinTimeout: 120 * time.Second, UDPTimeout: 30 * time.Second})
	e.setClock(time.Hour)
	return e
}

func (e *env) setClock(now time.Duration) {
	e.t.Helper()
	if err := e.d.SetClock(now); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) load(id uint32) int64 {
	e.t.Helper()
	var n int64
	if err := e.d.objs.XlbBeActV1.Lookup(id, &n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestIdleExpiry: an idle UDP flow expires after its timeout and its next
// packet is scheduled again; Sync deletes it and corrects the lc load.
func TestIdleExpiry(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(3))
	s.Key.Proto = dataplane.UDP
	e.apply(s)
	flow := udpFrame(client(1), vip4, 5000, 80)
	first := e.pick(flow)
	e.setClock(time.Hour + 29*time.Second)
	if got := e.pick(flow); got != first {
		t.Fatalf("flow moved from %d to %d before its 30 s timeout", first, got)
	}
	// 29 s + 31 s idle: expired, so the next packet is a new flow (rr moves on).
	e.setClock(time.Hour + 60*time.Second)
	if got := e.pick(flow); got == first {
		t.Fatalf("expired flow stayed on %d; want it rescheduled", first)
	}
	st, _ := e.d.Stats(t.Context())
	if c := st.Services[s.Key].Connections; c != 2 {
		t.Errorf("%d connections counted, want 2 (the flow, then again after it expired)", c)
	}

	// Sync: entries idle beyond timeout+margin go, counts are corrected.
	e.setClock(time.Hour + 60*time.Second + 30*time.Second + expiryMargin + time.Second)
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	n := 0
	var k bpfXlbFlow
	var v bpfXlbConn
	for it := e.d.objs.XlbConnsV1.Iterate(); it.Next(&k, &v); {
		n++
	}
	if n != 0 {
		t.Errorf("%d connection entries left after they all expired", n)
	}
	for _, id := range e.live(s.Key) {
		if l := e.load(id); l != 0 {
			t.Errorf("backend %d keeps a load of %d after its flows expired", id, l)
		}
	}
}

// TestLoadReconciled: Sync corrects a drifted lc/wlc load from the table.
func TestLoadReconciled(t *testing.T) {
	e := manualEnv(t)
	e.apply(svc(dataplane.LeastConnection, e.pool(2)))
	e.picks(syns(4, 80))
	ids := e.live(svc(dataplane.LeastConnection, nil).Key)
	var id uint32
	for _, i := range ids {
		id = i
		break
	}
	if err := e.d.objs.XlbBeActV1.Put(id, int64(40)); err != nil { // drift
		t.Fatal(err)
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if l := e.load(id); l != 2 {
		t.Errorf("load after sync %d, want 2", l)
	}
}

// TestRemovedBackendFreedAfterItsFlows: a removed real server keeps its
// established flows (as IPVS); its id is freed once they are gone.
func TestRemovedBackendFreedAfterItsFlows(t *testing.T) {
	e := manualEnv(t)
	bs := e.pool(2)
	e.apply(svc(dataplane.RoundRobin, bs))
	e.picks(syns(2, 80)) // client 0 -> backend 0, client 1 -> backend 1
	id := e.live(svc(dataplane.RoundRobin, nil).Key)[bs[1].Key()]
	e.apply(svc(dataplane.RoundRobin, bs[:1]))
	if got := e.pick(tcpFrame(client(1), vip4, 1024, 80, packet.ACK)); got != 1 {
		t.Fatalf("established flow of a removed real server went to %d, want it kept on 1", got)
	}
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if e.d.backends.get(id) == nil {
		t.Fatal("backend freed while a flow still uses it")
	}
	e.pick(tcpFrame(client(1), vip4, 1024, 80, packet.FIN|packet.ACK))
	e.setClock(time.Hour + 120*time.Second + expiryMargin + time.Second)
	if err := e.d.Sync(); err != nil {
		t.Fatal(err)
	}
	if e.d.backends.get(id) != nil {
		t.Fatal("backend not freed after its last flow ended")
	}
	var be bpfXlbBackend
	if err := e.d.objs.XlbBackendsV1.Lookup(id, &be); err != nil || be.Flags != 0 {
		t.Fatalf("freed backend entry %+v (%v), want zeroed", be, err)
	}
}

// TestUpdatesAtomicForNewFlows: while new flows arrive continuously, the
// service is updated 40 times: every other update replaces the whole
// backend set by a new, disjoint one, the others change the weights. Each
// new flow must go to a backend of a configuration that was fully installed
// at some moment while the flow was being forwarded: not dropped, not to a
// backend of an older configuration, and never a mix.
func TestUpdatesAtomicForNewFlows(t *testing.T) {
	const updates = 40
	// Configuration k uses group (k+1)/2 of three backends: 0, then 1, 1
	// (weights changed), 2, 2, ...
	group := func(k int) int { return (k + 1) / 2 }
	for _, sched := range []dataplane.Scheduler{dataplane.RoundRobin, dataplane.WeightedLeastConnection, dataplane.MaglevHashing} {
		t.Run(string(sched), func(t *testing.T) {
			e := newEnv(t).with(t)
			all := e.pool(3 * (group(updates) + 1))
			config := func(k int) dataplane.Service {
				g := group(k)
				bs := slices.Clone(all[3*g : 3*g+3])
				for j := range bs {
					bs[j].Weight = uint32(1 + (k+j)%4)
				}
				return svc(sched, bs)
			}
			e.apply(config(0))
			// started: updates begun; done: updates finished. A flow
			// forwarded between done=lo and started=hi saw one of the
			// configurations lo..hi.
			var started, done atomic.Int64
			var stop atomic.Bool
			var mu sync.Mutex
			var bad []string
			var sent int
			seen := map[int]bool{}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := make([]byte, 2048)
				err := e.ns.Do(func() error {
					for n := 0; !stop.Load(); n++ {
						f := tcpFrame(client(n%60000), vip4, uint16(10000+n/60000), 80, packet.SYN).Bytes()
						lo := int(done.Load())
						opts := ebpf.RunOptions{Data: f, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(f)), IngressIfindex: uint32(e.eth0)}}
						ret, err := e.d.Program().Run(&opts)
						hi := int(started.Load())
						if err != nil {
							return err
						}
						b := -1
						if ret == xdpTX {
							b = backendOf(opts.DataOut)
						}
						ok := b >= 0 && group(lo) <= b/3 && b/3 <= group(hi)
						mu.Lock()
						sent++
						if ok {
							seen[b/3] = true
						} else if len(bad) < 10 {
							bad = append(bad, fmt.Sprintf("flow %d (XDP action %d) went to backend %d (group %d) while configurations %d..%d (groups %d..%d) were installed", n, ret, b, b/3, lo, hi, group(lo), group(hi)))
						}
						mu.Unlock()
					}
					return nil
				})
				if err != nil {
					mu.Lock()
					bad = append(bad, err.Error())
					mu.Unlock()
				}
			}()
			for k := 1; k <= updates; k++ {
				started.Store(int64(k))
				e.apply(config(k))
				done.Store(int64(k))
			}
			stop.Store(true)
			wg.Wait()
			if len(bad) != 0 {
				t.Fatalf("of %d new flows during %d updates:\n%s\nverdicts: %v\nevents: %v", sent, updates, strings.Join(bad, "\n"), e.verdicts(), e.events())
			}
			t.Logf("%d new flows during %d updates, all to a configuration installed at the time; backend groups used: %d of %d", sent, updates, len(seen), group(updates)+1)
		})
	}
}

// live maps the installed real servers of a service to their backend ids.
func (e *env) live(k dataplane.ServiceKey) map[dataplane.BackendKey]uint32 {
	m := map[dataplane.BackendKey]uint32{}
	for _, id := range e.d.services[k].ids {
		m[e.d.backends.get(id).key()] = id
	}
	return m
}

// TestIdleSyncScansNothing: with no packet through the program and no
// Apply since the last scan, Sync scans the connection table only when an
// entry's count changes by itself (its timeout ends), and then finds what
// a scan finds: an idle director scans no table of 1M buckets every 5 s.
func TestIdleSyncScansNothing(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(2))
	s.Key.Proto = dataplane.UDP
	e.apply(s)
	inactive := func() uint64 {
		t.Helper()
		st, err := e.d.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, b := range st.Services[s.Key].Backends {
			n += b.InactiveConns
		}
		return n
	}
	sync := func(wantScan bool, what string) {
		t.Helper()
		before := e.d.scans
		if err := e.d.Sync(); err != nil {
			t.Fatal(err)
		}
		if scanned := e.d.scans.done > before.done; scanned != wantScan {
			t.Errorf("%s: scanned %v, want %v (scans %+v)", what, scanned, wantScan, e.d.scans)
		}
	}
	sync(true, "first Sync")
	sync(false, "idle, empty table")
	// Passed (not a service): leaves nothing to find.
	e.pick(udpFrame(client(1), netip.MustParseAddr("10.0.0.99"), 5000, 53))
	sync(false, "after a passed packet")
	e.pick(udpFrame(client(1), vip4, 5000, 80))
	sync(true, "after a packet")
	if n := inactive(); n != 1 {
		t.Fatalf("%d flows counted, want 1", n)
	}
	sync(false, "idle")
	e.setClock(time.Hour + 29*time.Second)
	sync(false, "idle, the flow within its 30 s timeout")
	if n := inactive(); n != 1 {
		t.Errorf("%d flows counted within the timeout, want 1", n)
	}
	e.setClock(time.Hour + 31*time.Second)
	sync(true, "the flow's timeout ended")
	if n := inactive(); n != 0 {
		t.Errorf("%d flows counted after the timeout, want 0", n)
	}
	sync(false, "idle, the flow within its margin")
	e.setClock(time.Hour + 31*time.Second + expiryMargin)
	sync(true, "the flow's margin ended")
	var k bpfXlbFlow
	var v bpfXlbConn
	for it := e.d.objs.XlbConnsV1.Iterate(); it.Next(&k, &v); {
		t.Errorf("connection entry left after its margin: %+v", k)
	}
	e.apply(s, svc(dataplane.RoundRobin, e.pool(1)))
	sync(true, "after an Apply")
}

// TestIdleSyncScansNoEmbryos: Sync reads the embryonic words (an array of
// 1M) only when a SYN may have made one since the last read found none
// live: packets the program passes (ARP, neighbour probes, traffic for no
// service) keep the connection table's scan going but not this one. An
// idle director read 8 MB every 5 s before, two thirds of its idle CPU.
func TestIdleSyncScansNoEmbryos(t *testing.T) {
	e := manualEnv(t)
	s := svc(dataplane.RoundRobin, e.pool(2))
	e.apply(s)
	sync := func(wantRead bool, what string) {
		t.Helper()
		before := e.d.scans
		if err := e.d.Sync(); err != nil {
			t.Fatal(err)
		}
		if read := e.d.scans.embryosRead > before.embryosRead; read != wantRead {
			t.Errorf("%s: embryonic words read %v, want %v (scans %+v)", what, read, wantRead, e.d.scans)
		}
	}
	sync(true, "first Sync")
	// Passed: not a service.
	e.pick(udpFrame(client(1), netip.MustParseAddr("10.0.0.99"), 5000, 53))
	sync(false, "after a passed packet")
	e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.SYN))
	sync(true, "after a SYN (an embryonic word)")
	sync(true, "a live embryonic word: read again")
	// The handshake completes: the word is freed.
	e.pick(tcpFrame(client(1), vip4, 40000, 80, packet.ACK))
	sync(true, "after the ACK")
	sync(false, "idle, no word live")
}

// TestRetiredInFlight: a program that read a service's slot just before
// the control plane flipped it still schedules from that configuration,
// while the real servers the new one dropped are retired right after the
// flip. Such a flow goes where the configuration it read said; it was
// dropped as having no real server (TestUpdatesAtomicForNewFlows, on a
// loaded machine). Played here by retiring the backends under the slot
// that names them.
func TestRetiredInFlight(t *testing.T) {
	for _, sched := range []dataplane.Scheduler{dataplane.RoundRobin, dataplane.MaglevHashing} {
		t.Run(string(sched), func(t *testing.T) {
			e := newEnv(t).with(t)
			s := svc(sched, e.pool(2))
			e.apply(s)
			for i := range s.Backends {
				id := e.beID(s, i)
				var b bpfXlbBackend
				if err := e.d.objs.XlbBackendsV1.Lookup(id, &b); err != nil {
					t.Fatal(err)
				}
				b.Flags &^= uint32(bpfXlbBackendFlagsXLB_BE_F_SCHED)
				b.Flags |= uint32(bpfXlbBackendFlagsXLB_BE_F_RETIRED)
				if err := e.d.objs.XlbBackendsV1.Put(id, &b); err != nil {
					t.Fatal(err)
				}
			}
			frames := make([][]byte, 20)
			for n := range frames {
				frames[n] = newFlow(n).Bytes()
			}
			for n, b := range e.picks(frames) {
				if b < 0 || b > 1 {
					t.Fatalf("flow %d went to backend %d (verdicts %v)", n, b, e.verdicts())
				}
			}
		})
	}
}
