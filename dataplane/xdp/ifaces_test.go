package xdp

import (
	"fmt"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestDesiredIfaces: the entries for attached interfaces (their MAC and
// rp_filter, max of conf/all and conf/IF), for the devices stacked on them
// (a VLAN device, a macvlan on it, the bridge it is a port of: their
// parent is the attached interface, their MACs accepted on it) and the
// local IPv4 addresses; devices of other kinds or on other interfaces are
// left out.
func TestDesiredIfaces(t *testing.T) {
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, b} }
	attrs := func(name string, index, parent, master int, m net.HardwareAddr) netlink.LinkAttrs {
		return netlink.LinkAttrs{Name: name, Index: index, ParentIndex: parent, MasterIndex: master, HardwareAddr: m}
	}
	links := []netlink.Link{
		&netlink.Veth{LinkAttrs: attrs("eth0", 2, 9, 7, mac(2))},          // its peer's index as parent
		&netlink.Vlan{LinkAttrs: attrs("eth0.42", 3, 2, 0, mac(2))},       // same MAC as eth0
		&netlink.Macvlan{LinkAttrs: attrs("vrrp.51", 4, 3, 0, mac(0x51))}, // VRRP's vmac on the VLAN device
		&netlink.Veth{LinkAttrs: attrs("other", 5, 0, 0, mac(5))},
		&netlink.Macvlan{LinkAttrs: attrs("mv-other", 6, 5, 0, mac(6))},
		&netlink.Bridge{LinkAttrs: attrs("br0", 7, 0, 0, mac(7))},
		&netlink.Veth{LinkAttrs: attrs("eth1", 8, 0, 0, mac(8))},
		&netlink.Veth{LinkAttrs: attrs("peer", 9, 2, 0, mac(9))},
	}
	sysctls := map[string]string{"all": "1", "eth0": "0", "eth1": "2", "eth258": "0"}
	read := func(path string) ([]byte, error) {
		for dev, v := range sysctls {
			if path == "/proc/sys/net/ipv4/conf/"+dev+"/rp_filter" {
				return []byte(v + "\n"), nil
			}
		}
		return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
	}
	addrs := []netlink.Addr{
		{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}, LinkIndex: 2},
		{IPNet: &net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(64, 128)}, LinkIndex: 2},
	}
	got, err := desiredIfaces([]string{"eth0", "eth1"}, links, addrs, read)
	if err != nil {
		t.Fatal(err)
	}
	attached := uint8(bpfXlbIfaceFlagsXLB_IF_F_ATTACHED)
	want := map[uint32]bpfXlbIface{
		2: {Mac: [6]byte(mac(2)), RpFilter: 1, Flags: attached, Parent: 2, Ifindex: 2},
		3: {Mac: [6]byte(mac(2)), Parent: 2, Ifindex: 3},
		4: {Mac: [6]byte(mac(0x51)), Parent: 2, Ifindex: 4},
		7: {Mac: [6]byte(mac(7)), Parent: 2, Ifindex: 7},
		8: {Mac: [6]byte(mac(8)), RpFilter: 2, Flags: attached, Parent: 8, Ifindex: 8},
	}
	if fmt.Sprint(got.ifaces) != fmt.Sprint(want) {
		t.Errorf("interfaces\n got %+v\nwant %+v", got.ifaces, want)
	}
	if wantSlots := map[uint32]bpfXlbIface{2: want[2], 8: want[8]}; fmt.Sprint(got.slots) != fmt.Sprint(wantSlots) {
		t.Errorf("slots\n got %+v\nwant %+v", got.slots, wantSlots)
	}
	// Two attached interfaces in one slot: the lower ifindex has it.
	links2 := append(links, &netlink.Veth{LinkAttrs: attrs("eth258", 258, 0, 0, mac(0x58))})
	if got, _ := desiredIfaces([]string{"eth258", "eth1", "eth0"}, links2, nil, read); got.slots[2].Ifindex != 2 || len(got.slots) != 2 {
		t.Errorf("slots with ifindex 2 and 258: %+v, want slot 2 for ifindex 2", got.slots)
	}
	wantMACs := map[bpfXlbIfMac]uint32{
		{Ifindex: 2, Mac: [6]byte(mac(0x51))}: 4,
		{Ifindex: 2, Mac: [6]byte(mac(7))}:    7,
	}
	if fmt.Sprint(got.macs) != fmt.Sprint(wantMACs) {
		t.Errorf("MACs\n got %+v\nwant %+v", got.macs, wantMACs)
	}
	if fmt.Sprint(got.local4) != fmt.Sprint(map[[4]byte]uint32{{192, 0, 2, 1}: 2}) {
		t.Errorf("local addresses %v", got.local4)
	}
	if got.missing != nil || fmt.Sprint(got.index) != "map[eth0:2 eth1:8]" {
		t.Errorf("attached %v, missing %v", got.index, got.missing)
	}
	if got, err := desiredIfaces([]string{"eth9", "eth1"}, links, addrs, read); err != nil || fmt.Sprint(got.missing) != "[eth9]" || len(got.ifaces) != 1 {
		t.Errorf("an interface that does not exist: missing %v, %d entries (%v), want it left out", got.missing, len(got.ifaces), err)
	}
}
