package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
)

func backends(weights ...uint32) []tableBackend {
	bs := make([]tableBackend, len(weights))
	for i, w := range weights {
		bs[i] = tableBackend{
			key:    dataplane.BackendKey{Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), Port: 80},
			weight: w,
		}
	}
	return bs
}

func TestWRRTableIPVSOrder(t *testing.T) {
	for _, tc := range []struct {
		weights []uint32
		want    []int
	}{
		// ip_vs_wrr: cw starts at max-(gcd-1) and drops by gcd each pass.
		{[]uint32{4, 3, 2}, []int{0, 0, 1, 0, 1, 2, 0, 1, 2}},
		{[]uint32{4, 2}, []int{0, 0, 1}},
		{[]uint32{1, 1, 1}, []int{0, 1, 2}},
		{[]uint32{5, 0, 1}, []int{0, 0, 0, 0, 0, 2}},
		{[]uint32{2, 4, 6}, []int{2, 1, 2, 0, 1, 2}},
		{[]uint32{0, 0}, nil},
	} {
		got := wrrTable(backends(tc.weights...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("weights %v: cycle %v, want %v", tc.weights, got, tc.want)
		}
	}
}

func TestWRRTableLargeWeightsScaled(t *testing.T) {
	bs := backends(65535, 65534, 1, 3)
	got := wrrTable(append(bs, backends(slices.Repeat([]uint32{65535}, 100)...)...))
	if len(got) > maxWRRCycle+110 || len(got) == 0 {
		t.Fatalf("cycle of %d entries", len(got))
	}
	count := map[int]int{}
	for _, i := range got {
		count[i]++
	}
	if count[2] == 0 || count[3] == 0 {
		t.Errorf("small weights lost after scaling: %v", count)
	}
}

func TestRRTableSkipsZeroWeight(t *testing.T) {
	if got := rrTable(backends(1, 0, 5, 1)); !slices.Equal(got, []int{0, 2, 3}) {
		t.Fatalf("rr table %v", got)
	}
}

func TestMaglevTableWeightsAndDisruption(t *testing.T) {
	const m = DefaultMaglevSize
	for _, n := range []int{3, 10, 33} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			w := slices.Repeat([]uint32{1}, n)
			before := maglevTable(backends(w...), m)
			share := map[int]int{}
			for _, b := range before {
				share[b]++
			}
			for b, c := range share {
				if dev := float64(c)/float64(m) - 1/float64(n); dev > 0.01 || dev < -0.01 {
					t.Errorf("backend %d has %.4f of the table, want %.4f", b, float64(c)/m, 1/float64(n))
				}
			}
			// Remove the middle backend: its identity, not its index, decides.
			bs := backends(w...)
			removed := n / 2
			after := maglevTable(slices.Delete(slices.Clone(bs), removed, removed+1), m)
			moved := 0
			for i := range before {
				was := bs[before[i]].key
				rest := slices.Delete(slices.Clone(bs), removed, removed+1)
				if rest[after[i]].key != was {
					moved++
				}
			}
			frac := float64(moved) / m
			if limit := 1/float64(n) + 0.02; frac > limit {
				t.Errorf("removing 1 of %d moved %.4f of the entries, limit %.4f", n, frac, limit)
			}
			t.Logf("n=%d: removing one backend moved %.4f of the table (ideal %.4f)", n, frac, 1/float64(n))
		})
	}
}

func TestMaglevTableWeighted(t *testing.T) {
	table := maglevTable(backends(1, 2, 3, 0), DefaultMaglevSize)
	share := map[int]int{}
	for _, b := range table {
		share[b]++
	}
	if share[3] != 0 {
		t.Errorf("weight 0 backend got %d entries", share[3])
	}
	for i, want := range []float64{1.0 / 6, 2.0 / 6, 3.0 / 6} {
		got := float64(share[i]) / DefaultMaglevSize
		if got < want-0.01 || got > want+0.01 {
			t.Errorf("backend %d: share %.4f, want %.4f", i, got, want)
		}
	}
}

// A scaled wrr cycle of the most backends a service holds stays within
// the program's bound on the walk past overloaded real servers.
func TestWRRCycleWithinProgramBound(t *testing.T) {
	if maxWRRCycle+maxBackendsPerService > maxRRCycle {
		t.Fatalf("a scaled cycle may hold %d entries, the program walks at most %d", maxWRRCycle+maxBackendsPerService, maxRRCycle)
	}
	weights := make([]uint32, maxBackendsPerService)
	for i := range weights {
		weights[i] = 65535 - uint32(i)*7 // coprime neighbours: gcd 1, the longest cycle
	}
	if got := wrrTable(backends(weights...)); len(got) > maxRRCycle || len(got) < maxWRRCycle/2 {
		t.Fatalf("cycle of %d entries, bound %d", len(got), maxRRCycle)
	}
}
