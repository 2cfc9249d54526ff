package xdp

import (
	"encoding/binary"
	"hash/fnv"
	"math/bits"

	"github.com/xlb-dev/xlb/dataplane"
)

// DefaultMaglevSize is the number of entries of an sh/mh lookup table: a
// prime, so every skip value visits every entry.
const DefaultMaglevSize = 65537

// maxWRRCycle bounds a weighted round-robin cycle (sum of weight/gcd). A
// larger cycle has its weights scaled down, which keeps the ratios to within
// about one part in (maxWRRCycle / backends). Scaled, a cycle may exceed it
// by up to one entry per backend: it stays within maxRRCycle, the
// program's bound (TestWRRCycleWithinProgramBound).
const maxWRRCycle = 1 << 20

// maxMaglevTurns bounds the entries a backend takes per Maglev round, so
// that one heavy backend cannot starve the permutation of the others.
const maxMaglevTurns = 256

// tableBackend is a schedulable real server as the table builders see it:
// its identity (for Maglev) and weight.
type tableBackend struct {
	key    dataplane.BackendKey
	weight uint32
}

// privateTableMax is the longest scheduling table each slot of a service
// holds a copy of (update.go): 16 KiB. Longer ones (Maglev's 65,537
// entries by default, a weighted cycle of large weights) are shared by
// both slots until their first change.
const privateTableMax = 4096

// tableBuilders build each kind of scheduling table (a scheduler's, in
// dataplane.SchedulerTable): indexes into bs.
var tableBuilders = map[dataplane.Table]func(bs []tableBackend, maglevSize int) []int{
	dataplane.TableList:          func(bs []tableBackend, _ int) []int { return rrTable(bs) },
	dataplane.TableWeightedCycle: func(bs []tableBackend, _ int) []int { return wrrTable(bs) },
	dataplane.TableMaglev:        maglevTable,
}

// rrTable is the IPVS rr cycle, and the candidates lc and wlc scan: every
// backend with a non-zero weight once, in configuration order.
func rrTable(bs []tableBackend) []int {
	var t []int
	for i, b := range bs {
		if b.weight > 0 {
			t = append(t, i)
		}
	}
	return t
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// wrrTable is one cycle of IPVS's interleaved weighted round robin
// (ip_vs_wrr.c): the current weight cw starts at max-(gcd-1) and drops by
// gcd after each pass over the list; a pass picks, in order, every backend
// whose weight is at least cw. The cycle has sum(weight/gcd) entries.
func wrrTable(bs []tableBackend) []int {
	weights := make([]uint64, len(bs))
	for i, b := range bs {
		weights[i] = uint64(b.weight)
	}
	g, max, sum := wrrParams(weights)
	if max == 0 {
		return nil
	}
	if sum > maxWRRCycle {
		// Scale down to fit, keeping every non-zero weight non-zero.
		for i, w := range weights {
			if w > 0 {
				weights[i] = max64(1, w*maxWRRCycle/(sum*g))
			}
		}
		g, max, sum = wrrParams(weights)
	}
	mw := max - (g - 1)
	cw := mw
	t := make([]int, 0, sum)
	for len(t) < int(sum) {
		for i, w := range weights {
			if w > 0 && w >= cw {
				t = append(t, i)
			}
		}
		if cw <= g {
			cw = mw
		} else {
			cw -= g
		}
	}
	return t
}

// wrrParams returns the gcd and maximum of the non-zero weights and the
// length of their cycle.
func wrrParams(weights []uint64) (g, max, sum uint64) {
	for _, w := range weights {
		if w > 0 {
			g = uint64(gcd(uint32(g), uint32(w)))
			max = max64(max, w)
		}
	}
	if g == 0 {
		return 0, 0, 0
	}
	for _, w := range weights {
		sum += w / g
	}
	return g, max, sum
}

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// maglevTable builds a weighted Maglev lookup table of size m (a prime):
// every backend has a permutation of the entries derived from its identity
// (address and port, not its position or id, so two directors with the
// same real servers build the same table), and the backends take turns,
// weight/gcd turns each per round, filling their next free preferred entry.
// Removing one of N equal backends moves about 1/N of the entries.
func maglevTable(bs []tableBackend, m int) []int {
	type perm struct {
		idx, offset, skip, next, turns uint64
	}
	var g uint32
	var maxW uint32
	for _, b := range bs {
		if b.weight > 0 {
			g = gcd(g, b.weight)
			maxW = max(maxW, b.weight)
		}
	}
	if g == 0 {
		return nil
	}
	var ps []perm
	for i, b := range bs {
		if b.weight == 0 {
			continue
		}
		turns := uint64(b.weight / g)
		if maxW/g > maxMaglevTurns {
			turns = max64(1, uint64(b.weight)*maxMaglevTurns/uint64(maxW))
		}
		h1, h2 := backendHashes(b.key)
		ps = append(ps, perm{
			idx:    uint64(i),
			offset: h1 % uint64(m),
			skip:   h2%uint64(m-1) + 1,
			turns:  turns,
		})
	}
	table := make([]int, m)
	for i := range table {
		table[i] = -1
	}
	filled := 0
	for filled < m {
		for j := range ps {
			p := &ps[j]
			for t := uint64(0); t < p.turns && filled < m; t++ {
				c := (p.offset + p.next*p.skip) % uint64(m)
				for table[c] >= 0 {
					p.next++
					c = (p.offset + p.next*p.skip) % uint64(m)
				}
				table[c] = int(p.idx)
				p.next++
				filled++
			}
		}
	}
	return table
}

// backendHashes are the two Maglev hashes of a real server's identity.
func backendHashes(k dataplane.BackendKey) (uint64, uint64) {
	var buf [18]byte
	a := k.Addr.As16()
	copy(buf[:16], a[:])
	binary.BigEndian.PutUint16(buf[16:], k.Port)
	h := fnv.New64a()
	h.Write([]byte("xlb-maglev-offset"))
	h.Write(buf[:])
	h1 := h.Sum64()
	h.Reset()
	h.Write([]byte("xlb-maglev-skip"))
	h.Write(buf[:])
	h2 := h.Sum64()
	// FNV's low bits mix poorly for short inputs: fold the high half in.
	return h1 ^ bits.RotateLeft64(h1, 29), h2 ^ bits.RotateLeft64(h2, 31)
}
