package health_test

import (
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
)

// dnsmasq starts Debian's dnsmasq in the real server's namespace on
// addr:53: ok.test has an A record, zone.test is an authoritative zone
// (SOA), other names under test are NXDOMAIN and the rest REFUSED (no
// upstream).
func (l *lab) dnsmasq(t *testing.T, addrs ...string) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Fatal("dnsmasq is not installed (.ci/deps installs dnsmasq-base)")
	}
	args := []string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
		"--user=root", "--group=root", "--pid-file=", "--bind-interfaces", "--port=53",
		"--address=/ok.test/10.1.2.3", "--local=/test/", "--auth-server=ns.zone.test",
		"--auth-zone=zone.test", "--host-record=h.zone.test,10.4.4.4", "--log-queries", "--log-facility=-"}
	for _, a := range addrs {
		args = append(args, "--listen-address="+a)
	}
	l.rs.Start(t, "dnsmasq", args...)
	for _, a := range addrs {
		nettest.WaitFor(t, 10*time.Second, "dnsmasq on "+a, func() error {
			out, err := l.rs.Run("ss", "-Hlun")
			if err == nil && !strings.Contains(out, netip.AddrPortFrom(netip.MustParseAddr(a), 53).String()) {
				return errors.New("not listening yet")
			}
			return err
		})
	}
}

func TestDNS(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	l.dnsmasq(t, "10.77.9.2", "fd77:9::2")
	for _, tc := range []struct {
		name, qtype string
		target      netip.Addr
		wantErr     string
	}{
		{"ok.test", "A", rs4, ""},
		{"ok.test.", "a", rs6, ""},             // a trailing dot, a lower-case type, over IPv6
		{"zone.test", "", rs4, ""},             // SOA, the default type
		{"h.zone.test", "AAAA", rs4, ""},       // NOERROR without an answer (NODATA): keepalived's success
		{"", "", rs4, "REFUSED"},               // keepalived's default ". SOA": dnsmasq has no root
		{"nx.test", "A", rs4, "NXDOMAIN"},      // NXDOMAIN
		{"ok.test", "A", none4, "no response"}, // nobody there
		{"ok.test", "MX", rs4b, "no response"}, // dnsmasq does not listen on .3: port unreachable
	} {
		s := labSpec(checktype.DNS, netip.AddrPortFrom(tc.target, 53))
		s.DNSName, s.DNSType, s.Timeout = tc.name, tc.qtype, 500*time.Millisecond
		err := l.check(t, s)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q %s at %v: %v", tc.name, tc.qtype, tc.target, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q %s at %v: got %v, want an error with %q", tc.name, tc.qtype, tc.target, err, tc.wantErr)
		}
	}
}

func TestDNSBadSpecs(t *testing.T) {
	t.Parallel()
	for _, s := range []health.Spec{{DNSType: "PTR"}, {DNSName: "a..b"}, {DNSName: ".a"}} {
		s.Type, s.Target, s.Interval, s.Timeout, s.Fall, s.Rise = checktype.DNS, netip.MustParseAddrPort("10.0.0.1:53"), time.Second, time.Second, 1, 1
		if err := s.Validate(); err == nil {
			t.Errorf("%+v: valid", s)
		} else {
			t.Logf("%v", err)
		}
	}
}
