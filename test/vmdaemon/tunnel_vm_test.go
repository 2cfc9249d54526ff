//go:build vmtest

package vmdaemon_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/vm"
)

// Tunnel lab addresses: the client, director and real servers each in
// their own subnet behind a router; the VIPs are routed to the director.
var (
	tunClient4 = netip.MustParseAddr("10.81.1.10")
	tunClient6 = netip.MustParseAddr("fd81:1::10")
	tunVIP4    = netip.MustParseAddr("10.81.9.100") // IPIP
	tunVIPGUE  = netip.MustParseAddr("10.81.9.101") // GUE
	tunVIP6    = netip.MustParseAddr("fd81:9::100") // IPv6 in IPv6
)

const guePort = 6080

// tunnelService is one tunnel-mode service of the test and what it
// needs at the real servers.
type tunnelService struct {
	name  string
	vip   netip.Addr
	encap string // tunnel_type
	dev   string // the real servers' decapsulating device
	reals []netip.Addr
}

// TestXDPTunnel: `xlb run` with mode = "xdp" (native, on veth) and
// forward = "tunnel" services, IPIP, IPv6-in-IPv6 and GUE, to real servers
// in two other subnets. The director is one-armed: it encapsulates what the
// router sends it for the VIPs and sends it back to the router (XDP_TX),
// which routes it to the real server. Real servers hold the VIPs on lo,
// decapsulate with the kernel's fallback tunnel devices (tunl0, ip6tnl0;
// GUE through a fou port into tunl0) and answer the client directly (DSR:
// the router sends replies to the client, the director never sees them).
//
//	client 10.81.1.10 -- c0 router d0 -- eth0 director 10.81.2.2 (VIPs 10.81.9.100, .101, fd81:9::100)
//	                        r1 -- rs1 10.81.3.11
//	                        r2 -- rs2 10.81.4.11
func TestXDPTunnel(t *testing.T) {
	vm.RequireGuest(t)
	t.Parallel()
	for _, m := range []string{"ipip", "ip6_tunnel", "fou"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s (test/vm ships it: see vm_test.go)", m, err, out)
		}
	}

	cl, rt, dir := nettest.NewNS(t, "cl"), nettest.NewNS(t, "rt"), nettest.NewNS(t, "dir")
	rs := []*nettest.NS{nettest.NewNS(t, "rs"), nettest.NewNS(t, "rs")}
	for _, ns := range append([]*nettest.NS{cl, rt, dir}, rs...) {
		nettest.NoDAD(t, ns)
		// Replies leave the real servers from the VIP, which the router
		// routes toward the director: no reverse-path filter anywhere.
		nettest.Sysctl(t, ns, "net.ipv4.conf.all.rp_filter", "0")
		nettest.Sysctl(t, ns, "net.ipv4.conf.default.rp_filter", "0")
	}
	// The director forwards too: XDP finds the tunnels' next hops with
	// bpf_fib_lookup, which answers only on an interface that forwards
	// (BPF_FIB_LKUP_RET_FWD_DISABLED otherwise: the packet goes to the
	// kernel, counted as pass_fib).
	for _, ns := range []*nettest.NS{rt, dir} {
		nettest.Sysctl(t, ns, "net.ipv4.conf.all.forwarding", "1")
		nettest.Sysctl(t, ns, "net.ipv6.conf.all.forwarding", "1")
	}

	// Client: its frames carry complete checksums (tx offload off), as
	// from a wire; XDP turns them into raw frames.
	nettest.Veth(t, cl, "eth0", rt, "c0")
	nettest.TxChecksumOff(t, cl, "eth0")
	nettest.Addr(t, cl, "eth0", tunClient4.String()+"/24")
	nettest.Addr(t, cl, "eth0", tunClient6.String()+"/64")
	nettest.Addr(t, rt, "c0", "10.81.1.1/24")
	nettest.Addr(t, rt, "c0", "fd81:1::1/64")
	cl.MustRun(t, "ip", "route", "add", "default", "via", "10.81.1.1")
	cl.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd81:1::1")

	// Director: one arm. Native XDP_TX on a veth is delivered only when
	// the peer end polls with NAPI. On this kernel (6.1) GRO on the peer,
	// which is enough on the host's, is not: the frames are queued to the
	// peer (xdp_tx counted, no error) and never polled. An XDP program on
	// the peer is: the router's end gets one that passes everything.
	nettest.Veth(t, dir, "eth0", rt, "d0")
	xdpPass(t, rt, "d0")
	nettest.Addr(t, dir, "eth0", "10.81.2.2/24")
	nettest.Addr(t, dir, "eth0", "fd81:2::2/64")
	nettest.Addr(t, rt, "d0", "10.81.2.1/24")
	nettest.Addr(t, rt, "d0", "fd81:2::1/64")
	dir.MustRun(t, "ip", "route", "add", "default", "via", "10.81.2.1")
	dir.MustRun(t, "ip", "-6", "route", "add", "default", "via", "fd81:2::1")
	for _, v := range []netip.Addr{tunVIP4, tunVIPGUE, tunVIP6} {
		nettest.Addr(t, dir, "lo", netip.PrefixFrom(v, v.BitLen()).String())
	}
	rt.MustRun(t, "ip", "route", "add", "10.81.9.0/24", "via", "10.81.2.2")
	rt.MustRun(t, "ip", "-6", "route", "add", "fd81:9::/64", "via", "fd81:2::2")

	serving := false
	t.Cleanup(func() {
		if t.Failed() && serving { // where the packets went
			for _, ns := range append([]*nettest.NS{rt, dir}, rs...) {
				out, _ := ns.Run("ip", "-s", "link")
				snmp, _ := ns.Run("cat", "/proc/net/snmp")
				t.Logf("%s: ip -s link:\n%s\n/proc/net/snmp:\n%s", ns.Name, out, snmp)
			}
		}
	})
	var rs4, rs6 []netip.Addr
	for i, ns := range rs {
		net4, net6 := fmt.Sprintf("10.81.%d", 3+i), fmt.Sprintf("fd81:%d:", 3+i)
		leg := fmt.Sprintf("r%d", i+1)
		nettest.Veth(t, ns, "eth0", rt, leg)
		nettest.Addr(t, rt, leg, net4+".1/24")
		nettest.Addr(t, rt, leg, net6+":1/64")
		nettest.Addr(t, ns, "eth0", net4+".11/24")
		nettest.Addr(t, ns, "eth0", net6+":11/64")
		ns.MustRun(t, "ip", "route", "add", "default", "via", net4+".1")
		ns.MustRun(t, "ip", "-6", "route", "add", "default", "via", net6+":1")
		rs4 = append(rs4, netip.MustParseAddr(net4+".11"))
		rs6 = append(rs6, netip.MustParseAddr(net6+":11"))
		// LVS-TUN: the VIPs on lo, the fallback tunnel devices up (they
		// take tunnelled packets from any source), GUE on a fou port.
		for _, v := range []netip.Addr{tunVIP4, tunVIPGUE, tunVIP6} {
			nettest.Addr(t, ns, "lo", netip.PrefixFrom(v, v.BitLen()).String())
		}
		ns.MustRun(t, "ip", "link", "set", "tunl0", "up")
		ns.MustRun(t, "ip", "link", "set", "ip6tnl0", "up")
		nettest.Sysctl(t, ns, "net.ipv4.conf.tunl0.rp_filter", "0")
		ns.MustRun(t, "ip", "fou", "add", "port", strconv.Itoa(guePort), "gue")
		webServer(t, ns, fmt.Sprintf("rs%d", i+1))
	}

	services := []tunnelService{
		{name: "ipip", vip: tunVIP4, encap: "ipip", dev: "tunl0", reals: rs4},
		{name: "ip6ip6", vip: tunVIP6, encap: "ipip", dev: "ip6tnl0", reals: rs6},
		{name: "gue", vip: tunVIPGUE, encap: "gue", dev: "tunl0", reals: rs4},
	}
	work := t.TempDir()
	bpffs := filepath.Join(work, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", bpffs).CombinedOutput(); err != nil {
		t.Fatalf("mount bpffs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", bpffs).Run() })
	conf, socket := filepath.Join(work, "xlb.toml"), filepath.Join(work, "xlb.sock")
	if err := os.WriteFile(conf, []byte(tunnelConfig(filepath.Join(bpffs, "xlb"), socket, services)), 0o644); err != nil {
		t.Fatal(err)
	}
	x := startDaemon(t, dir, conf, socket, nil)
	x.waitReady(60 * time.Second)
	serving = true
	st, err := x.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Dataplane.Mode != "xdp" || st.Dataplane.Attach != "native" {
		t.Fatalf("dataplane %+v, want xdp attached native", st.Dataplane)
	}
	for _, s := range services {
		for _, r := range s.reals {
			waitHealth(t, x.status, s.name, netip.AddrPortFrom(r, 80).String(), "up", 30*time.Second)
		}
	}

	decap := func() map[string]uint64 { // real server/device -> packets decapsulated
		m := map[string]uint64{}
		for i, ns := range rs {
			for _, dev := range []string{"tunl0", "ip6tnl0"} {
				out := ns.MustRun(t, "cat", "/sys/class/net/"+dev+"/statistics/rx_packets")
				n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
				if err != nil {
					t.Fatalf("%s rx_packets %q: %v", dev, out, err)
				}
				m[fmt.Sprintf("rs%d/%s", i+1, dev)] = n
			}
		}
		return m
	}

	const n = 6 // requests per service, each a new connection
	for _, s := range services {
		t.Run(s.name, func(t *testing.T) {
			before := decap()
			client, ethType := tunClient4, uint16(0x0800)
			if s.vip.Is6() {
				client, ethType = tunClient6, 0x86dd
			}
			// What the router sends toward the director: never a reply.
			toDirector := rt.CaptureSent(t, "d0", ethType)
			var got []string
			for i := range n {
				name, peer, err := httpGet(cl, netip.AddrPortFrom(s.vip, 80), 10*time.Second)
				if err != nil {
					t.Fatalf("request %d to %s: %v", i, s.vip, err)
				}
				if ap, err := netip.ParseAddrPort(peer); err != nil || ap.Addr().Unmap() != client {
					t.Errorf("the real server saw the connection from %q, want the client %s", peer, client)
				}
				got = append(got, name)
			}
			for i := 1; i < n; i++ {
				if got[i] == got[i-1] {
					t.Fatalf("answers %v: want rs1 and rs2 alternating (rr)", got)
				}
			}
			t.Logf("answers %v", got)
			if r := repliesVia(t, rt, toDirector, s.vip); r != 0 {
				t.Errorf("the router sent %d packets from the VIP toward the director: replies must go straight to the client", r)
			}
			after := decap()
			for i := range rs {
				k := fmt.Sprintf("rs%d/%s", i+1, s.dev)
				// Each connection is at least SYN, ACK, request and FIN.
				if d := after[k] - before[k]; d < 4*n/2 {
					t.Errorf("%s decapsulated %d packets for %d connections", k, d, n/2)
				}
			}
			want := map[string]uint64{}
			for _, r := range s.reals {
				want[netip.AddrPortFrom(r, 80).String()] = n / 2
			}
			svc := waitConnections(t, x.status, s.name, want)
			if svc.Counters.PacketsIn < 4*n || svc.Counters.PacketsOut != 0 {
				t.Errorf("%s counters %+v: want every packet in, none out", s.name, svc.Counters)
			}
		})
	}

	st, err = x.status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdicts %v", st.Verdicts)
	for v, n := range st.Verdicts {
		if strings.HasPrefix(v, "drop") && n != 0 {
			t.Errorf("verdict %s: %d packets", v, n)
		}
	}
	m := metrics(t, dir, "127.0.0.1:9477")
	if _, ok := metric(m, "xlb_dataplane_info", `mode="xdp"`, `attach="native"`); !ok {
		t.Errorf("no xlb_dataplane_info{mode=\"xdp\",attach=\"native\"} in /metrics")
	}
	if text, err := dir.Run(xlbBin, "status", "--stats", "--socket", socket); err == nil {
		t.Logf("xlb status --stats:\n%s", text)
	}
	if code := x.stop(); code != 0 {
		t.Errorf("xlb exited %d after SIGTERM", code)
	}
}

// repliesVia counts the frames captured leaving the router toward the
// director (c) whose source is vip, up to a ping the router then sends the
// director: every frame sent before it has been read.
func repliesVia(t *testing.T, rt *nettest.NS, c *nettest.Capture, vip netip.Addr) int {
	t.Helper()
	director := netip.MustParseAddr("10.81.2.2")
	args := []string{"-c1", "-W5", director.String()}
	if vip.Is6() {
		director = netip.MustParseAddr("fd81:2::2")
		args = []string{"-6", "-c1", "-W5", director.String()}
	}
	rt.MustRun(t, "ping", args...)
	// IPv4: protocol at 23, source at 26, destination at 30; IPv6: next
	// header at 20, source at 22, destination at 38.
	protoOff, srcOff, dstOff, icmp := 23, 26, 30, byte(1)
	if vip.Is6() {
		protoOff, srcOff, dstOff, icmp = 20, 22, 38, 58
	}
	alen := vip.BitLen() / 8
	n := 0
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case f := <-c.Frames():
			d := f.Data
			if len(d) < dstOff+alen {
				continue
			}
			src, _ := netip.AddrFromSlice(d[srcOff : srcOff+alen])
			dst, _ := netip.AddrFromSlice(d[dstOff : dstOff+alen])
			if src == vip {
				n++
			}
			if d[protoOff] == icmp && dst == director {
				return n
			}
		case <-timeout.C:
			t.Fatalf("the router's ping to the director was not captured")
		}
	}
}

// tunnelConfig is the director's configuration.
func tunnelConfig(pinPath, socket string, services []tunnelService) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[global]
router_id = "dir"

[dataplane]
mode = "xdp"
xdp_mode = "native"
interfaces = ["eth0"]
pin_path = %q

[metrics]
listen = "127.0.0.1:9477"

[control]
socket = %q
`, pinPath, socket)
	for _, s := range services {
		fmt.Fprintf(&b, `
[[virtual_server]]
name = %q
address = %q
port = 80
protocol = "tcp"
scheduler = "rr"
forward = "tunnel"
tunnel_type = %q
`, s.name, s.vip, s.encap)
		if s.encap == "gue" {
			fmt.Fprintf(&b, "tunnel_port = %d\n", guePort)
		}
		b.WriteString(`
[virtual_server.health_check]
type = "http"
path = "/"
interval = "200ms"
timeout = "200ms"
fall = 2
rise = 2
`)
		for _, r := range s.reals {
			fmt.Fprintf(&b, `
[[virtual_server.real_server]]
address = %q
port = 80
weight = 1
`, r)
		}
	}
	return b.String()
}

// webServer serves HTTP on port 80 (every address of ns, the VIPs on lo
// included), answering "<name> <client address:port>".
func webServer(t *testing.T, ns *nettest.NS, name string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", ":80"); return err }); err != nil {
		t.Fatalf("listen in %s: %v", ns.Name, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, "%s %s", name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

// httpGet makes one HTTP/1.0 request from ns on a new connection and
// returns the answering server's name and the client address it saw.
func httpGet(ns *nettest.NS, addr netip.AddrPort, timeout time.Duration) (name, peer string, err error) {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	}); err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr.Addr()); err != nil {
		return "", "", err
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		return "", "", err
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.")) || !bytes.Contains(resp[:min(len(resp), 16)], []byte(" 200 ")) {
		return "", "", fmt.Errorf("bad response %.60q", resp)
	}
	i := bytes.Index(resp, []byte("\r\n\r\n"))
	if i < 0 {
		return "", "", fmt.Errorf("no body in %.60q", resp)
	}
	name, peer, _ = strings.Cut(string(resp[i+4:]), " ")
	return name, peer, nil
}

// xdpPass attaches an XDP program that passes every packet to dev in ns,
// for as long as the test runs.
func xdpPass(t *testing.T, ns *nettest.NS, dev string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "xlbt_pass",
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		t.Fatalf("XDP pass program: %v", err)
	}
	defer prog.Close()
	var l link.Link
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach an XDP pass program to %s in %s: %v", dev, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
}
