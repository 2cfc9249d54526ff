package xdp

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

func attachedProgID(t *testing.T, ns *nettest.NS, ifname string) uint32 {
	t.Helper()
	var id uint32
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// pinned returns a pin path of its own (removed at the end) and a
// function that opens a dataplane on eth0 of e's namespace with its maps
// pinned there, as a restarted daemon opens it.
func (e *env) pinned(t *testing.T) (string, func() *Dataplane) {
	pin := filepath.Join("/sys/fs/bpf", nettest.UniqueName("xlbt-"))
	t.Cleanup(func() { os.RemoveAll(pin) })
	return pin, func() *Dataplane {
		t.Helper()
		var d *Dataplane
		if err := e.ns.Do(func() (err error) {
			d, err = Open(Options{Interfaces: []string{"eth0"}, PinPath: pin, SyncInterval: -1, MapSizes: testSizes})
			return err
		}); err != nil {
			t.Fatalf("open: %v", err)
		}
		return d
	}
}

// TestAdoptOnRestart: load, attach, add flows, close the Go side without
// detaching, load again: the program keeps forwarding (swapped atomically),
// the flows keep their real servers and the round-robin position goes on.
func TestAdoptOnRestart(t *testing.T) {
	e := newEnv(t) // provides the namespace and interfaces; its own dataplane is unpinned
	e.d.Close()
	nettest.GRO(t, e.ns, "peer0")
	pin, open := e.pinned(t)

	e.d = open()
	if got, want := attachedProgID(t, e.ns, "eth0"), progID(t, e.d.Program()); got != want {
		t.Fatalf("attached program %d, want %d", got, want)
	}
	if info := e.d.Info(); info.Mode != "xdp" || info.Attach != "native" {
		t.Errorf("info %+v, want xdp native (veth supports native XDP)", info)
	}
	s := svc(dataplane.RoundRobin, e.pool(3))
	e.apply(s)
	owners := e.picks(syns(4, 80))
	if !equalInts(owners, []int{0, 1, 2, 0}) {
		t.Fatalf("first flows went to %v", owners)
	}
	var slotBefore uint32
	if err := e.d.objs.XlbSvcSlotV1.Lookup(uint32(0), &slotBefore); err != nil {
		t.Fatal(err)
	}
	e.d.Close()
	if attachedProgID(t, e.ns, "eth0") == 0 {
		t.Fatal("closing the Go side detached the program")
	}

	e.d = open()
	if got, want := attachedProgID(t, e.ns, "eth0"), progID(t, e.d.Program()); got != want {
		t.Fatalf("after restart the attached program is %d, want the new one %d", got, want)
	}
	e.apply(s)
	var slotAfter uint32
	if err := e.d.objs.XlbSvcSlotV1.Lookup(uint32(0), &slotAfter); err != nil {
		t.Fatal(err)
	}
	if slotAfter != slotBefore {
		t.Errorf("re-applying the adopted configuration flipped the service slot: nothing had changed")
	}
	for c := range 4 {
		if got := e.pick(tcpFrame(client(c), vip4, 1024, 80, packet.ACK)); got != owners[c] {
			t.Errorf("flow of client %d went to %d after restart, was %d", c, got, owners[c])
		}
	}
	if got := e.picks(syns(6, 80)[4:]); !equalInts(got, []int{1, 2}) {
		t.Errorf("new flows after restart went to %v, want the rr cycle to go on: [1 2]", got)
	}

	// Operators read the pinned maps with bpftool: BTF makes them readable.
	// Arrays are looked up by key (dumping 262144 entries is slow).
	for _, q := range []struct{ name, field string }{
		{"xlb_svc_ids_v1", `"port"`}, {"xlb_conns_v1", `"backend"`},
		{"xlb_svc_v1", `"sched"`}, {"xlb_backends_v1", `"mac"`}, {"xlb_verdicts_v1", `"packets"`}, {"xlb_be_stat_v3", `"conns"`},
	} {
		args := []string{"-j", "map", "dump", "pinned", filepath.Join(pin, q.name)}
		if strings.Contains(q.name, "svc_v1") || strings.Contains(q.name, "backends") || strings.Contains(q.name, "stat") || strings.Contains(q.name, "verdicts") {
			args = []string{"-j", "map", "lookup", "pinned", filepath.Join(pin, q.name), "key", "0", "0", "0", "0"}
		}
		out, err := exec.Command("bpftool", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("bpftool %s: %v: %s", strings.Join(args, " "), err, out)
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil || !strings.Contains(string(out), `"formatted"`) || !strings.Contains(string(out), q.field) {
			t.Errorf("bpftool output for %s is not BTF-formatted with %s (JSON error %v): %.300s", q.name, q.field, err, out)
		}
	}

	if err := e.ns.Do(e.d.Detach); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if attachedProgID(t, e.ns, "eth0") != 0 {
		t.Error("program still attached after Detach")
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(pin)
		t.Errorf("pin path not removed by Detach: %v", entries)
	}
}

// TestNonSYNWithoutEntryAgreesAcrossDirectors: two directors with the same
// configuration (but different histories, hence different internal ids)
// send a mid-stream packet they have no entry for to the same real server,
// so for mh and sh a flow survives a failover.
func TestNonSYNWithoutEntryAgreesAcrossDirectors(t *testing.T) {
	for _, sched := range []dataplane.Scheduler{dataplane.MaglevHashing, dataplane.SourceHashing} {
		t.Run(string(sched), func(t *testing.T) {
			a, b := newEnv(t).with(t), newEnv(t).with(t)
			bs := a.pool(8)
			a.apply(svc(sched, bs))
			// b had other services and real servers before: its ids differ.
			other := svc(dataplane.RoundRobin, b.pool(20))
			other.Key.Port = 8080
			for i := range other.Backends {
				other.Backends[i].Port = 8080
			}
			b.apply(other, svc(sched, b.pool(8)[3:]))
			b.apply(svc(sched, b.pool(8)))
			var frames [][]byte
			for c := range 500 {
				frames = append(frames, tcpFrame(client(c), vip4, uint16(5000+c), 80, packet.ACK).Bytes())
			}
			pa, pb := a.picks(frames), b.picks(frames)
			for i := range pa {
				if pa[i] < 0 || pa[i] != pb[i] {
					t.Fatalf("flow %d: director A chose %d, director B %d", i, pa[i], pb[i])
				}
			}
		})
	}
}

// TestOpenDefaultSizes loads the program with its real map sizes (1M
// connections, 262144 real servers) once.
func TestOpenDefaultSizes(t *testing.T) {
	nettest.RequireRoot(t)
	d, err := Open(Options{SyncInterval: -1})
	if err != nil {
		t.Fatalf("load with default sizes: %v", err)
	}
	defer d.Close()
	for name, want := range map[string]uint32{"xlb_conns_v1": 1 << 20, "xlb_backends_v1": 262144, "xlb_svc_ids_v1": 1024} {
		m := map[string]*ebpf.Map{"xlb_conns_v1": d.objs.XlbConnsV1, "xlb_backends_v1": d.objs.XlbBackendsV1, "xlb_svc_ids_v1": d.objs.XlbSvcIdsV1}[name]
		if got := m.MaxEntries(); got != want {
			t.Errorf("%s has %d entries, want %d", name, got, want)
		}
	}
}

// TestAdoptTunnelServicesOnRestart: tunnel services (IPIP with and without
// a GUE port given, GUE with an outer source prefix, IPv6-in-IPv6 with a
// source address) are adopted with their tunnel options: re-applying the
// same configuration after a restart changes nothing (no slot flip), and
// the tunnelled flows are encapsulated as before.
func TestAdoptTunnelServicesOnRestart(t *testing.T) {
	pin := filepath.Join("/sys/fs/bpf", nettest.UniqueName("xlbt-"))
	t.Cleanup(func() { os.RemoveAll(pin) })
	opts := Options{Interfaces: []string{"eth0", "eth1"}, PinPath: pin, SyncInterval: -1, MapSizes: testSizes}
	e := routedEnvOpts(t, opts)
	ipip := tunnelService(netip.MustParseAddr("10.0.0.6"), dataplane.EncapIPIP, netip.Prefix{}, tunRS4)
	ipipNoPort := tunnelService(netip.MustParseAddr("10.0.0.7"), dataplane.EncapIPIP, netip.Prefix{}, tunRS4)
	ipipNoPort.Tunnel.GUEPort = 0
	gue := tunnelService(vip4b, dataplane.EncapGUE, netip.MustParsePrefix("10.0.9.0/24"), tunRS4)
	gueHostBits := tunnelService(netip.MustParseAddr("10.0.0.8"), dataplane.EncapGUE, netip.MustParsePrefix("10.0.9.77/24"), tunRS4)
	gueHostBits.Tunnel.GUEPort = 7080
	ip6 := tunnelService(vip6, dataplane.EncapIPIP, netip.MustParsePrefix("2001:db8:9::5/128"), tunRS6)
	ip6Prefix := tunnelService(netip.MustParseAddr("2001:db8::4"), dataplane.EncapGUE, netip.MustParsePrefix("2001:db8:9::/64"), tunRS6)
	svcs := []dataplane.Service{ipip, ipipNoPort, gue, gueHostBits, ip6, ip6Prefix}
	e.apply(svcs...)

	flows := make([][]byte, len(svcs))
	for i, s := range svcs {
		cli := client4
		if s.Key.Addr.Is6() {
			cli = client6
		}
		flows[i] = packet.Frame{SrcMAC: cliMAC, DstMAC: eth0MAC, Src: cli, Dst: s.Key.Addr, Proto: packet.TCP, SrcPort: 41000, DstPort: 80, TCPFlags: packet.SYN}.Bytes()
	}
	forward := func() [][]byte {
		t.Helper()
		outs := make([][]byte, len(flows))
		for i, f := range flows {
			ret, out := e.runOn(e.eth0, f)
			if ret != xdpRedirect {
				t.Fatalf("%s: action %s (verdicts %v)", svcs[i].Key, actionNames[ret], e.verdicts())
			}
			outs[i] = out
		}
		return outs
	}
	slots := func() map[dataplane.ServiceKey]uint32 {
		t.Helper()
		m := map[dataplane.ServiceKey]uint32{}
		for _, s := range svcs {
			var slot uint32
			if err := e.d.objs.XlbSvcSlotV1.Lookup(e.d.services[s.Key].id, &slot); err != nil {
				t.Fatal(err)
			}
			m[s.Key] = slot
		}
		return m
	}
	before, slotsBefore := forward(), slots()

	e.d.Close()
	if err := e.ns.Do(func() (err error) { e.d, err = Open(opts); return err }); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	for _, s := range svcs {
		if st := e.d.services[s.Key]; !e.d.sameInstall(st, s) {
			got := st.svc
			t.Errorf("%s adopted as %+v, installed as %+v", s.Key, got.Tunnel, s.Tunnel)
		}
	}
	e.apply(svcs...)
	for k, slot := range slots() {
		if slot != slotsBefore[k] {
			t.Errorf("%s: re-applying the adopted configuration flipped the slot: nothing had changed", k)
		}
	}
	for i, out := range forward() {
		if !bytes.Equal(out, before[i]) {
			t.Errorf("%s after restart:\n got %x\nwant %x", svcs[i].Key, out, before[i])
		}
	}
}

// TestNewBackendIDsZeroed: a new backend id's load and connection counts
// are zero. A dataplane whose maps it created itself skips writing zeros
// to ids never used (at start, 4 of a real server's 7 writes); one that
// reuses pinned maps must zero them, since a previous process may have
// left values there (planted here at the id the next real server gets).
func TestNewBackendIDsZeroed(t *testing.T) {
	e := newEnv(t)
	e.d.Close()
	_, open := e.pinned(t)
	e.d = open()
	if !e.d.beIDs.clean[5] {
		t.Fatal("a dataplane that created its maps does not know them zero")
	}
	s := svc(dataplane.RoundRobin, e.pool(3)) // backend ids 0-2
	e.apply(s)
	// What a previous process might have left at id 3.
	if err := e.d.objs.XlbBeActV1.Put(uint32(3), int64(7)); err != nil {
		t.Fatal(err)
	}
	if err := e.d.objs.XlbBeConnsV1.Put(uint32(3), bpfXlbBeConns{Active: 5, Inactive: 6}); err != nil {
		t.Fatal(err)
	}
	e.d.Close()

	e.d = open()
	s.Backends = append(s.Backends, e.pool(4)[3])
	e.apply(s)
	id := e.d.services[s.Key].ids[3]
	if id != 3 {
		t.Fatalf("the new real server got backend id %d, want 3", id)
	}
	var act int64
	var conns bpfXlbBeConns
	if err := e.d.objs.XlbBeActV1.Lookup(id, &act); err != nil {
		t.Fatal(err)
	}
	if err := e.d.objs.XlbBeConnsV1.Lookup(id, &conns); err != nil {
		t.Fatal(err)
	}
	if act != 0 || conns != (bpfXlbBeConns{}) {
		t.Errorf("new backend %d over pinned maps: load %d, connections %+v; want zeros", id, act, conns)
	}
}
