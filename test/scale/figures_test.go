package scale

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// figure is one measured quantity: its samples, and its target.
type figure struct {
	name    string
	unit    string
	samples []float64
	// max is the target's bound (the figure must not exceed it); 0: no
	// target, reported only.
	max float64
	// note says how it was measured, or what the target is when it is not
	// a bound.
	note string
}

// figures keeps the figures of a run in the order they were first added.
type figures struct {
	list  []*figure
	index map[string]*figure
}

func (fs *figures) add(name, unit string, max float64, v ...float64) *figure {
	if fs.index == nil {
		fs.index = map[string]*figure{}
	}
	f := fs.index[name]
	if f == nil {
		f = &figure{name: name, unit: unit, max: max}
		fs.index[name] = f
		fs.list = append(fs.list, f)
	}
	f.samples = append(f.samples, v...)
	return f
}

func (fs *figures) note(name, note string) {
	if f := fs.index[name]; f != nil {
		f.note = note
	}
}

func (f *figure) median() float64 {
	if len(f.samples) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(f.samples))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (f *figure) ok() bool {
	if f.max == 0 {
		return true
	}
	m := f.median()
	return !math.IsNaN(m) && m <= f.max && slices.Max(f.samples) <= f.max
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// print writes the figures as a table: median, range, samples, target.
func (fs *figures) print(w io.Writer, title string) {
	fmt.Fprintf(w, "\n%s\n", title)
	width := 0
	for _, f := range fs.list {
		width = max(width, len(f.name))
	}
	fmt.Fprintf(w, "%-*s  %10s  %-21s  %-14s  %s\n", width, "figure", "median", "range (n)", "target", "")
	for _, f := range fs.list {
		rng := "-"
		if len(f.samples) > 0 {
			rng = fmt.Sprintf("%s..%s (%d)", num(slices.Min(f.samples)), num(slices.Max(f.samples)), len(f.samples))
		}
		target, verdict := "", ""
		if f.max > 0 {
			target = "<= " + num(f.max) + " " + f.unit
			verdict = "ok"
			if !f.ok() {
				verdict = "OVER"
			}
		}
		line := fmt.Sprintf("%-*s  %10s  %-21s  %-14s  %-4s", width, f.name, num(f.median())+" "+f.unit, rng, target, verdict)
		if f.note != "" {
			line += "  " + f.note
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}
