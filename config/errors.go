package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem concerns the file as a whole
	// (e.g. a required table that is missing).
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Errors is every problem found in a configuration file, sorted by line
// (problems on the same line keep the order they were found in). Parse and
// Load return an *Errors for any problem with the file's content.
type Errors struct {
	List []Error
}

// Error prints one "FILE:LINE: message" per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, x := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(x.Error())
	}
	return b.String()
}

// Unwrap returns the individual errors, for errors.As and errors.Is.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, x := range e.List {
		errs[i] = x
	}
	return errs
}

// problems collects errors or warnings: sorted by line, and bounded (the
// maxErrors first by line are kept, the others counted), so that no input
// costs unbounded memory.
type problems struct {
	list    []Error
	dropped int
}

func (p *problems) add(e Error) {
	p.list = append(p.list, e)
	if len(p.list) >= 2*maxErrors {
		p.trim()
	}
}

// trim sorts by line (problems on one line keep the order they were found
// in) and keeps the first maxErrors.
func (p *problems) trim() {
	sort.SliceStable(p.list, func(i, j int) bool { return p.list[i].Line < p.list[j].Line })
	if len(p.list) > maxErrors {
		p.dropped += len(p.list) - maxErrors
		p.list = p.list[:maxErrors]
	}
}

// sorted returns the problems, with a last one counting those left out.
func (p *problems) sorted(file string) []Error {
	p.trim()
	if p.dropped > 0 {
		return append(p.list, Error{File: file, Msg: fmt.Sprintf("and %d more problems", p.dropped)})
	}
	return p.list
}
