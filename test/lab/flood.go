package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// Flood is a SYN flood generator joined to a director by a link of its own
// (the director's eth1, 10.79.0.1/24; the generator's f0, 10.79.0.2): it
// sends SYNs from random source addresses and ports at its full rate on
// one CPU (live frames, bpf/bench/flood.c) to a service of the director
// whose real server is FloodReal (the generator's own address, port
// FloodPort), where an XDP sink counts and drops what the director
// forwards. The flood never reaches the lab's switch, client or real
// servers: only the director's XDP program meets it.
type Flood struct {
	lab  *Lab
	NS   *nettest.NS
	objs floodObjects
	f0   *net.Interface
	dMAC net.HardwareAddr
	// gen sends the flood where the kernel refuses live frames.
	gen *packetGen
}

// Addresses of the flood's link; FloodPort is the flooded service's port.
var (
	FloodReal = netip.MustParseAddr("10.79.0.2")
	floodDir  = netip.MustParseAddr("10.79.0.1")
	// floodSources are the flood's source addresses (TEST-NET-style
	// benchmark space, RFC 2544: neither martian nor the lab's).
	floodSources = netip.MustParsePrefix("198.18.0.0/15")
)

const FloodPort = 9

// NewFlood joins a generator to director d. Call it before d.Start, and
// give d a configuration with FloodInterfaces and FloodService.
func (l *Lab) NewFlood(d *Director) *Flood {
	t := l.T
	t.Helper()
	f := &Flood{lab: l, NS: nettest.NewNS(t, "fl")}
	nettest.Veth(t, f.NS, "f0", d.NS, "eth1")
	nettest.Addr(t, f.NS, "f0", FloodReal.String()+"/24")
	nettest.Addr(t, d.NS, "eth1", floodDir.String()+"/24")
	spec, err := loadFlood()
	if err != nil {
		t.Fatal(err)
	}
	net4 := floodSources.Addr().As4()
	mask := net.CIDRMask(floodSources.Bits(), 32)
	if err := spec.Variables["flood_src_net"].Set(net4); err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["flood_src_mask"].Set([4]byte(mask)); err != nil {
		t.Fatal(err)
	}
	if err := spec.LoadAndAssign(&f.objs, nil); err != nil {
		t.Fatalf("load the flood generator: %+v", err)
	}
	t.Cleanup(func() { f.objs.Close() })
	var lk link.Link
	if err := f.NS.Do(func() (err error) {
		if f.f0, err = net.InterfaceByName("f0"); err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: f.objs.FloodSink, Interface: f.f0.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach the flood sink: %v", err)
	}
	t.Cleanup(func() { lk.Close() })
	if err := d.NS.Do(func() error {
		i, err := net.InterfaceByName("eth1")
		if err == nil {
			f.dMAC = i.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

// FloodInterfaces turns a director configuration's interface list into one
// with the flood's link.
func FloodInterfaces(config string) string {
	return strings.Replace(config, `interfaces = ["eth0"]`, `interfaces = ["eth0", "eth1"]`, 1)
}

// FloodService is the configuration of the flooded service: port
// FloodPort of the VIP, scheduler sched, DR to FloodReal, always healthy.
func (l *Lab) FloodService(sched string) string {
	return fmt.Sprintf(`
[[virtual_server]]
name = "flood"
address = %q
port = %d
protocol = "tcp"
scheduler = %q
forward = "dr"

[virtual_server.health_check]
type = "none"
initial_state = "up"

[[virtual_server.real_server]]
address = %q
port = %d
weight = 1
`, l.VIP, FloodPort, sched, FloodReal, FloodPort)
}

// Run sends SYNs to the VIP's FloodPort from one thread for d and returns
// how many it sent.
func (f *Flood) Run(d time.Duration) (uint64, error) {
	var sent uint64
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, err := f.Send(1 << 18)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// Send sends n SYNs to the VIP's FloodPort at once: as live frames, or,
// where the kernel refuses them, through an AF_PACKET socket (packetGen).
func (f *Flood) Send(n uint32) (uint64, error) {
	syn := packet.Frame{SrcMAC: f.f0.HardwareAddr, DstMAC: f.dMAC, Src: floodSources.Addr(), Dst: f.lab.VIP,
		Proto: packet.TCP, SrcPort: 1024, DstPort: FloodPort, TCPFlags: packet.SYN}
	var tmpl floodFloodFrame
	copy(tmpl.B[:], syn.Bytes())
	if f.gen != nil {
		return uint64(n), f.gen.send(n)
	}
	if err := f.objs.FloodTemplate.Put(uint32(0), &tmpl); err != nil {
		return 0, err
	}
	err := f.NS.Do(func() error {
		_, err := f.objs.FloodGen.Run(&ebpf.RunOptions{
			Data: tmpl.B[:], Repeat: n, Flags: 2, /* BPF_F_TEST_XDP_LIVE_FRAMES */
			Context: floodXdpMd{DataEnd: 64, IngressIfindex: uint32(f.f0.Index)},
		})
		if errors.Is(err, unix.EPERM) {
			f.lab.T.Logf("flood: this kernel refuses live frames (%v): SYNs sent through an AF_PACKET socket instead", err)
			f.gen, err = newPacketGen(f.f0.Index, tmpl.B[:], floodSources.Addr().As4(), floodSources.Bits())
			if err == nil {
				f.lab.T.Cleanup(f.gen.close)
				err = f.gen.send(n)
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("live frames: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return uint64(n), nil
}

// Sunk returns how many flooded SYNs the director forwarded to the sink.
func (f *Flood) Sunk() uint64 {
	var per []uint64
	if err := f.objs.FloodSunk.Lookup(uint32(0), &per); err != nil {
		f.lab.T.Errorf("flood sink counter: %v", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}
