package xdp

import (
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

func TestForwardingWarnings(t *testing.T) {
	vs := func(f dataplane.ForwardMode, addrs ...string) dataplane.Service {
		v := dataplane.Service{Name: string(f), Forward: f}
		for _, a := range addrs {
			v.Backends = append(v.Backends, dataplane.Backend{Addr: netip.MustParseAddr(a)})
		}
		return v
	}
	sysctl := func(vals map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			v, ok := vals[p]
			if !ok {
				return nil, fs.ErrNotExist
			}
			return []byte(v + "\n"), nil
		}
	}
	off := sysctl(map[string]string{
		"/proc/sys/net/ipv4/conf/eth0/forwarding": "0",
		"/proc/sys/net/ipv4/conf/eth1/forwarding": "1",
		"/proc/sys/net/ipv6/conf/all/forwarding":  "0",
	})
	on := sysctl(map[string]string{
		"/proc/sys/net/ipv4/conf/eth0/forwarding": "1",
		"/proc/sys/net/ipv4/conf/eth1/forwarding": "1",
		"/proc/sys/net/ipv6/conf/all/forwarding":  "1",
	})
	for _, tc := range []struct {
		name string
		vss  []dataplane.Service
		read func(string) ([]byte, error)
		want []string // substrings, one per warning
	}{
		{"dr needs nothing", []dataplane.Service{vs(dataplane.DirectRouting, "10.0.0.1", "2001:db8::1")}, off, nil},
		{"nat v4", []dataplane.Service{vs(dataplane.NAT, "10.0.0.1")}, off, []string{"IPv4 nat services need forwarding on eth0"}},
		{"tunnel v6 and nat v4", []dataplane.Service{vs(dataplane.Tunnel, "2001:db8::1"), vs(dataplane.NAT, "10.0.0.1")}, off,
			[]string{"IPv4 nat services need forwarding on eth0", "IPv6 tunnel services need forwarding (sysctl net.ipv6.conf.all.forwarding=1)"}},
		{"both modes v4", []dataplane.Service{vs(dataplane.Tunnel, "10.0.0.2"), vs(dataplane.NAT, "10.0.0.1")}, off, []string{"IPv4 nat and tunnel services"}},
		{"forwarding on", []dataplane.Service{vs(dataplane.Tunnel, "10.0.0.2", "2001:db8::1")}, on, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := forwardingWarnings(tc.vss, []string{"eth0", "eth1"}, tc.read)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("warning %q, want it to contain %q", got[i], tc.want[i])
				}
			}
		})
	}
}
