package control

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update-status-golden", false, "rewrite testdata/status-*.txt from the current output")

// The status text of services with every kind of cell (persistence,
// overrides, sorry servers, unresolved MACs, IPv6, non-ASCII names) is
// byte for byte what testdata/status-*.txt hold (written by the fmt-based
// formatting the rows replaced).
func TestStatusTextGolden(t *testing.T) {
	st := variedStatus(12)
	for _, c := range []struct {
		name string
		f    Format
	}{{"conns", FormatConns}, {"stats", FormatStats}, {"rate", FormatRate}} {
		var got bytes.Buffer
		if err := FormatStatus(&got, st, c.f); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "status-"+c.name+".txt")
		if *updateGolden {
			if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, got.Bytes(), want)
		}
	}
}
