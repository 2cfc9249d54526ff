package xdp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/nldump"
)

// What the program checks of the packets it forwards, as the kernel's
// input path would (bpf/lib/checks.h), needs to know the interfaces it is
// attached to: their MACs and those of the devices stacked on them (VLAN
// devices, macvlans such as VRRP's vmac, the bridge they are a port of),
// their reverse-path filter setting, and the namespace's local IPv4
// addresses. The entries are written before the program is attached and
// kept current from netlink's link, address and netconf (sysctl)
// notifications, and again at every Sync.

// stackedTypes are the device types whose frames arrive through the
// device they sit on, with their own MAC.
var stackedTypes = map[string]bool{"vlan": true, "macvlan": true, "macvtap": true}

// ifaceState is what xlb_ifaces_v1, xlb_ifslots_v1, xlb_if_macs_v1 and
// xlb_local4_v1 hold.
type ifaceState struct {
	ifaces map[uint32]bpfXlbIface
	slots  map[uint32]bpfXlbIface // the attached interfaces' by ifindex % ifaceSlots
	macs   map[bpfXlbIfMac]uint32
	local4 map[[4]byte]uint32
	// Of the attached interfaces named: their ifindex, and those missing.
	index   map[string]int
	missing []string
}

// ifaceSync keeps the interface maps current.
type ifaceSync struct {
	mu      sync.Mutex
	written *ifaceState // nil until read back from the maps
	warned  map[string]string
}

// sysctlReader reads a sysctl file (tests replace it).
type sysctlReader func(path string) ([]byte, error)

// rpFilter is the reverse-path filter mode the kernel applies to packets
// received on ifname: max(conf/all, conf/IF) (IN_DEV_MAXCONF).
func rpFilter(read sysctlReader, ifname string) (uint8, error) {
	var mode uint8
	for _, dev := range []string{"all", ifname} {
		v, err := sysctlInt(read, "/proc/sys/net/ipv4/conf/"+dev+"/rp_filter")
		if err != nil {
			return 0, err
		}
		mode = max(mode, uint8(min(max(v, 0), 2)))
	}
	return mode, nil
}

func sysctlInt(read sysctlReader, path string) (int, error) {
	b, err := read(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// desiredIfaces computes the entries for the attached interfaces named; one
// that does not exist (any more) is left out, in want.missing.
func desiredIfaces(names []string, links []netlink.Link, addrs []netlink.Addr, read sysctlReader) (*ifaceState, error) {
	want := &ifaceState{ifaces: map[uint32]bpfXlbIface{}, slots: map[uint32]bpfXlbIface{}, macs: map[bpfXlbIfMac]uint32{}, local4: map[[4]byte]uint32{}, index: map[string]int{}}
	byName := make(map[string]netlink.Link, len(links))
	byIndex := make(map[int]netlink.Link, len(links))
	children := map[int][]netlink.Link{}
	for _, l := range links {
		a := l.Attrs()
		byName[a.Name], byIndex[a.Index] = l, l
		if stackedTypes[l.Type()] && a.ParentIndex > 0 {
			children[a.ParentIndex] = append(children[a.ParentIndex], l)
		}
	}
	for _, name := range names {
		l, ok := byName[name]
		if !ok {
			want.missing = append(want.missing, name)
			continue
		}
		a := l.Attrs()
		want.index[name] = a.Index
		rp, err := rpFilter(read, name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		idx := uint32(a.Index)
		e := bpfXlbIface{RpFilter: rp, Flags: uint8(bpfXlbIfaceFlagsXLB_IF_F_ATTACHED), Parent: idx, Ifindex: idx}
		copy(e.Mac[:], a.HardwareAddr)
		want.ifaces[idx] = e
		// The slot goes to the lowest ifindex; another one with the same
		// slot is found in xlb_ifaces_v1 (a hash lookup).
		if old, taken := want.slots[idx%ifaceSlots]; !taken || old.Ifindex > idx {
			want.slots[idx%ifaceSlots] = e
		}
		// Stacked devices, and those stacked on them (a macvlan on a VLAN
		// device), and the bridge or bond it is a port of.
		stacked := []netlink.Link{}
		for queue := []int{a.Index}; len(queue) > 0; queue = queue[1:] {
			for _, c := range children[queue[0]] {
				stacked = append(stacked, c)
				queue = append(queue, c.Attrs().Index)
			}
		}
		if m, ok := byIndex[a.MasterIndex]; ok && a.MasterIndex > 0 {
			stacked = append(stacked, m)
		}
		for _, c := range stacked {
			ca := c.Attrs()
			if _, taken := want.ifaces[uint32(ca.Index)]; !taken {
				ce := bpfXlbIface{Parent: idx, Ifindex: uint32(ca.Index)}
				copy(ce.Mac[:], ca.HardwareAddr)
				want.ifaces[uint32(ca.Index)] = ce
			}
			if len(ca.HardwareAddr) == 6 && !slicesEqual(ca.HardwareAddr, a.HardwareAddr) {
				k := bpfXlbIfMac{Ifindex: idx}
				copy(k.Mac[:], ca.HardwareAddr)
				want.macs[k] = uint32(ca.Index)
			}
		}
	}
	for _, ad := range addrs {
		if ip4 := ad.IP.To4(); ip4 != nil {
			want.local4[[4]byte(ip4)] = uint32(ad.LinkIndex)
		}
	}
	return want, nil
}

func slicesEqual(a, b net.HardwareAddr) bool { return string(a) == string(b) }

// syncIfaces writes the interface maps from the links, addresses and
// sysctls of the dataplane's network namespace (the caller's thread must
// be in it).
func (d *Dataplane) syncIfaces() error {
	if len(d.opts.Interfaces) == 0 {
		return nil
	}
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	want, err := desiredIfaces(d.opts.Interfaces, links, addrs, os.ReadFile)
	if err != nil {
		return err
	}
	if len(want.missing) == len(d.opts.Interfaces) {
		return fmt.Errorf("interfaces %v: not found", want.missing)
	}
	if len(want.ifaces) > maxIfaceEntries || len(want.macs) > maxIfaceEntries {
		return fmt.Errorf("%d interfaces and %d MACs to check, at most %d each", len(want.ifaces), len(want.macs), maxIfaceEntries)
	}
	if len(want.local4) > maxLocalAddrs {
		d.log.Warn("more local IPv4 addresses than xlb checks sources against: the rest are not refused as sources", "addresses", len(want.local4), "checked", maxLocalAddrs)
	}
	s := &d.ifSync
	s.mu.Lock()
	defer s.mu.Unlock()
	d.warnIfaces(want)
	if s.written == nil {
		if s.written, err = d.readIfaces(); err != nil {
			return err
		}
	}
	var errs []error
	errs = append(errs, syncMap(d.objs.XlbIfacesV1, s.written.ifaces, want.ifaces)...)
	errs = append(errs, syncArray(d.objs.XlbIfslotsV1, s.written.slots, want.slots)...)
	errs = append(errs, syncMap(d.objs.XlbIfMacsV1, s.written.macs, want.macs)...)
	local := want.local4
	if len(local) > maxLocalAddrs {
		local = map[[4]byte]uint32{}
		for k, v := range want.local4 {
			if len(local) == maxLocalAddrs {
				break
			}
			local[k] = v
		}
	}
	errs = append(errs, syncMap(d.objs.XlbLocal4V1, s.written.local4, local)...)
	return errors.Join(errs...)
}

// syncMap makes m hold want, given that it holds have (updated).
func syncMap[K comparable, V comparable](m *ebpf.Map, have, want map[K]V) []error {
	var errs []error
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("%s: delete: %w", m, err))
				continue
			}
			delete(have, k)
		}
	}
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if err := m.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		have[k] = v
	}
	return errs
}

// syncArray is syncMap for an array: a slot no longer wanted is zeroed.
func syncArray[V comparable](m *ebpf.Map, have, want map[uint32]V) []error {
	var zero V
	for k := range have {
		if _, ok := want[k]; !ok {
			want[k] = zero
		}
	}
	errs := syncMap(m, have, want)
	for k, v := range want {
		if v == zero {
			delete(want, k)
			delete(have, k)
		}
	}
	return errs
}

// readIfaces reads what the maps hold (written by a previous run when
// they are pinned).
func (d *Dataplane) readIfaces() (*ifaceState, error) {
	st := &ifaceState{ifaces: map[uint32]bpfXlbIface{}, slots: map[uint32]bpfXlbIface{}, macs: map[bpfXlbIfMac]uint32{}, local4: map[[4]byte]uint32{}}
	var errs []error
	errs = append(errs, batchAll(d.objs.XlbIfacesV1, func(k uint32, v bpfXlbIface) { st.ifaces[k] = v }))
	errs = append(errs, batchAll(d.objs.XlbIfslotsV1, func(k uint32, v bpfXlbIface) {
		if v.Ifindex != 0 {
			st.slots[k] = v
		}
	}))
	errs = append(errs, batchAll(d.objs.XlbIfMacsV1, func(k bpfXlbIfMac, v uint32) { st.macs[k] = v }))
	errs = append(errs, batchAll(d.objs.XlbLocal4V1, func(k [4]byte, v uint32) { st.local4[k] = v }))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("read interface maps: %w", err)
	}
	return st, nil
}

// warnIfaces warns, once per change, about attached interfaces that are
// gone, and those whose rp_filter the program cannot apply: bpf_fib_lookup
// answers only where the kernel would forward (conf/IF/forwarding).
func (d *Dataplane) warnIfaces(want *ifaceState) {
	s := &d.ifSync
	if s.warned == nil {
		s.warned = map[string]string{}
	}
	for _, name := range d.opts.Interfaces {
		state := "missing"
		if idx, ok := want.index[name]; ok {
			state = ""
			e := want.ifaces[uint32(idx)]
			if fwd, err := sysctlInt(os.ReadFile, "/proc/sys/net/ipv4/conf/"+name+"/forwarding"); err == nil && e.RpFilter > 0 && fwd == 0 {
				state = "unchecked"
			}
		}
		if s.warned[name] != state {
			switch state {
			case "missing":
				d.log.Warn("attached interface gone: its settings for XDP checks are removed", "interface", name)
			case "unchecked":
				d.log.Warn("rp_filter is set but IPv4 forwarding is off on the interface: XDP cannot look up the route back (bpf_fib_lookup answers only where the kernel forwards), so new flows' sources are not checked (counted as rp_unchecked); turn on net.ipv4.conf."+name+".forwarding, or the reverse-path check is the real servers' own",
					"interface", name, "rp_filter", want.ifaces[uint32(want.index[name])].RpFilter)
			}
		}
		s.warned[name] = state
	}
}

// watchIfaces keeps the interface maps current until stopIfaceWatch: it
// resyncs on every link, IPv4 address and IPv4 netconf (forwarding,
// rp_filter) notification of the namespace ns, after a lost notification,
// and when Sync asks.
func (d *Dataplane) watchIfaces(ns netns.NsHandle, ready chan<- error) {
	defer close(d.ifDone)
	// The thread stays in ns while the goroutine runs (sysctls are read
	// in the reading thread's namespace), and goes back before it is
	// unlocked. Were it left there, the thread (maybe the process's main
	// one) would keep the process in a namespace that may be deleted.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		ready <- fmt.Errorf("current network namespace: %w", err)
		return
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		ready <- fmt.Errorf("enter the dataplane's network namespace: %w", err)
		return
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	sock, err := nl.Subscribe(unix.NETLINK_ROUTE, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV4_NETCONF)
	if err != nil {
		ready <- fmt.Errorf("subscribe to link and address changes: %w", err)
		return
	}
	defer sock.Close()
	// Subscribed first: no change from now on is missed.
	if err := d.syncIfaces(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	events := make(chan struct{}, 1)
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			_, _, err := sock.Receive()
			if err != nil && !errors.Is(err, unix.ENOBUFS) {
				select {
				case <-d.ifStop:
				default:
					d.log.Warn("interface notifications stopped: interface settings are updated at every Sync only", "error", err)
				}
				return
			}
			select { // coalesced: one resync covers them all
			case events <- struct{}{}:
			default:
			}
		}
	}()
	for {
		select {
		case <-d.ifStop:
			sock.Close()
			<-received
			return
		case <-events:
		case <-d.ifKick:
		}
		if err := d.syncIfaces(); err != nil {
			d.log.Warn("interface settings for XDP checks", "error", err)
		}
	}
}

// startIfaceWatch writes the interface maps and keeps them current.
func (d *Dataplane) startIfaceWatch() error {
	if len(d.opts.Interfaces) == 0 {
		return nil
	}
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer ns.Close() // the watcher's thread has entered it
	d.ifStop, d.ifDone, d.ifKick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	ready := make(chan error, 1)
	go d.watchIfaces(ns, ready)
	if err := <-ready; err != nil {
		<-d.ifDone
		d.ifDone = nil
		return fmt.Errorf("interface settings for XDP checks: %w", err)
	}
	return nil
}

// kickIfaces asks the watcher to resync (a notification may have been lost
// without an error).
func (d *Dataplane) kickIfaces() {
	if d.ifDone == nil {
		return
	}
	select {
	case d.ifKick <- struct{}{}:
	default:
	}
}

// stopIfaceWatch stops watchIfaces.
func (d *Dataplane) stopIfaceWatch() {
	if d.ifDone == nil {
		return
	}
	close(d.ifStop)
	<-d.ifDone
	d.ifDone = nil
}

// The interface maps' sizes, generated from bpf/lib/consts.h (limits.go).
const (
	ifaceSlots      = uint32(bpfXlbLimitsXLB_LIMIT_IFACE_SLOTS)
	maxIfaceEntries = int(bpfXlbLimitsXLB_LIMIT_IFACE_ENTRIES)
	maxLocalAddrs   = int(bpfXlbLimitsXLB_LIMIT_LOCAL_ADDRS)
)
