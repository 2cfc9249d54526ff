package health_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
)

// The real server's own stack answers the echo requests; the director
// checks through a ping socket where net.ipv4.ping_group_range lets root
// in, and through a raw socket where it does not (a new namespace's "1 0").
func TestPing(t *testing.T) {
	t.Parallel()
	for _, sock := range []struct{ name, groups string }{{"ping socket", "0 2147483647"}, {"raw socket", "1 0"}} {
		t.Run(sock.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			nettest.Sysctl(t, l.dir, "net.ipv4.ping_group_range", sock.groups)
			for _, target := range []netip.Addr{rs4, rs6} {
				s := labSpec(checktype.Ping, netip.AddrPortFrom(target, 0))
				s.Timeout = time.Second
				if err := l.check(t, s); err != nil {
					t.Errorf("%v: %v", target, err)
				}
			}
			// bindto: the request leaves from the second address.
			s := labSpec(checktype.Ping, netip.AddrPortFrom(none4, 0))
			s.ConnectIP, s.BindTo = rs4b, dir4b
			if err := l.check(t, s); err != nil {
				t.Errorf("connect_ip %v, bindto %v: %v", rs4b, dir4b, err)
			}
			// Nobody there, and a real server that ignores echo requests.
			s = labSpec(checktype.Ping, netip.AddrPortFrom(none4, 0))
			s.Timeout = 300 * time.Millisecond
			if err := l.check(t, s); err == nil || !strings.Contains(err.Error(), "no echo reply") {
				t.Errorf("%v: got %v, want no echo reply", none4, err)
			}
			nettest.Sysctl(t, l.rs, "net.ipv4.icmp_echo_ignore_all", "1")
			nettest.Sysctl(t, l.rs, "net.ipv6.icmp.echo_ignore_all", "1")
			for _, target := range []netip.Addr{rs4, rs6} {
				s := labSpec(checktype.Ping, netip.AddrPortFrom(target, 0))
				s.Timeout = 300 * time.Millisecond
				if err := l.check(t, s); err == nil || !strings.Contains(err.Error(), "no echo reply") {
					t.Errorf("%v ignoring echo: got %v, want no echo reply", target, err)
				}
			}
		})
	}
}
