package dataplane

import (
	"net/netip"
	"testing"
)

// TestServiceStatsFind: a real server's stats are found at the index
// given, searched for when they are elsewhere, and zero when absent.
func TestServiceStatsFind(t *testing.T) {
	key := func(i int) BackendKey {
		return BackendKey{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Port: 80}
	}
	s := ServiceStats{}
	for i := range 4 {
		s.Backends = append(s.Backends, BackendStats{Key: key(i), Counters: Counters{Packets: uint64(10 + i)}})
	}
	for _, tc := range []struct {
		k    BackendKey
		hint int
		want uint64
		ok   bool
	}{
		{key(2), 2, 12, true},  // where expected
		{key(2), 0, 12, true},  // elsewhere
		{key(3), -1, 13, true}, // no hint
		{key(1), 9, 11, true},  // a hint past the end
		{key(7), 1, 0, false},  // absent
	} {
		b, ok := s.Find(tc.k, tc.hint)
		if ok != tc.ok || b.Packets != tc.want || (ok && b.Key != tc.k) {
			t.Errorf("Find(%s, %d) = %+v, %v; want %d packets, %v", tc.k, tc.hint, b, ok, tc.want, tc.ok)
		}
		if got := s.Backend(tc.k); got.Packets != tc.want {
			t.Errorf("Backend(%s) = %d packets, want %d", tc.k, got.Packets, tc.want)
		}
	}
}
