package scale

import (
	"fmt"
	"strings"
)

// shape is a generated configuration: services x reals NAT virtual
// servers, as a hosting or ingress tier has them.
type shape struct {
	Name     string
	Services int
	Reals    int
	// Check is the health check type ("none" or "tcp") and its interval;
	// Checked is how many real servers have it (all when 0), the others
	// none.
	Check    string
	Interval string
	Checked  int
	// Shared reuses real server addresses across services (every
	// 256th service has the same ones), so that 1,024 x 256 NAT real
	// servers stay within the 65,536 distinct NAT real servers the XDP
	// dataplane holds.
	Shared bool
}

func (s shape) String() string {
	check := s.Check
	if s.Check != "none" {
		n := s.Checked
		if n == 0 {
			n = s.Services * s.Reals
		}
		check = fmt.Sprintf("%d %s checks every %s", n, s.Check, s.Interval)
	} else {
		check = "no checks"
	}
	return fmt.Sprintf("%d services x %d real servers, %s", s.Services, s.Reals, check)
}

// vip is the address of service i: 10.200.0.1, 10.200.0.2, ...
func vip(i int) string { return fmt.Sprintf("10.200.%d.%d", (i+1)/256, (i+1)%256) }

// real is the address of real server j of service i, in 10.201.0.0/16,
// which the real servers' namespace takes as local (any address answers),
// and past its 65,536 addresses in 10.202.0.0/16 and on (distinct: the
// over-limits shapes are only checked).
func (s shape) real(i, j int) string {
	n := i*s.Reals + j
	if s.Shared {
		n = (i%256)*s.Reals + j
	}
	return fmt.Sprintf("10.%d.%d.%d", 201+n/65536, n/256%256, n%256)
}

// header is the configuration's fixed part; with pprof, the daemon serves
// its profiles on 127.0.0.1:6060.
func header(name, pins, socket string, pprof bool) string {
	debug := ""
	if pprof {
		debug = "\n[debug]\npprof_listen = \"127.0.0.1:6060\"\n"
	}
	return fmt.Sprintf(`[global]
router_id = %q

[dataplane]
mode = "xdp"
xdp_mode = "native"
interfaces = ["eth0", "eth1"]
pin_path = %q

[metrics]
listen = "127.0.0.1:9477"

[control]
socket = %q
%s`, name, pins, socket, debug)
}

// config writes the shape's configuration; port is the port of the last
// real server of the last service (a reload changes it; with Shared, a
// port other than 8080 is its weight 2 instead: another port would be one
// NAT real server more than the dataplane holds). With Checked,
// the first Checked real servers (in file order) have the check, the
// others none.
func (s shape) config(head string, port int) string {
	var b strings.Builder
	b.Grow(s.Services * (150 + 55*s.Reals))
	b.WriteString(head)
	checked := s.Checked
	if checked == 0 || s.Check == "none" {
		checked = s.Services * s.Reals
	}
	for i := range s.Services {
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"s%d\"\naddress = %q\nport = 80\nforward = \"nat\"\n", i, vip(i))
		check := s.Check
		if i*s.Reals >= checked {
			check = "none"
		}
		fmt.Fprintf(&b, "[virtual_server.health_check]\ntype = %q\n", check)
		if check != "none" {
			fmt.Fprintf(&b, "interval = %q\n", s.Interval)
		}
		for j := range s.Reals {
			p, weight := 8080, ""
			if i == s.Services-1 && j == s.Reals-1 {
				p = port
				if s.Shared && port != 8080 {
					p, weight = 8080, "weight = 2\n"
				}
			}
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = %q\nport = %d\n%s", s.real(i, j), p, weight)
			if check != "none" && i*s.Reals+j >= checked {
				b.WriteString("[virtual_server.real_server.health_check]\ntype = \"none\"\n")
			}
		}
	}
	return b.String()
}
