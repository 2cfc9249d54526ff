package ipvs

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

func svc(addr string, sched dataplane.Scheduler, fwd dataplane.ForwardMode, backends ...dataplane.Backend) dataplane.Service {
	a := netip.MustParseAddr(addr)
	return dataplane.Service{Name: "web", Key: dataplane.ServiceKey{Addr: a, Port: 80, Proto: dataplane.TCP},
		Scheduler: sched, Forward: fwd, Enabled: true, Backends: backends}
}

func be(addr string, port uint16, w uint32) dataplane.Backend {
	return dataplane.Backend{Addr: netip.MustParseAddr(addr), Port: port, Weight: w}
}

func TestCheckRejectsWhatIPVSCannotDo(t *testing.T) {
	gue := svc("192.0.2.100", dataplane.RoundRobin, dataplane.Tunnel, be("192.0.2.11", 80, 1))
	gue.Tunnel = dataplane.TunnelOptions{Encap: dataplane.EncapGUE, GUEPort: 5555}
	heavy := svc("192.0.2.101", dataplane.WeightedRoundRobin, dataplane.DirectRouting, be("192.0.2.11", 80, 70000))
	mixed := svc("192.0.2.102", dataplane.RoundRobin, dataplane.Tunnel, be("2001:db8::11", 80, 1))
	noIPVS := svc("192.0.2.104", "xlb-test-only", dataplane.NAT, be("192.0.2.11", 80, 1)) // in no table
	for _, tc := range []struct {
		s    dataplane.Service
		want string
	}{
		{gue, "GUE"},
		{noIPVS, "IPVS has no such scheduler"},
		{heavy, "weight 70000 above 65535"},
		{mixed, "other address family"},
	} {
		err := check([]dataplane.Service{tc.s})
		if !errors.Is(err, dataplane.ErrNotSupported) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check(%s): %v, want ErrNotSupported mentioning %q", tc.s.Key, err, tc.want)
		}
	}
	ipip := svc("192.0.2.103", dataplane.MaglevHashing, dataplane.Tunnel, be("192.0.2.11", 80, MaxWeight))
	ipip.Tunnel = dataplane.TunnelOptions{Encap: dataplane.EncapIPIP}
	if err := check([]dataplane.Service{ipip, svc("2001:db8::1", dataplane.SourceHashing, dataplane.NAT, be("2001:db8::11", 8080, 0))}); err != nil {
		t.Errorf("check rejected a valid set: %v", err)
	}
}

// The forwarding methods of dataplane.ForwardTable are IPVS's.
func TestForwardTableIsIPVS(t *testing.T) {
	want := map[dataplane.ForwardMode]uint32{
		dataplane.DirectRouting: ipvs.ConnFwdDirectRoute, dataplane.NAT: ipvs.ConnFwdMasq, dataplane.Tunnel: ipvs.ConnFwdTunnel,
	}
	for _, f := range dataplane.ForwardTable {
		if _, ok := want[f.Name]; !ok {
			t.Errorf("forward %s: no IPVS method known to this test", f.Name)
		}
		if got := toDestination(svc("192.0.2.1", dataplane.RoundRobin, f.Name), be("192.0.2.11", 80, 1)).ConnectionFlags; got != want[f.Name] {
			t.Errorf("forward %s: IPVS method %#x, want %#x", f.Name, got, want[f.Name])
		}
	}
}

func TestToService(t *testing.T) {
	s := svc("192.0.2.100", dataplane.SourceHashing, dataplane.DirectRouting)
	s.Persistence = 1500 * time.Millisecond
	got := toService(s)
	if got.Flags != flagPersistent || got.Timeout != 2 || got.Netmask != 0xffffffff ||
		got.AddressFamily != unix.AF_INET || got.SchedName != "sh" || got.Protocol != unix.IPPROTO_TCP ||
		got.Address.String() != "192.0.2.100" || len(got.Address) != 4 {
		t.Errorf("toService(persistent v4) = %+v", got)
	}
	s6 := svc("2001:db8::1", dataplane.RoundRobin, dataplane.NAT)
	s6.Key.Proto = dataplane.UDP
	got = toService(s6)
	if got.Flags != 0 || got.Timeout != 0 || got.Netmask != 128 || got.AddressFamily != unix.AF_INET6 || got.Protocol != unix.IPPROTO_UDP {
		t.Errorf("toService(v6) = %+v", got)
	}
	for _, tc := range []struct {
		fwd  dataplane.ForwardMode
		flag uint32
	}{{dataplane.DirectRouting, ipvs.ConnFwdDirectRoute}, {dataplane.NAT, ipvs.ConnFwdMasq}, {dataplane.Tunnel, ipvs.ConnFwdTunnel}} {
		d := toDestination(svc("192.0.2.100", dataplane.RoundRobin, tc.fwd), be("192.0.2.11", 8080, 7))
		if d.ConnectionFlags != tc.flag || d.Weight != 7 || d.Port != 8080 || d.Address.String() != "192.0.2.11" {
			t.Errorf("toDestination(%s) = %+v", tc.fwd, d)
		}
	}
}

func TestServiceDiff(t *testing.T) {
	want := toService(svc("192.0.2.100", dataplane.RoundRobin, dataplane.NAT))
	cur := *want
	cur.Flags |= 0x0002 // IP_VS_SVC_F_HASHED, set by the kernel
	if d := serviceDiff(&cur, want); d != "" {
		t.Errorf("the kernel's hashed flag counts as a change: %s", d)
	}
	cur.SchedName, cur.Flags, cur.Timeout = "wlc", flagPersistent, 300
	if d := serviceDiff(&cur, want); d != "scheduler wlc -> rr, flags 0x1 -> 0x0, persistence 300s -> 0s" {
		t.Errorf("diff = %q", d)
	}
}

// Every scheduler goes to IPVS by its name (ipvsadm -s), and thresholds
// to the real server's u_threshold and l_threshold (ipvsadm -x, -y).
func TestSchedulersAndThresholds(t *testing.T) {
	for _, spec := range dataplane.SchedulerTable {
		if got := toService(svc("192.0.2.100", spec.Name, dataplane.NAT)).SchedName; got != string(spec.Name) {
			t.Errorf("scheduler %s: IPVS name %q", spec.Name, got)
		}
	}
	b := be("192.0.2.11", 8080, 7)
	b.UpperThreshold, b.LowerThreshold = 100, 20
	want := toDestination(svc("192.0.2.100", dataplane.ShortestExpectedDelay, dataplane.NAT), b)
	if want.UpperThreshold != 100 || want.LowerThreshold != 20 {
		t.Fatalf("toDestination: thresholds %d/%d, want 100/20", want.UpperThreshold, want.LowerThreshold)
	}
	cur := *want
	cur.ConnectionFlags |= 0x0100 // a flag beyond the forwarding method, set by the kernel
	if d := destDiff(&cur, want); d != "" {
		t.Errorf("an equal real server differs: %s", d)
	}
	cur.Weight, cur.UpperThreshold, cur.LowerThreshold = 3, 0, 0
	if d := destDiff(&cur, want); d != "weight 3 -> 7, thresholds 0/0 -> 100/20" {
		t.Errorf("diff = %q", d)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	for _, s := range []dataplane.Service{svc("192.0.2.100", dataplane.RoundRobin, dataplane.NAT), svc("2001:db8::1", dataplane.RoundRobin, dataplane.NAT)} {
		k, ok := serviceKey(toService(s))
		if !ok || k != s.Key {
			t.Errorf("serviceKey(toService(%v)) = %v %v", s.Key, k, ok)
		}
	}
	b := be("192.0.2.11", 8080, 1)
	if k, ok := destKey(toDestination(svc("192.0.2.100", dataplane.RoundRobin, dataplane.NAT), b)); !ok || k != b.Key() {
		t.Errorf("destKey = %v %v, want %v", k, ok, b.Key())
	}
	if _, ok := serviceKey(&ipvs.Service{FWMark: 7, AddressFamily: unix.AF_INET}); ok {
		t.Error("a firewall-mark service has a key")
	}
}
