package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: no input makes Parse panic; every failure is an *Errors whose
// lines are within the document.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("examples/*.toml")
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	for _, tc := range errorCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		env := fakeEnv{"eth0": nil, "eth1": nil}
		c, err := Parse("f.toml", src, env)
		if err == nil {
			if c == nil {
				t.Fatalf("no error and config %v", c)
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(errs.List) == 0 {
			t.Fatalf("error %T %v is not a non-empty *Errors", err, err)
		}
		lines := strings.Count(string(src), "\n") + 1
		for _, e := range errs.List {
			if e.Line < 0 || e.Line > lines || e.Msg == "" || e.File != "f.toml" {
				t.Fatalf("bad error %+v in a document of %d lines", e, lines)
			}
		}
	})
}
