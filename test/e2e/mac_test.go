package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// arpRequest is an ARP request (RFC 826) from sha/spa for tpa, broadcast;
// with spa == tpa it is a gratuitous ARP (RFC 5227 section 3).
func arpRequest(sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	b := make([]byte, 42)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], sha)
	binary.BigEndian.PutUint16(b[12:], unix.ETH_P_ARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1) // request
	copy(a[8:14], sha)
	s, t := spa.As4(), tpa.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:]) // the target hardware address stays zero
	return b
}

// sendFrames sends raw Ethernet frames out of dev in ns, each once the
// device's queue has room for it (ENOBUFS: full, try again).
func sendFrames(ns *nettest.NS, dev string, frames ...[]byte) error {
	return ns.Do(func() error {
		iface, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		for _, f := range frames {
			sa := &unix.SockaddrLinklayer{Ifindex: iface.Index, Protocol: htons(binary.BigEndian.Uint16(f[12:14])), Halen: 6}
			copy(sa.Addr[:], f[0:6])
			for {
				err := unix.Sendto(fd, f, 0, sa)
				if err == nil {
					break
				}
				if err != unix.ENOBUFS {
					return fmt.Errorf("send: %w", err)
				}
				runtime.Gosched()
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// backendMACs reads the director's pinned xlb_backends_v1 with bpftool
// and returns the next-hop MAC of every IPv4 backend in use, by address.
// The lab's few backends have the lowest ids: entries are looked up by key
// (a dump of the 262144 entries takes seconds).
func backendMACs(t *testing.T, d *lab.Director) map[string]string {
	t.Helper()
	macs := map[string]string{}
	for id := range 16 {
		out, err := exec.Command("bpftool", "-j", "map", "lookup", "pinned", filepath.Join(d.PinPath, "xlb_backends_v1"),
			"key", fmt.Sprint(id), "0", "0", "0").Output()
		if err != nil {
			t.Fatalf("bpftool map lookup xlb_backends_v1 key %d: %v", id, err)
		}
		var e struct {
			Formatted struct {
				Value struct {
					Addr   []int `json:"addr"`
					Family int   `json:"family"`
					Mac    []int `json:"mac"`
					Flags  int   `json:"flags"`
				} `json:"value"`
			} `json:"formatted"`
		}
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("bpftool output: %v: %.300s", err, out)
		}
		v := e.Formatted.Value
		if v.Flags == 0 || v.Family != 4 || len(v.Addr) < 4 || len(v.Mac) != 6 {
			continue
		}
		addr := netip.AddrFrom4([4]byte{byte(v.Addr[0]), byte(v.Addr[1]), byte(v.Addr[2]), byte(v.Addr[3])})
		var mac net.HardwareAddr
		for _, b := range v.Mac {
			mac = append(mac, byte(b))
		}
		macs[addr.String()] = mac.String()
	}
	return macs
}

// TestRealServerMACChange: a direct-routing real server's MAC changes (a
// new NIC, a VM moved) and it announces the new one with a gratuitous ARP,
// while another host of the LAN floods the director with ARP from many
// addresses (each changing an entry of its neighbour table: more updates
// than the daemon's subscription holds): the daemon follows the neighbour
// table anyway, the backend's MAC in the dataplane changes and requests
// reach the real server again within a second or two, not after the next
// refresh of every entry (30 s), nor never (a subscription that died with
// the flood).
func TestRealServerMACChange(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	logsOnFailure(t, l)
	d := l.Directors[0]
	d.Start()
	waitAllUp(t, l, d)
	rs := l.Reals[0]
	oldMAC := backendMACs(t, d)[rs.Addr.String()]
	if oldMAC == "" {
		t.Fatalf("no MAC for %s in the dataplane: %v", rs.Addr, backendMACs(t, d))
	}
	load := l.StartLoad(20 * time.Millisecond)
	waitRequests(t, load, time.Time{}, 20)

	// The flood: 100 addresses of the LAN (never more at a time in the
	// kernel's table, whose limits all namespaces share), each asking for
	// the director from a new MAC, round after round.
	var flood [][]byte
	for round := range 400 {
		for i := range 100 {
			mac := net.HardwareAddr{0x02, 0xaa, 0, 0, byte(round), byte(i)}
			flood = append(flood, arpRequest(mac, netip.AddrFrom4([4]byte{10, 77, 0, byte(150 + i)}), d.Addr))
		}
	}
	flooded := time.Now()
	if err := sendFrames(l.Client, "eth0", flood...); err != nil {
		t.Fatalf("ARP flood: %v", err)
	}
	t.Logf("ARP flood: %d requests from 100 addresses sent in %v", len(flood), time.Since(flooded).Round(time.Millisecond))

	newMAC := net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x11}
	rs.NS.MustRun(t, "ip", "link", "set", "dev", "eth0", "address", newMAC.String())
	if err := sendFrames(rs.NS, "eth0", arpRequest(newMAC, rs.Addr, rs.Addr)); err != nil {
		t.Fatalf("gratuitous ARP from %s: %v", rs.Name, err)
	}
	changed := time.Now()
	var back time.Duration
	nettest.WaitFor(t, 60*time.Second, rs.Name+" answering again", func() error {
		for _, res := range load.Results() {
			if res.At.After(changed) && res.Err == nil && res.Server == rs.Name {
				back = res.At.Sub(changed)
				return nil
			}
		}
		return fmt.Errorf("no request answered by %s since its MAC changed: %s", rs.Name, load.Report(changed))
	})
	waitRequests(t, load, changed.Add(back), 50)
	load.Stop()
	after := load.Report(changed.Add(back))
	t.Logf("%s changed its MAC %s -> %s and sent a gratuitous ARP: answering again after %v; since: %s",
		rs.Name, oldMAC, newMAC, back.Round(time.Millisecond), after)
	if got := backendMACs(t, d)[rs.Addr.String()]; got != newMAC.String() {
		t.Errorf("backend %s has MAC %s in the dataplane, want %s", rs.Addr, got, newMAC)
	}
	if back > 2*time.Second {
		t.Errorf("%s got requests again %v after its MAC changed and it announced it, want within 2 s", rs.Name, back.Round(time.Millisecond))
	}
	if after.Failed != 0 || after.Share(rs.Name) < 0.3 {
		t.Errorf("after %s answered again: %s", rs.Name, after)
	}
	log, _ := os.ReadFile(d.LogPath)
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "neighbour") {
			t.Logf("%s: %s", d.Name, line)
		}
	}
	if strings.Contains(string(log), "neighbour resolution stopped") {
		t.Error("the neighbour resolver stopped")
	}
}

// TestRealServerMACChangeUnannounced: a direct-routing real server's MAC
// changes without a gratuitous ARP, on a director that forwards (whose
// kernel then learns nothing from the real server until the entry, still
// REACHABLE with the old MAC, goes stale: about 35 s). The real server's
// check fails, the daemon has the kernel probe its entry again, the probes
// to the old MAC go unanswered and the entry is resolved anew: requests
// reach it again within seconds.
func TestRealServerMACChangeUnannounced(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	logsOnFailure(t, l)
	d := l.Directors[0]
	nettest.Sysctl(t, d.NS, "net.ipv4.conf.all.forwarding", "1")
	d.Start()
	waitAllUp(t, l, d)
	rs := l.Reals[0]
	load := l.StartLoad(20 * time.Millisecond)
	waitRequests(t, load, time.Time{}, 20)

	newMAC := net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x12}
	rs.NS.MustRun(t, "ip", "link", "set", "dev", "eth0", "address", newMAC.String())
	changed := time.Now()
	var back time.Duration
	nettest.WaitFor(t, 60*time.Second, rs.Name+" answering again", func() error {
		for _, res := range load.Results() {
			if res.At.After(changed) && res.Err == nil && res.Server == rs.Name {
				back = res.At.Sub(changed)
				return nil
			}
		}
		return fmt.Errorf("no request answered by %s since its MAC changed: %s", rs.Name, load.Report(changed))
	})
	load.Stop()
	t.Logf("%s changed its MAC to %s without announcing it: answering again after %v", rs.Name, newMAC, back.Round(time.Millisecond))
	if got := backendMACs(t, d)[rs.Addr.String()]; got != newMAC.String() {
		t.Errorf("backend %s has MAC %s in the dataplane, want %s", rs.Addr, got, newMAC)
	}
	// Check down (fall 2 x 200 ms), the kernel's unicast probes (3 x 1 s),
	// resolution by broadcast, the check up again (rise): about 5 s.
	if back > 15*time.Second {
		t.Errorf("%s got requests again %v after its MAC changed, want within 15 s", rs.Name, back.Round(time.Millisecond))
	}
}
