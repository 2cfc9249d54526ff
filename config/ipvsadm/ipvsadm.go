// Package ipvsadm converts IPVS rules saved by `ipvsadm-save -n` (or
// `ipvsadm -Sn`) into xlb's TOML: each -A (service) with its -a (real
// servers) becomes a [[virtual_server]], with health checks off (type
// "none"), as static IPVS rules have none.
package ipvsadm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/config/keepalived"
	"github.com/xlb-dev/xlb/dataplane"
)

// Result is an import's outcome, as keepalived.Result.
type Result struct {
	TOML  []byte
	Diags []keepalived.Diag
}

// Failed reports whether an error was found.
func (r *Result) Failed() bool {
	for _, d := range r.Diags {
		if d.Severity == keepalived.Error {
			return true
		}
	}
	return false
}

type svcKey struct {
	proto string
	addr  netip.AddrPort
}

type svc struct {
	key     svcKey
	pos     keepalived.Pos
	sched   string
	persist int
	reals   []real
}

type real struct {
	addr   netip.AddrPort
	fwd    string
	tun    string // "ipip" or "gue PORT" for tunnels
	weight int
	upper  int // -x
	lower  int // -y
	pos    keepalived.Pos
}

// maxInput bounds what is read.
const maxInput = 32 << 20

// Import reads ipvsadm-save output from r (name is used in diagnostics).
func Import(name string, r io.Reader) (*Result, error) {
	res := &Result{}
	diag := func(sev keepalived.Severity, line int, kw, format string, args ...any) {
		res.Diags = append(res.Diags, keepalived.Diag{Pos: keepalived.Pos{File: name, Line: line}, Severity: sev, Keyword: kw, Msg: fmt.Sprintf(format, args...)})
	}
	sc := bufio.NewScanner(io.LimitReader(r, maxInput))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	var order []svcKey
	svcs := map[svcKey]*svc{}
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		r, err := parseRule(f)
		if err != nil {
			diag(keepalived.Error, line, f[0], "%v", err)
			continue
		}
		for _, w := range r.ignored {
			diag(keepalived.Warning, line, w, "ignored: %s", ignoredWhy[w])
		}
		if r.unsupported != "" {
			diag(keepalived.Error, line, r.unsupportedOpt, "not supported by xlb: %s", r.unsupported)
			continue
		}
		switch r.cmd {
		case "-A":
			if _, dup := svcs[r.key]; dup {
				diag(keepalived.Error, line, "-A", "service %s %s is added twice", r.key.proto, r.key.addr)
				continue
			}
			s := &svc{key: r.key, pos: keepalived.Pos{File: name, Line: line}, sched: r.sched, persist: r.persist}
			svcs[r.key] = s
			order = append(order, r.key)
		case "-a":
			s := svcs[r.key]
			if s == nil {
				diag(keepalived.Error, line, "-a", "no service %s %s was added before", r.key.proto, r.key.addr)
				continue
			}
			tun := ""
			if r.fwd == "tunnel" {
				tun = "ipip"
				if r.tunType == "gue" {
					tun = fmt.Sprintf("gue %d", r.tunPort)
				}
			}
			s.reals = append(s.reals, real{r.real, r.fwd, tun, r.weight, r.upper, r.lower, keepalived.Pos{File: name, Line: line}})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	doc := &keepalived.Doc{Comments: []string{"Imported from " + name + " (ipvsadm-save -n) by xlb import ipvsadm.",
		"Static IPVS rules have no health checks: each service's check is type \"none\"."}}
	dp := &keepalived.Table{Name: "dataplane", Comments: []string{"The rules came from the kernel's IPVS; for the XDP fast path set mode = \"auto\" and list the interfaces."}}
	dp.Set("mode", "ipvs", "")
	doc.Tables = append(doc.Tables, dp)
	for _, k := range order {
		s := svcs[k]
		t := &keepalived.Table{Name: "virtual_server", Array: true, Src: s.pos, Comments: []string{fmt.Sprintf("-A %s %s, %s", k.proto, k.addr, s.pos)}}
		name := k.addr.String()
		if k.proto == "udp" {
			name += "/udp"
		}
		t.Set("name", name, "")
		t.Set("address", k.addr.Addr().String(), "")
		t.Set("port", int(k.addr.Port()), "")
		t.Set("protocol", k.proto, "")
		t.Set("scheduler", s.sched, "")
		fwd, tun := "", ""
		for _, r := range s.reals {
			if fwd == "" {
				fwd, tun = r.fwd, r.tun
			} else if r.fwd != fwd || r.tun != tun {
				diag(keepalived.Error, r.pos.Line, "-a", "%s: forwarding %s %s differs from the service's other real servers (%s %s): xlb forwards one way per service", r.addr, r.fwd, r.tun, fwd, tun)
			}
		}
		if fwd == "" {
			fwd = "dr"
		}
		t.Set("forward", fwd, "")
		if port, ok := strings.CutPrefix(tun, "gue "); ok {
			n, _ := strconv.Atoi(port)
			t.Set("tunnel_type", "gue", "")
			if n > 0 {
				t.Set("tunnel_port", n, "")
			}
		}
		if s.persist > 0 {
			t.Set("persistence_timeout", keepalived.Duration(time.Duration(s.persist)*time.Second), "")
		}
		hc := &keepalived.Table{Name: "virtual_server.health_check"}
		hc.Set("type", "none", "")
		t.Tables = append(t.Tables, hc)
		for _, r := range s.reals {
			rt := &keepalived.Table{Name: "virtual_server.real_server", Array: true, Src: r.pos, Comments: []string{fmt.Sprintf("-a, %s", r.pos)}}
			rt.Set("address", r.addr.Addr().String(), "")
			port := int(r.addr.Port())
			if fwd != "nat" && port != int(k.addr.Port()) {
				diag(keepalived.Warning, r.pos.Line, "-r", "%s: direct routing and tunnels keep the service port %d", r.addr, k.addr.Port())
				port = int(k.addr.Port())
			}
			rt.Set("port", port, "")
			rt.Set("weight", r.weight, "")
			if r.upper > 0 {
				rt.Set("upper_threshold", r.upper, "")
			}
			if r.lower > 0 {
				rt.Set("lower_threshold", r.lower, "")
			}
			t.Tables = append(t.Tables, rt)
		}
		doc.Tables = append(doc.Tables, t)
	}
	if res.Failed() {
		return res, nil
	}
	out := doc.Render()
	if _, err := config.Parse("imported.toml", out, nil); err != nil {
		var errs *config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs.List {
				diag(keepalived.Error, 0, "", "xlb refuses the converted configuration: %s", e.Msg)
			}
		} else {
			diag(keepalived.Error, 0, "", "xlb refuses the converted configuration: %v", err)
		}
		return res, nil
	}
	res.TOML = out
	return res, nil
}

type rule struct {
	cmd            string
	key            svcKey
	sched          string
	persist        int
	real           netip.AddrPort
	fwd            string
	weight         int
	upper, lower   int // -x, -y
	tunType        string
	tunPort        int
	ignored        []string
	unsupported    string
	unsupportedOpt string
}

var ignoredWhy = map[string]string{
	"-M": "xlb keeps persistence per client address only (a host netmask is the default)",
}

// parseRule parses one ipvsadm command line (ipvsadm-save writes long
// options only for what has no short one).
func parseRule(f []string) (*rule, error) {
	r := &rule{sched: "wlc", fwd: "dr", weight: 1}
	switch f[0] {
	case "-A", "--add-service":
		r.cmd = "-A"
	case "-a", "--add-server":
		r.cmd = "-a"
	default:
		return nil, fmt.Errorf("unknown command %q (ipvsadm-save writes -A and -a)", f[0])
	}
	unsup := func(opt, why string) {
		if r.unsupported == "" {
			r.unsupported, r.unsupportedOpt = why, opt
		}
	}
	haveKey := false
	for i := 1; i < len(f); i++ {
		opt := f[i]
		val := func() (string, error) {
			if i+1 >= len(f) {
				return "", fmt.Errorf("%s needs a value", opt)
			}
			i++
			return f[i], nil
		}
		switch opt {
		case "-t", "--tcp-service", "-u", "--udp-service":
			v, err := val()
			if err != nil {
				return nil, err
			}
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return nil, fmt.Errorf("%s %q: want ADDR:PORT (ipvsadm-save -n)", opt, v)
			}
			r.key = svcKey{proto: map[bool]string{true: "tcp", false: "udp"}[opt == "-t" || opt == "--tcp-service"], addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
			haveKey = true
		case "--sctp-service":
			unsup(opt, "xlb balances tcp and udp")
			i++
		case "-f", "--fwmark-service":
			unsup(opt, "xlb has no firewall-mark services")
			i++
		case "-s", "--scheduler":
			v, err := val()
			if err != nil {
				return nil, err
			}
			if s, ok := dataplane.SchedulerOfIPVS(v); ok {
				r.sched = string(s)
			} else {
				unsup(opt, fmt.Sprintf("scheduler %q (xlb has %s)", v, keepalived.SchedulerList()))
			}
		case "-p", "--persistent":
			r.persist = 300 // ipvsadm's default
			if i+1 < len(f) && !strings.HasPrefix(f[i+1], "-") {
				n, err := strconv.Atoi(f[i+1])
				if err != nil || n < 1 {
					return nil, fmt.Errorf("-p %q: want seconds", f[i+1])
				}
				r.persist = n
				i++
			}
		case "-M", "--netmask":
			v, err := val()
			if err != nil {
				return nil, err
			}
			if v != "255.255.255.255" && v != "128" {
				unsup(opt, fmt.Sprintf("persistence netmask %s (xlb keeps persistence per client address)", v))
			}
		case "-b", "--sched-flags", "--pe":
			v, err := val()
			if err != nil {
				return nil, err
			}
			unsup(opt, fmt.Sprintf("%s %s", opt, v))
		case "-o", "--ops":
			unsup(opt, "xlb has no one-packet scheduling")
		case "-r", "--real-server":
			v, err := val()
			if err != nil {
				return nil, err
			}
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return nil, fmt.Errorf("-r %q: want ADDR:PORT (ipvsadm-save -n)", v)
			}
			r.real = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		case "-g", "--gatewaying":
			r.fwd = "dr"
		case "-m", "--masquerading":
			r.fwd = "nat"
		case "-i", "--ipip":
			r.fwd = "tunnel"
		case "-w", "--weight":
			v, err := val()
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 65535 {
				return nil, fmt.Errorf("-w %q: want 0..65535", v)
			}
			r.weight = n
		case "-x", "--u-threshold", "-y", "--l-threshold":
			v, err := val()
			if err != nil {
				return nil, err
			}
			// ipvsadm reads them as 0..INT_MAX. ipvsadm-save writes
			// none (print_service_entry), but a rules file for
			// ipvsadm -R may have them.
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > math.MaxInt32 {
				return nil, fmt.Errorf("%s %q: want 0..%d", opt, v, math.MaxInt32)
			}
			if opt == "-x" || opt == "--u-threshold" {
				r.upper = n
			} else {
				r.lower = n
			}
		case "--tun-type":
			v, err := val()
			if err != nil {
				return nil, err
			}
			if slices.Contains(dataplane.Encaps, dataplane.Encap(v)) {
				r.tunType = v
			} else {
				unsup(opt, fmt.Sprintf("tunnel type %q (xlb has ipip and gue)", v))
			}
		case "--tun-port":
			v, err := val()
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("--tun-port %q: want 1..65535", v)
			}
			r.tunPort = n
		case "--tun-nocsum", "--tun-csum", "--tun-remcsum":
			unsup(opt, "xlb has no GUE checksum options")
		default:
			return nil, fmt.Errorf("unknown option %q", opt)
		}
	}
	if !haveKey && r.unsupported == "" {
		return nil, errors.New("no -t or -u service")
	}
	if r.cmd == "-a" && !r.real.IsValid() && r.unsupported == "" {
		return nil, errors.New("-a without -r")
	}
	return r, nil
}
