package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// parseAddr parses an address usable as a VIP, real server or peer.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	return a, checkAddr(a)
}

func checkAddr(a netip.Addr) error {
	switch {
	case a.Zone() != "":
		return fmt.Errorf("address %s: zones are not supported", a)
	case a.Is4In6():
		return fmt.Errorf("address %s: write IPv4 addresses as %s", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Errorf("address %s is unspecified", a)
	case a.IsMulticast():
		return fmt.Errorf("address %s is multicast", a)
	}
	return nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkName validates the name of a script, instance, group or service: it
// is used in entries split on white space, in logs and in metric labels.
func checkName(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q must not contain white space or control characters", s)
		}
	}
	return nil
}

// checkIfName applies the kernel's rules for interface names (dev_valid_name).
func checkIfName(s string) error {
	if s == "" {
		return fmt.Errorf("empty interface name")
	}
	if len(s) > 15 {
		return fmt.Errorf("interface name %q is longer than 15 bytes", s)
	}
	if s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\v\f\r") {
		return fmt.Errorf("invalid interface name %q", s)
	}
	return nil
}

// checkListen checks a metrics listen address: HOST:PORT, or "".
func checkListen(s string) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT (\"\" disables metrics)", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("invalid port %q", port)
	}
	if strings.ContainsAny(host, " \t") {
		return fmt.Errorf("invalid host %q", host)
	}
	return nil
}

// checkLoopbackListen checks a debug listen address: "", or HOST:PORT on
// loopback (the profiles are not for the network).
func checkLoopbackListen(s string) error {
	if s == "" {
		return nil
	}
	if err := checkListen(s); err != nil {
		return fmt.Errorf("%q is not HOST:PORT (\"\" turns the profiles off)", s)
	}
	host, _, _ := net.SplitHostPort(s)
	if host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return fmt.Errorf("%q: only a loopback address (127.0.0.1, ::1, localhost) may serve the profiles", s)
	}
	return nil
}

// checkURLPath checks the path of an HTTP check.
func checkURLPath(s string) error {
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q must start with \"/\" and contain no white space", s)
	}
	return nil
}

func checkRegexp(s string) error {
	_, err := regexp.Compile(s)
	return err
}

func checkNoSpace(s string) error {
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q contains white space", s)
	}
	return nil
}
