package keepalived

import (
	"fmt"
	"sort"
)

// Severity says whether a diagnostic stops the import.
type Severity int

const (
	// Warning: converted, but something is dropped or changed, as
	// keepalived itself would do, or it has no effect in xlb.
	Warning Severity = iota
	// Error: keepalived could not run it, or xlb cannot carry it over.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diag is one diagnostic, at the line it is about, naming the keepalived
// keyword.
type Diag struct {
	Pos      Pos
	Severity Severity
	Keyword  string
	Msg      string

	seq int // where it goes among the lines read; -1: by its Pos
}

func (d Diag) String() string {
	kw := ""
	if d.Keyword != "" {
		kw = d.Keyword + ": "
	}
	return fmt.Sprintf("%s: %s: %s%s", d.Pos, d.Severity, kw, d.Msg)
}

// maxDiags bounds the diagnostics kept (then counted).
const maxDiags = 1000

type diags struct {
	// cur tells the reading position while the lines are read and
	// parsed; nil afterwards.
	cur     func() int
	list    []Diag
	dropped int
	errors  int
	// said holds what conversion said, so that it says it once.
	said map[diagKey]bool
}

type diagKey struct {
	pos      Pos
	severity Severity
	keyword  string
	msg      string
}

func (d *diags) add(x Diag) {
	if d.cur == nil {
		// Converting: said once (a group's services share their lines).
		k := diagKey{x.Pos, x.Severity, x.Keyword, x.Msg}
		if d.said[k] {
			return
		}
		if d.said == nil {
			d.said = map[diagKey]bool{}
		}
		if len(d.said) < maxDiags {
			d.said[k] = true
		}
	}
	x.seq = -1
	if d.cur != nil {
		x.seq = d.cur()
	}
	if x.Severity == Error {
		d.errors++
	}
	if len(d.list) >= maxDiags {
		d.dropped++
		return
	}
	d.list = append(d.list, x)
}

func (d *diags) errorf(p Pos, kw, format string, args ...any) {
	d.add(Diag{Pos: p, Severity: Error, Keyword: kw, Msg: fmt.Sprintf(format, args...)})
}

func (d *diags) warnf(p Pos, kw, format string, args ...any) {
	d.add(Diag{Pos: p, Severity: Warning, Keyword: kw, Msg: fmt.Sprintf(format, args...)})
}

// sorted returns the diagnostics in the order their lines were read
// (includes in place; stable within a line).
func (d *diags) sorted(lines []Line) []Diag {
	first := map[Pos]int{}
	for i, l := range lines {
		if _, ok := first[l.Pos]; !ok {
			first[l.Pos] = i
		}
	}
	key := func(x Diag) int {
		p := x.Pos
		if x.seq >= 0 {
			return x.seq
		}
		if i, ok := first[p]; ok {
			return i
		}
		// A line that made no words (a definition, a dropped
		// conditional): the next line of its file that did.
		best := len(lines)
		for q, i := range first {
			if q.File == p.File && q.Line > p.Line && i < best {
				best = i
			}
		}
		return best
	}
	out := append([]Diag(nil), d.list...)
	sort.SliceStable(out, func(i, j int) bool { return key(out[i]) < key(out[j]) })
	if d.dropped > 0 {
		out = append(out, Diag{Severity: Warning, Msg: fmt.Sprintf("%d more diagnostics not shown", d.dropped)})
	}
	return out
}
