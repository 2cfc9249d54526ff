package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/nldump"
)

// SystemEnv returns a ScriptEnv over the network namespace of the calling
// thread, read through netlink, and the system's files and users (for xlb
// check and xlb run).
func SystemEnv() Env { return systemEnv{} }

func (systemEnv) LookupUser(name string) error {
	_, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		return fmt.Errorf("unknown user %q", name)
	}
	return err
}

func (systemEnv) LookupGroup(name string) error {
	_, err := user.LookupGroup(name)
	if errors.As(err, new(user.UnknownGroupError)) {
		return fmt.Errorf("unknown group %q", name)
	}
	return err
}

func (systemEnv) LookPath(file string) (string, error)     { return exec.LookPath(file) }
func (systemEnv) Lstat(path string) (fs.FileInfo, error)   { return os.Lstat(path) }
func (systemEnv) EvalSymlinks(path string) (string, error) { return filepath.EvalSymlinks(path) }

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
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_ALL) })
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
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(link, netlink.FAMILY_ALL) })
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
