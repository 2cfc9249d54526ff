package xdp

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// What the XDP dataplane needs of the host besides its program: a bpffs for
// its pins, and the sysctls its NAT and tunnel next hops depend on.

// bpffsRoot is where a bpffs is conventionally mounted.
const bpffsRoot = "/sys/fs/bpf"

// mountPinPath makes sure the pin path is on a bpffs, mounting one there if
// needed (Options.MountBPFFS).
func mountPinPath(path string, log *slog.Logger) error {
	// Under /sys/fs/bpf (the default), a bpffs belongs on /sys/fs/bpf
	// itself; elsewhere on the pin path.
	mountAt := path
	if rel, err := filepath.Rel(bpffsRoot, path); err == nil && !strings.HasPrefix(rel, "..") {
		mountAt = bpffsRoot
	}
	if _, err := os.Stat(mountAt); err != nil {
		if err := os.MkdirAll(mountAt, 0o700); err != nil {
			return fmt.Errorf("pin path %s: %w", path, err)
		}
	}
	if !IsBPFFS(mountAt) {
		if err := unix.Mount("bpf", mountAt, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("pin path %s is not on a bpffs and mounting one failed (%w): mount one with `mount -t bpf bpf %s` or set [dataplane] pin_path to a directory on a bpffs", path, err, mountAt)
		}
		log.Warn("mounted a bpffs for the pin path: pinned state lives as long as this mount (inside `ip netns exec`, as long as the process)", "mount", mountAt)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("pin path %s: %w", path, err)
	}
	return nil
}

// PrepareHost implements dataplane.HostPreparer: it sets and checks what
// forwarding needs of the kernel. While the program waits for a NAT next
// hop to resolve it leaves the translated packet to the kernel, and a reply
// translated to the VIP has a source that is local to the director, which
// the kernel forwards only with accept_local: that is set on the attached
// interfaces. Forwarding itself is the operator's choice (it changes how
// the host treats redirects and router advertisements): a warning is
// logged when it is off.
func (d *Dataplane) PrepareHost(services []dataplane.Service) {
	for _, s := range services {
		if s.Forward != dataplane.NAT {
			continue
		}
		for _, ifname := range d.opts.Interfaces {
			path := "/proc/sys/net/ipv4/conf/" + ifname + "/accept_local"
			if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
				d.log.Warn("NAT: cannot set accept_local", "interface", ifname, "error", err)
			}
		}
		break
	}
	for _, w := range forwardingWarnings(services, d.opts.Interfaces, os.ReadFile) {
		d.log.Warn(w)
	}
}

// forwardingWarnings says which forwarding sysctls NAT and tunnel services
// need and find off. Their next hops come from bpf_fib_lookup, which answers
// only when the kernel would forward the packet: IPv4 forwarding on the
// receiving interface, IPv6 forwarding globally. Without it tunnelled
// packets, and NAT packets and replies, go to the kernel (pass_fib).
func forwardingWarnings(services []dataplane.Service, interfaces []string, read func(string) ([]byte, error)) []string {
	need4, need6 := map[dataplane.ForwardMode]bool{}, map[dataplane.ForwardMode]bool{}
	for _, s := range services {
		if s.Forward != dataplane.NAT && s.Forward != dataplane.Tunnel {
			continue
		}
		for _, b := range s.Backends {
			if b.Addr.Is4() {
				need4[s.Forward] = true
			} else {
				need6[s.Forward] = true
			}
		}
	}
	off := func(path string) bool {
		b, err := read(path)
		return err == nil && strings.TrimSpace(string(b)) != "1"
	}
	modes := func(m map[dataplane.ForwardMode]bool) string {
		var l []string
		for _, f := range []dataplane.ForwardMode{dataplane.NAT, dataplane.Tunnel} {
			if m[f] {
				l = append(l, string(f))
			}
		}
		return strings.Join(l, " and ")
	}
	var out []string
	if len(need4) > 0 {
		for _, ifname := range interfaces {
			if off("/proc/sys/net/ipv4/conf/" + ifname + "/forwarding") {
				out = append(out, fmt.Sprintf("IPv4 %s services need forwarding on %s (sysctl net.ipv4.conf.%s.forwarding=1, or net.ipv4.ip_forward=1): until then their packets go to the kernel (pass_fib)", modes(need4), ifname, ifname))
			}
		}
	}
	if len(need6) > 0 && off("/proc/sys/net/ipv6/conf/all/forwarding") {
		out = append(out, fmt.Sprintf("IPv6 %s services need forwarding (sysctl net.ipv6.conf.all.forwarding=1): until then their packets go to the kernel (pass_fib)", modes(need6)))
	}
	return out
}
