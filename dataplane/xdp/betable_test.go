package xdp

import (
	"net/netip"
	"reflect"
	"testing"
	"unsafe"

	"github.com/xlb-dev/xlb/dataplane"
)

// The Go mirror of 65,536 backend ids is a slice of small values without
// pointers: 80 bytes an id (a map of pointers to states with a
// netip.Addr key was 10 MB at 64,000 real servers, and scanned by the
// collector).
func TestBackendTableCompact(t *testing.T) {
	if n := unsafe.Sizeof(beState{}); n > 80 {
		t.Errorf("beState is %d bytes, want at most 80", n)
	}
	if hasPointers(reflect.TypeFor[beState]()) {
		t.Error("beState holds pointers: the collector scans 65,536 of them")
	}

	if n := unsafe.Sizeof(statBE{}); n > 24 || hasPointers(reflect.TypeFor[statBE]()) {
		t.Errorf("statBE is %d bytes, want at most 24 without pointers", n)
	}

	var tb beTable
	k4 := dataplane.BackendKey{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}
	k6 := dataplane.BackendKey{Addr: netip.MustParseAddr("2001:db8::1"), Port: 8080}
	if tb.get(0) != nil || tb.len() != 0 || tb.ids() != 0 {
		t.Fatal("an empty table has ids in use")
	}
	tb.add(7, newBeState(3, k4))
	be := tb.add(300, newBeState(4, k6))
	if be.entry.Svc != 4 || be.key() != k6 || !be.is(k6) || be.is(k4) {
		t.Errorf("id 300: svc %d key %v", be.entry.Svc, be.key())
	}
	if got := tb.get(7); got == nil || got.key() != k4 || !got.is(k4) || got.entry.Svc != 3 {
		t.Errorf("id 7: %+v", got)
	}
	if tb.get(8) != nil || tb.get(1<<20) != nil || tb.len() != 2 || tb.ids() != 301 {
		t.Errorf("len %d ids %d", tb.len(), tb.ids())
	}
	var seen []uint32
	for id := range tb.all() {
		seen = append(seen, id)
		tb.del(id)
	}
	if !reflect.DeepEqual(seen, []uint32{7, 300}) || tb.len() != 0 || tb.get(7) != nil || tb.ids() != 0 {
		t.Errorf("all yielded %v; after del: len %d", seen, tb.len())
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.String, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// A NAT real server's entry is 12 bytes (65,536 of them in a map), an
// IPv4 one's key in that map 8.
func TestNATEntryCompact(t *testing.T) {
	if n := unsafe.Sizeof(natEntry{}); n > 12 {
		t.Errorf("natEntry is %d bytes, want at most 12", n)
	}
	if n := unsafe.Sizeof(natKey4{}); n > 8 {
		t.Errorf("natKey4 is %d bytes, want at most 8", n)
	}
}

// natTable keeps IPv4 keys short and every other key whole: each is found
// again as it was set, and an IPv4 key and an IPv6 key with the same
// first bytes are two entries.
func TestNATTable(t *testing.T) {
	tab := newNATTable()
	k4 := natKey(dataplane.BackendKey{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}, dataplane.TCP)
	k4udp := natKey(dataplane.BackendKey{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80}, dataplane.UDP)
	k6 := natKey(dataplane.BackendKey{Addr: netip.MustParseAddr("a00:1::"), Port: 80}, dataplane.TCP)
	odd := k4 // IPv4 with stray bytes past the address: kept whole
	odd.Addr[15] = 1
	for i, k := range []bpfXlbSvcKey{k4, k4udp, k6, odd} {
		tab.set(k, natEntry{owner: bpfXlbNatReal{Svc: uint32(i), Backend: uint32(i)}, n: 1})
	}
	if len(tab.v4) != 2 || len(tab.v6) != 2 || tab.len() != 4 {
		t.Fatalf("v4 %d, v6 %d, len %d entries: want 2, 2, 4", len(tab.v4), len(tab.v6), tab.len())
	}
	for i, k := range []bpfXlbSvcKey{k4, k4udp, k6, odd} {
		if e, ok := tab.get(k); !ok || e.owner.Svc != uint32(i) {
			t.Errorf("key %d: %+v, %v", i, e, ok)
		}
	}
	tab.del(k4)
	tab.del(k6)
	if _, ok := tab.get(k4); ok {
		t.Error("the IPv4 key is still there")
	}
	if _, ok := tab.get(k6); ok {
		t.Error("the IPv6 key is still there")
	}
	if e, ok := tab.get(k4udp); !ok || e.owner.Svc != 1 || tab.len() != 2 {
		t.Errorf("the UDP key: %+v, %v; %d entries left", e, ok, tab.len())
	}
}
