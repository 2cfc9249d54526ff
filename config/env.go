package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SystemEnv returns an Env over the network namespace of the calling
// thread, read through netlink (for xlb check and xlb run).
func SystemEnv() Env { return systemEnv{} }

type systemEnv struct{}

func (systemEnv) InterfaceSubnets(ifname string) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, fmt.Errorf("%w %q", ErrUnknownInterface, ifname)
		}
		return nil, fmt.Errorf("look up interface %q: %w", ifname, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %q: %w", ifname, err)
	}
	var out []netip.Prefix
	add := func(n *net.IPNet) {
		if n == nil {
			return
		}
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			return
		}
		ones, _ := n.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones))
	}
	for _, a := range addrs {
		add(a.IPNet)
	}
	// Routes through the interface without a gateway ("ip route add
	// 10.1.0.0/24 dev eth0", scope link for IPv4) are directly connected
	// too.
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes of %q: %w", ifname, err)
	}
	for _, r := range routes {
		onLink := r.Scope == netlink.SCOPE_LINK || r.Family == unix.AF_INET6
		if onLink && r.Gw == nil && len(r.MultiPath) == 0 && r.Dst != nil && r.Type == unix.RTN_UNICAST {
			add(r.Dst)
		}
	}
	return out, nil
}
