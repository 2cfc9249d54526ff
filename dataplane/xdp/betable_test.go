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

// A NAT real server's entry is 12 bytes (65,536 of them, with their
// 20-byte keys, in a map).
func TestNATEntryCompact(t *testing.T) {
	if n := unsafe.Sizeof(natEntry{}); n > 12 {
		t.Errorf("natEntry is %d bytes, want at most 12", n)
	}
}
