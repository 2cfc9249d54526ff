package xdp

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// XDP actions.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var actionNames = []string{"ABORTED", "DROP", "PASS", "TX", "REDIRECT"}

// testSizes keeps the maps of unit tests small (the defaults preallocate
// hundreds of megabytes); TestOpenDefaultSizes loads the real sizes.
var testSizes = map[string]uint32{
	"xlb_conns_v1":   1 << 16,
	"xlb_persist_v1": 1 << 12,
	// Not preallocated, but its buckets are.
	"xlb_sync_conns_v1": 1 << 16,
}

// env is a dataplane loaded inside a test namespace holding two dummy
// interfaces with known MACs: frames "arrive" on eth0 (the test-run
// context's ingress interface) and real servers sit behind eth0 or eth1.
type env struct {
	t    testing.TB
	ns   *nettest.NS
	d    *Dataplane
	eth0 int // ifindex
	eth1 int
	// oneCPU runs the packets of picks and run on CPU 0: per-CPU counts
	// (the SYN flood windows) split, and per-CPU rings (sync reports,
	// probe answers) are read out of order, when the test's thread moves
	// between CPUs.
	oneCPU bool
}

var (
	eth0MAC = net.HardwareAddr{0x02, 0, 0, 0, 0xe0, 0}
	eth1MAC = net.HardwareAddr{0x02, 0, 0, 0, 0xe1, 0}
)

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes})
}

func newEnvOpts(t testing.TB, opts Options) *env {
	t.Helper()
	ns := nettest.NewNS(t, "dp")
	// This kernel has no dummy driver: veth pairs with the peers left down.
	ns.MustRun(t, "ip", "link", "add", "eth0", "address", eth0MAC.String(), "type", "veth", "peer", "name", "peer0")
	ns.MustRun(t, "ip", "link", "add", "eth1", "address", eth1MAC.String(), "type", "veth", "peer", "name", "peer1")
	ns.MustRun(t, "ip", "link", "set", "eth0", "up")
	ns.MustRun(t, "ip", "link", "set", "eth1", "up")
	e := &env{t: t, ns: ns}
	if err := ns.Do(func() error {
		for name, p := range map[string]*int{"eth0": &e.eth0, "eth1": &e.eth1} {
			i, err := net.InterfaceByName(name)
			if err != nil {
				return err
			}
			*p = i.Index
		}
		d, err := Open(opts)
		e.d = d
		return err
	}); err != nil {
		t.Fatalf("load XDP dataplane: %v", err)
	}
	t.Cleanup(func() { e.d.Close() })
	return e
}

// with returns e reporting to t (a subtest).
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

func (e *env) apply(svcs ...dataplane.Service) {
	e.t.Helper()
	if err := e.ns.Do(func() error { return e.d.Apply(e.t.Context(), svcs) }); err != nil {
		e.t.Fatalf("apply: %v", err)
	}
}

// run runs one frame through the program, received on eth0, and returns
// the action and the frame as the program left it.
func (e *env) run(frame []byte) (uint32, []byte) {
	e.t.Helper()
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(e.eth0)}}
	var ret uint32
	if err := e.do(func() (err error) { ret, err = e.d.Program().Run(&opts); return err }); err != nil {
		e.t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, opts.DataOut
}

// do runs f in e's namespace, on CPU 0 if e.oneCPU.
func (e *env) do(f func() error) error {
	return e.ns.Do(func() error {
		if e.oneCPU {
			var was, cpu0 unix.CPUSet
			if err := unix.SchedGetaffinity(0, &was); err != nil {
				return err
			}
			cpu0.Set(0)
			if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
				return err
			}
			defer unix.SchedSetaffinity(0, &was)
		}
		return f()
	})
}

var (
	vip4    = netip.MustParseAddr("10.0.0.3")
	vip6    = netip.MustParseAddr("2001:db8::3")
	client4 = netip.MustParseAddr("192.0.2.10")
	client6 = netip.MustParseAddr("2001:db8:c::10")
	rsMAC   = []net.HardwareAddr{
		{0x02, 0xaa, 0, 0, 0, 1}, {0x02, 0xaa, 0, 0, 0, 2}, {0x02, 0xaa, 0, 0, 0, 3}, {0x02, 0xaa, 0, 0, 0, 4},
	}
)

// rs is real server i behind eth0.
func (e *env) rs(i int, addr string, weight uint32) dataplane.Backend {
	a := netip.MustParseAddr(addr)
	return dataplane.Backend{Addr: a, Port: 80, Weight: weight, MAC: dataplane.MACFrom(rsMAC[i%len(rsMAC)]), Ifindex: int32(e.eth0)}
}

func drService(vip netip.Addr, proto dataplane.Proto, sched dataplane.Scheduler, bs ...dataplane.Backend) dataplane.Service {
	for i := range bs {
		bs[i].Port = 80
	}
	return dataplane.Service{
		Name:      "web",
		Key:       dataplane.ServiceKey{Addr: vip, Port: 80, Proto: proto},
		Scheduler: sched,
		Forward:   dataplane.DirectRouting,
		Enabled:   true,
		Backends:  bs,
	}
}

func TestDRForwardsSYNWithRewrittenMACs(t *testing.T) {
	e := newEnv(t)
	e.apply(drService(vip4, dataplane.TCP, dataplane.RoundRobin, e.rs(0, "10.0.1.1", 1)))
	in := packet.Frame{Src: client4, Dst: vip4, Proto: packet.TCP, SrcPort: 40000, DstPort: 80, TCPFlags: packet.SYN}.Bytes()
	ret, out := e.run(in)
	if ret != xdpTX {
		t.Fatalf("action %s, want TX; verdicts %v", actionNames[ret], e.verdicts())
	}
	want := bytes.Clone(in)
	copy(want[0:6], rsMAC[0])
	copy(want[6:12], eth0MAC)
	if !bytes.Equal(out, want) {
		t.Fatalf("output\n got %x\nwant %x", out, want)
	}
}

// verdicts returns the non-zero verdict counters.
func (e *env) verdicts() map[string]uint64 {
	e.t.Helper()
	st, err := e.d.Stats(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]uint64{}
	for k, v := range st.Verdicts {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}
