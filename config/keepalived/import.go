// Package keepalived converts a keepalived.conf into xlb's TOML
// configuration, with keepalived's own semantics: the file is read as
// keepalived 2.2.7 reads it (lib/parser.c: comments, include, conditional
// lines, parameters, sequences, braces), every keyword is looked up in a
// table that says which xlb key it becomes or why it cannot (keywords.go,
// and the reference generated from it, README.md here), keepalived's
// defaults are written out where xlb's differ, and invalid input is
// handled as keepalived handles it when it runs. Anything not carried over
// is a diagnostic at its FILE:LINE: a warning when the result still does
// what keepalived would do (or the keyword has no effect in xlb), an error
// when keepalived could not run it or xlb cannot carry it over.
package keepalived

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/xlb-dev/xlb/config"
)

// Options are the importer's inputs besides the file.
type Options struct {
	// Instance is keepalived's configuration id (-i), compared with "@ID"
	// lines and in ${_INSTANCE}; when InstanceSet is false it is the host
	// name's first label, as keepalived's default, and conditional lines
	// are warned about.
	Instance    string
	InstanceSet bool
	// ReadFile and Stat read the files; nil: the os package's.
	ReadFile func(string) ([]byte, error)
	Stat     func(string) (fs.FileInfo, error)

	path string
}

func (o *Options) configID() string {
	if o.InstanceSet {
		return o.Instance
	}
	if o.Instance == "" {
		h, _ := os.Hostname()
		h, _, _ = strings.Cut(h, ".")
		o.Instance = h
	}
	return o.Instance
}

func (o *Options) readFile(p string) ([]byte, error) {
	if o.ReadFile != nil {
		return o.ReadFile(p)
	}
	return osReadFile(p)
}

func (o *Options) stat(p string) (fs.FileInfo, error) {
	if o.Stat != nil {
		return o.Stat(p)
	}
	return osStat(p)
}

func (o *Options) base() string { return o.path }

// Result is an import's outcome.
type Result struct {
	// TOML is the xlb configuration; nil when there are errors.
	TOML []byte
	// Diags are the warnings and errors, in file order.
	Diags []Diag
	// Lines are the preprocessed lines (for tests).
	Lines []Line
}

// Failed reports whether an error was found.
func (r *Result) Failed() bool {
	for _, d := range r.Diags {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Import reads the keepalived configuration at path and converts it.
func Import(path string, opts Options) *Result {
	opts.path = path
	d := &diags{}
	lx := newLexer(&opts, d)
	d.cur = func() int { return len(lx.out) }
	lx.readFile(path, Pos{File: path})
	if lx.blockDepth > 0 && !lx.stopped {
		last := Pos{File: path}
		if n := len(lx.out); n > 0 {
			last = lx.out[n-1].Pos
		}
		d.errorf(last, "}", "%d missing '}' (or extra '{')", lx.blockDepth)
	}
	res := &Result{Lines: lx.out}
	p := &parser{lines: lx.out, d: d, c: &kaConfig{firstPos: Pos{File: path, Line: 1}}, seen: map[*keyword]bool{}}
	d.cur = func() int { return max(p.i-1, 0) }
	p.stream(topKeywords, false, 0)
	d.cur = nil
	cv := &converter{d: d, c: p.c, file: path}
	doc := cv.convert()
	if d.errors == 0 {
		out := doc.Render()
		cv.verify(doc, out)
		if d.errors == 0 {
			res.TOML = out
		}
	}
	res.Diags = d.sorted(lx.out)
	return res
}

// verify loads the output with xlb's own loader (offline: no interfaces,
// subnets or scripts of this host), so that what is written always passes
// `xlb check --offline`; a problem is an error at the keepalived line the
// table came from.
func (cv *converter) verify(doc *Doc, out []byte) {
	_, err := config.Parse("imported.toml", out, nil)
	if err == nil {
		return
	}
	var errs *config.Errors
	if !errors.As(err, &errs) {
		cv.d.errorf(cv.c.firstPos, "", "the converted configuration does not load: %v", err)
		return
	}
	starts := doc.tableLines()
	for _, e := range errs.List {
		at := cv.c.firstPos
		for _, s := range starts {
			if s.line <= e.Line && s.src.File != "" {
				at = s.src
			}
		}
		cv.d.errorf(at, "", "xlb refuses the converted configuration: %s", e.Msg)
	}
}

// splitQuoted splits a line as keepalived's alloc_strvec_quoted_escaped,
// which config.Command.Split implements.
func splitQuoted(s string) ([]string, error) {
	w, err := config.Command(s).Split()
	if err != nil {
		return nil, fmt.Errorf("%v", err)
	}
	return w, nil
}
