package dataplane

import (
	"net"
	"testing"
	"unsafe"
)

// TestMAC: a MAC comes from a 6-byte hardware address only (an EUI-64 or a
// truncated one is none), prints as net.HardwareAddr does, and the zero
// MAC is none, which takes a direct-routing backend out of scheduling.
func TestMAC(t *testing.T) {
	for _, tc := range []struct {
		hw    net.HardwareAddr
		valid bool
		str   string
	}{
		{net.HardwareAddr{0x02, 0, 0, 0, 0, 0x08}, true, "02:00:00:00:00:08"},
		{nil, false, ""},
		{net.HardwareAddr{0x02, 0, 0, 0, 0}, false, ""},
		{net.HardwareAddr{0x02, 0, 0, 0xff, 0xfe, 0, 0, 0x08}, false, ""},
		{net.HardwareAddr{0, 0, 0, 0, 0, 0}, false, ""},
	} {
		m := MACFrom(tc.hw)
		if m.Valid() != tc.valid || m.String() != tc.str {
			t.Errorf("MACFrom(%v): %q valid %v, want %q valid %v", tc.hw, m.String(), m.Valid(), tc.str, tc.valid)
		}
	}
	a := Backend{MAC: MACFrom(net.HardwareAddr{2, 0, 0, 0, 0, 1}), Ifindex: 3}
	b := a
	b.MAC[5] = 2
	if !BackendEqual(a, a) || BackendEqual(a, b) {
		t.Error("BackendEqual does not compare the MACs")
	}
}

// TestBackendSize holds a Backend at 48 bytes: a service's 64 real
// servers then fill a 3,072-byte size class of Go's allocator (at 56
// bytes, 3,584 took a 4,096-byte one: 1 MB more in each copy of 1,000
// such services' backends).
func TestBackendSize(t *testing.T) {
	if n := unsafe.Sizeof(Backend{}); n > 48 {
		t.Errorf("Backend is %d bytes, want at most 48", n)
	}
}
