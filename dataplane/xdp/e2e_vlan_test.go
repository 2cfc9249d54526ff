package xdp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// vlanPusher attaches, to dev's egress in ns, a tc program that tags every
// frame with VLAN vid (bpf_skb_vlan_push): the tag is the skb's, as a
// VLAN device's, and the device's tx-vlan-offload decides whether it
// travels in the frame or beside it. (This kernel has no 8021q module.)
func vlanPusher(t *testing.T, ns *nettest.NS, dev string, vid int32) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			// R1 is the skb.
			asm.Mov.Imm(asm.R2, 0x0081), // htons(ETH_P_8021Q)
			asm.Mov.Imm(asm.R3, vid),
			asm.FnSkbVlanPush.Call(),
			asm.Mov.Imm(asm.R0, 0), // TCX_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load the VLAN tagger: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	var l link.Link
	err = ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		return err
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("this kernel has no tcx (6.6 and later) to tag the client's frames: %v", err)
	}
	if err != nil {
		t.Fatalf("attach the VLAN tagger: %v", err)
	}
	t.Cleanup(func() { l.Close() })
}

// TestE2EVLANOffload: a client's datagrams tagged with VLAN 42 reach a DR
// director over a veth whose VLAN offload is on (the tag travels beside
// the frame, and XDP does not see it, as with a NIC that strips it) or off
// (the tag is in the frame, and XDP sees it), with the director's rx VLAN
// offload on or off. Either way the real server receives the same frame:
// untagged, addressed to it from the director's eth1, the IP packet as the
// client sent it, and its socket on the VIP gets the datagram (a tagged
// frame would be another host's: the real server has no VLAN device; a
// receiving kernel moves an in-frame tag aside before packet sockets see
// the frame, so the captured bytes alone do not tell).
func TestE2EVLANOffload(t *testing.T) {
	t.Parallel()
	cli, dir, rsNS := labNS(t, "cli"), labNS(t, "dir"), labNS(t, "rs")
	nettest.Veth(t, cli, "eth0", dir, "eth0")
	nettest.Veth(t, dir, "eth1", rsNS, "eth0")
	setupDirector(t, cli, dir)
	nettest.Addr(t, rsNS, "eth0", rip4.String()+"/24")
	nettest.Addr(t, rsNS, "lo", vip4.String()+"/32") // DR: the real server holds the VIP
	nettest.GRO(t, rsNS, "eth0")
	var server net.PacketConn
	if err := rsNS.Do(func() (err error) {
		server, err = net.ListenPacket("udp", netip.AddrPortFrom(vip4, 53).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	d := openDirector(t, dir)
	macOf := func(ns *nettest.NS, dev string) net.HardwareAddr {
		var mac net.HardwareAddr
		if err := ns.Do(func() error {
			i, err := net.InterfaceByName(dev)
			if err == nil {
				mac = i.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return mac
	}
	dirEth0, dirEth1, rsEth0 := macOf(dir, "eth0"), macOf(dir, "eth1"), macOf(rsNS, "eth0")
	var eth1 int
	dir.Do(func() error { i, err := net.InterfaceByName("eth1"); eth1 = i.Index; return err })
	svc := dataplane.Service{
		Name: "dns", Key: dataplane.ServiceKey{Addr: vip4, Port: 53, Proto: dataplane.UDP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.DirectRouting, Enabled: true,
		Backends: []dataplane.Backend{{Addr: rip4, Port: 53, Weight: 1, MAC: dataplane.MACFrom(rsEth0), Ifindex: int32(eth1)}},
	}
	if err := dir.Do(func() error { return d.Apply(t.Context(), []dataplane.Service{svc}) }); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// Tagged ARP would not be answered (the director has no VLAN device):
	// the client knows its gateway's MAC.
	cli.MustRun(t, "ip", "neigh", "replace", dirEth0IP4.String(), "lladdr", dirEth0.String(), "dev", "eth0", "nud", "permanent")
	vlanPusher(t, cli, "eth0", 42)
	sent := cli.CaptureSent(t, "eth0", 0x0800)
	sentTagged := cli.CaptureSent(t, "eth0", 0x8100)
	got := rsNS.Capture(t, "eth0", 0x0800)

	port := uint16(50000)
	for _, txvlan := range []string{"on", "off"} {
		for _, rxvlan := range []string{"on", "off"} {
			t.Run(fmt.Sprintf("client txvlan %s, director rxvlan %s", txvlan, rxvlan), func(t *testing.T) {
				cli.MustRun(t, "ethtool", "-K", "eth0", "txvlan", txvlan)
				dir.MustRun(t, "ethtool", "-K", "eth0", "rxvlan", rxvlan)
				port++
				before := nonZero(d.mustStats(t).Verdicts)
				c, err := nettestDialUDP(cli, netip.AddrPortFrom(client4, port), netip.AddrPortFrom(vip4, 53))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write([]byte("tagged query")); err != nil {
					t.Fatal(err)
				}
				fromPort := func(p packet.Parsed) bool { return p.Proto == packet.UDP && p.SrcPort == port }
				var out []byte
				if txvlan == "on" {
					out = frameWhere(t, sent, "the client's datagram", fromPort)
				} else {
					out = frameWhere(t, sentTagged, "the client's tagged datagram", fromPort)
					if p, _ := packet.Parse(out); p.VLAN != 42 {
						t.Fatalf("the client's frame has VLAN %d, want 42 in the frame", p.VLAN)
					}
				}
				in := frameWhere(t, got, "the datagram at the real server", fromPort)
				want := append(append(append([]byte{}, rsEth0...), dirEth1...), 0x08, 0x00)
				want = append(want, packet.IPPacket(out)...)
				if !bytes.Equal(in, want) {
					t.Errorf("at the real server\n got %x\nwant %x (untagged, the client's IP packet)", in, want)
				}
				server.SetReadDeadline(time.Now().Add(e2eTimeout))
				buf := make([]byte, 100)
				n, from, err := server.ReadFrom(buf)
				if err != nil || string(buf[:n]) != "tagged query" || from.String() != netip.AddrPortFrom(client4, port).String() {
					t.Errorf("the real server's socket: %q from %v (%v), want the query from %s:%d", buf[:n], from, err, client4, port)
				}
				after := nonZero(d.mustStats(t).Verdicts)
				if after["redirect"] != before["redirect"]+1 {
					t.Errorf("verdicts before %v, after %v: want one more redirect", before, after)
				}
			})
		}
	}
}

func (d *Dataplane) mustStats(t *testing.T) *dataplane.Stats {
	t.Helper()
	st, err := d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nettestDialUDP opens a UDP socket in ns from local to remote.
func nettestDialUDP(ns *nettest.NS, local, remote netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(local), net.UDPAddrFromAddrPort(remote))
		return err
	})
	return c, err
}
