package vrrp_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/vrrp"
)

// forge sends advertisement a from eth0 of ns (whose address is src) to the
// VRRP group with TTL 255, as any station on the LAN can.
func forge(t testing.TB, ns *nettest.NS, src string, a vrrp.Advert) {
	t.Helper()
	payload, err := a.Marshal(netip.MustParseAddr(src), vrrp.MulticastGroup4)
	if err != nil {
		t.Fatal(err)
	}
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, vrrp.IPProtoVRRP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)}); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255); err != nil {
			return err
		}
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet4{Addr: vrrp.MulticastGroup4.As4()})
	})
	if err != nil {
		t.Fatalf("forging an advert from %s: %v", ns.Name, err)
	}
}

// TestLabForgedInterval (issue 11): one forged VRRPv3 advert from the
// client (priority 255, the VIP, TTL 255, the longest interval, 40.95s)
// makes the xlb master yield, as RFC 5798 wants. Both nodes learn at most 3
// of their 100ms intervals, so the master takes over again after 3 x 300ms
// and its skew, about a second; learning 40.95s, nobody would hold the VIP
// for 2 minutes. Each node counts the advert under interval_limit and logs
// it once.
func TestLabForgedInterval(t *testing.T) {
	t.Parallel()
	const iv = 100 * time.Millisecond
	l := newLab(t, 2)
	a := startXLB(t, "xlb-n1", l.nodes[0], xlbInst(150, iv))
	b := startXLB(t, "xlb-n2", l.nodes[1], xlbInst(100, iv))
	a.waitState(t, "vi", vrrp.Master, masterDown(iv)+2*time.Second)
	b.waitState(t, "vi", vrrp.Backup, 2*time.Second)

	sent := time.Now()
	forge(t, l.client, "10.77.0.10", vrrp.Advert{Version: 3, VRID: 51, Priority: 255, Interval: vrrp.MaxAdvertIntervalV3,
		Addrs: []netip.Addr{netip.MustParseAddr(labVIP)}})
	nettest.WaitFor(t, 5*time.Second, "n1 yielding to the forged advert", func() error {
		if ev, _ := a.lastEvent("vi", vrrp.Backup); ev.Reason != vrrp.ReasonHigherPriority || ev.At.Before(sent) {
			return fmt.Errorf("last BACKUP event %+v", ev)
		}
		return nil
	})
	a.waitState(t, "vi", vrrp.Master, 10*time.Second)
	back, _ := a.lastEvent("vi", vrrp.Master)
	took := back.At.Sub(sent)
	t.Logf("n1 master again %v after the forged advert", took)
	if took > 4*time.Second {
		t.Errorf("n1 master again %v after the forged advert, want about 3 x 300ms + skew", took)
	}
	waitAddr(t, l.nodes[0], labVIP, true, 2*time.Second)
	l.ping(t, labVIP)
	for _, p := range []*proc{a, b} {
		if st := p.instStatus(t, "vi"); st.RxErrors[vrrp.RxIntervalLimit] != 1 {
			t.Errorf("%s: interval_limit counted %d times, want 1", p.name, st.RxErrors[vrrp.RxIntervalLimit])
		}
		if n := p.logCount("advertisement interval above the learned limit"); n != 1 {
			t.Errorf("%s: logged the bounded interval %d times, want once", p.name, n)
		}
	}
}
