package xdp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// linkPinPrefix names pinned XDP links: PinPath/link_<interface>.
const linkPinPrefix = "link_"

// ErrNotBPFFS is returned when the pin path is not on a bpffs.
var ErrNotBPFFS = errors.New("not on a bpffs")

// ensureBPFFS creates dir and checks that it is on a bpffs.
func ensureBPFFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin path: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin path %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return fmt.Errorf("pin path %s: %w (mount one: mount -t bpf bpf %s)", dir, ErrNotBPFFS, filepath.Dir(dir))
	}
	return nil
}

// IsBPFFS reports whether dir is on a bpffs.
func IsBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// attachAll attaches to every configured interface, adopting pinned links,
// and detaches pinned links of interfaces no longer configured.
func (d *Dataplane) attachAll() error {
	want := map[string]bool{}
	for _, name := range d.opts.Interfaces {
		want[name] = true
		if err := d.attach(name); err != nil {
			return err
		}
	}
	if d.opts.PinPath == "" {
		return nil
	}
	pins, _ := filepath.Glob(filepath.Join(d.opts.PinPath, linkPinPrefix+"*"))
	for _, p := range pins {
		name := strings.TrimPrefix(filepath.Base(p), linkPinPrefix)
		if want[name] {
			continue
		}
		if l, err := link.LoadPinnedLink(p, nil); err == nil {
			_ = l.Unpin()
			_ = l.Close()
			d.log.Info("detached from interface no longer configured", "interface", name)
		} else {
			_ = os.Remove(p)
		}
	}
	return nil
}

func (d *Dataplane) attach(name string) error {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("attach to %s: %w", name, err)
	}
	if err := d.objs.XlbDevmapV1.Put(uint32(iface.Index), uint32(iface.Index)); err != nil {
		return fmt.Errorf("devmap %s: %w", name, err)
	}
	pin := ""
	if d.opts.PinPath != "" {
		pin = filepath.Join(d.opts.PinPath, linkPinPrefix+name)
		if a, err := d.adoptLink(pin, iface); err == nil {
			d.links[name] = a
			d.log.Info("adopted XDP link", "interface", name, "mode", a.mode)
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("pinned XDP link not reusable, attaching anew", "interface", name, "error", err)
		}
	}
	a, err := d.attachNew(iface)
	if err != nil {
		return err
	}
	if pin != "" {
		if err := a.link.Pin(pin); err != nil {
			a.link.Close()
			return fmt.Errorf("pin XDP link of %s: %w", name, err)
		}
	}
	d.links[name] = a
	return nil
}

// adoptLink takes over the link pinned by a previous run and swaps in the
// newly loaded program, atomically: forwarding never stops.
func (d *Dataplane) adoptLink(pin string, iface *net.Interface) (*attached, error) {
	if _, err := os.Stat(pin); err != nil {
		return nil, err
	}
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		_ = os.Remove(pin)
		return nil, fmt.Errorf("load pinned link: %w", err)
	}
	fail := func(err error) (*attached, error) {
		_ = l.Unpin()
		l.Close()
		return nil, err
	}
	info, err := l.Info()
	if err != nil {
		return fail(err)
	}
	x := info.XDP()
	if x == nil || int(x.Ifindex) != iface.Index {
		return fail(fmt.Errorf("pinned link is for another interface"))
	}
	mode, err := xdpMode(iface.Index)
	if err != nil {
		return fail(err)
	}
	if d.opts.Mode != dataplane.AttachAuto && string(d.opts.Mode) != mode {
		return fail(fmt.Errorf("pinned link is %s, %s wanted", mode, d.opts.Mode))
	}
	if err := l.Update(d.objs.XlbXdp); err != nil {
		return fail(fmt.Errorf("update program: %w", err))
	}
	return &attached{ifindex: iface.Index, mode: mode, link: l}, nil
}

func (d *Dataplane) attachNew(iface *net.Interface) (*attached, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: d.objs.XlbXdp, Interface: iface.Index, Flags: flags})
	}
	switch d.opts.Mode {
	case dataplane.AttachNative:
		l, err := try(link.XDPDriverMode)
		if err != nil {
			return nil, fmt.Errorf("attach native XDP to %s: %w", iface.Name, err)
		}
		return &attached{ifindex: iface.Index, mode: "native", link: l}, nil
	case dataplane.AttachGeneric:
		l, err := try(link.XDPGenericMode)
		if err != nil {
			return nil, fmt.Errorf("attach generic XDP to %s: %w", iface.Name, err)
		}
		return &attached{ifindex: iface.Index, mode: "generic", link: l}, nil
	case dataplane.AttachAuto:
		l, err := try(link.XDPDriverMode)
		if err == nil {
			d.log.Info("attached XDP", "interface", iface.Name, "mode", "native")
			return &attached{ifindex: iface.Index, mode: "native", link: l}, nil
		}
		d.log.Warn("native XDP not available, falling back to generic XDP", "interface", iface.Name, "error", err)
		l, gerr := try(link.XDPGenericMode)
		if gerr != nil {
			return nil, fmt.Errorf("attach XDP to %s: native: %v; generic: %w", iface.Name, err, gerr)
		}
		d.log.Info("attached XDP", "interface", iface.Name, "mode", "generic")
		return &attached{ifindex: iface.Index, mode: "generic", link: l}, nil
	}
	return nil, fmt.Errorf("unknown XDP attach mode %q", d.opts.Mode)
}

// xdpMode reads how XDP is attached to an interface.
func xdpMode(ifindex int) (string, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return "", fmt.Errorf("interface %d: %w", ifindex, err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return "", fmt.Errorf("interface %d has no XDP program", ifindex)
	}
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV, nl.XDP_ATTACHED_HW:
		return "native", nil
	case nl.XDP_ATTACHED_SKB:
		return "generic", nil
	}
	return "", fmt.Errorf("interface %d: XDP attach mode %d", ifindex, x.AttachMode)
}

// ifaceMAC returns the MAC of an interface (cached).
func (d *Dataplane) ifaceMAC(ifindex int) ([]byte, error) {
	if m, ok := d.smacs[ifindex]; ok {
		return m, nil
	}
	iface, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, err
	}
	d.smacs[ifindex] = iface.HardwareAddr
	return iface.HardwareAddr, nil
}
