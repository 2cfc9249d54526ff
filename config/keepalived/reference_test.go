package keepalived

import (
	"flag"
	"os"
	"regexp"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files and the README's keyword tables")

var refBlock = regexp.MustCompile(`(?s)<!-- keywords -->\n.*?<!-- end -->`)

// README.md's keyword tables are the keyword table's.
func TestReference(t *testing.T) {
	old, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !refBlock.Match(old) {
		t.Fatal("README.md has no <!-- keywords --> ... <!-- end --> block")
	}
	got := refBlock.ReplaceAllLiteralString(string(old), "<!-- keywords -->"+reference()+"<!-- end -->")
	if *update {
		if err := os.WriteFile("README.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != string(old) {
		t.Errorf("README.md's keyword tables differ from keywords.go: run\n\tgo test ./config/keepalived -run TestReference -update")
	}
}

// Every keyword is declared once per block, and every mapped keyword
// names an xlb key.
func TestKeywordTable(t *testing.T) {
	var walk func(path string, kws []*keyword)
	walk = func(path string, kws []*keyword) {
		seen := map[string]bool{}
		for _, k := range kws {
			for _, n := range append([]string{k.name}, k.alias...) {
				if seen[n] {
					t.Errorf("%s: %s is declared twice", path, n)
				}
				seen[n] = true
			}
			if k.st == mapped && k.xlb == "" {
				t.Errorf("%s: %s is mapped but names no xlb key", path, k.name)
			}
			if (k.st == ignored || k.st == unsupported) && k.note == "" {
				t.Errorf("%s: %s gives no reason", path, k.name)
			}
			if k.sub != nil {
				walk(path+" > "+k.name, k.sub)
			}
		}
	}
	walk("top", topKeywords)
}
