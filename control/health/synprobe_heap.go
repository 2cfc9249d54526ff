package health

// probeHeap orders probes by their next timer: a binary heap whose
// probes know their index. Its methods are the heap's own, not
// container/heap's through an interface (a call for each comparison and
// swap, at each probe's start and answer).
type probeHeap []*synProbe

// push adds pr.
func (h *probeHeap) push(pr *synProbe) {
	pr.index = len(*h)
	*h = append(*h, pr)
	h.up(pr.index)
}

// remove takes out the probe at i.
func (h *probeHeap) remove(i int) {
	s := *h
	n := len(s) - 1
	pr := s[i]
	if i != n {
		s[i] = s[n]
		s[i].index = i
	}
	s[n] = nil
	*h = s[:n]
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
	pr.index = -1
}

// up moves the probe at i up to its place.
func (h probeHeap) up(i int) {
	pr := h[i]
	for i > 0 {
		p := (i - 1) / 2
		if !pr.next.Before(h[p].next) {
			break
		}
		h[i] = h[p]
		h[i].index = i
		i = p
	}
	h[i] = pr
	pr.index = i
}

// down moves the probe at i down to its place (after its next timer
// moved later), and reports whether it moved.
func (h probeHeap) down(i int) bool {
	i0 := i
	n := len(h)
	pr := h[i]
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r].next.Before(h[l].next) {
			l = r
		}
		if !h[l].next.Before(pr.next) {
			break
		}
		h[i] = h[l]
		h[i].index = i
		i = l
	}
	h[i] = pr
	pr.index = i
	return i > i0
}
