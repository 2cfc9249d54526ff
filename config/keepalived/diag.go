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
	list    []Diag
	dropped int
	errors  int
}

func (d *diags) add(x Diag) {
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
	d.add(Diag{p, Error, kw, fmt.Sprintf(format, args...)})
}

func (d *diags) warnf(p Pos, kw, format string, args ...any) {
	d.add(Diag{p, Warning, kw, fmt.Sprintf(format, args...)})
}

// sorted returns the diagnostics in the order of the files' lines as read
// (stable: the order they were found in within a line).
func (d *diags) sorted(order map[string]int) []Diag {
	out := append([]Diag(nil), d.list...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.File != b.File {
			return order[a.File] < order[b.File]
		}
		return a.Line < b.Line
	})
	if d.dropped > 0 {
		out = append(out, Diag{Severity: Warning, Msg: fmt.Sprintf("%d more diagnostics not shown", d.dropped)})
	}
	return out
}
