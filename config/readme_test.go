package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// config/README.md's key tables are generated from the key table: each
// "<!-- keys SECTION -->" ... "<!-- end -->" block holds its section's keys.
// go test ./config -run TestREADMEKeys -update rewrites them.
func TestREADMEKeys(t *testing.T) {
	old, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	got := readmeBlock.ReplaceAllStringFunc(string(old), func(b string) string {
		name := readmeBlock.FindStringSubmatch(b)[1]
		seen[name] = true
		return "<!-- keys " + name + " -->\n" + readmeTable(sectionOf(name)) + "<!-- end -->"
	})
	for _, s := range sections {
		if s.name != "" && !seen[s.name] {
			t.Errorf("README.md has no <!-- keys %s --> block", s.name)
		}
	}
	if *update {
		if err := os.WriteFile("README.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != string(old) {
		t.Errorf("config/README.md's key tables differ from the key table (keys.go): run\n\tgo test ./config -run TestREADMEKeys -update\nthen review the diff:\n%s", lineDiff(string(old), got))
	}
}

var readmeBlock = regexp.MustCompile(`(?s)<!-- keys (\S+) -->\n.*?<!-- end -->`)

// typeText describes the values k accepts, for the README.
func (k *key) typeText() string {
	if k.typ != "" {
		return k.typ
	}
	noun, each := kinds[k.kind].noun, ""
	if k.kind == kEntry {
		noun = "string"
	}
	if k.list {
		noun, each = "array of "+noun+"s", "each "
		noun = strings.Replace(noun, "sss", "sses", 1)
	}
	switch k.kind {
	case kBool:
		return noun
	case kInt:
		return noun + " " + rangeString(k.lo, k.hi)
	case kDuration:
		lo, hi := time.Duration(k.lo), time.Duration(k.hi)
		s := fmt.Sprintf("duration, at least %v", lo)
		if lo == 0 {
			s = "duration"
		}
		if hi > 0 {
			s = fmt.Sprintf("duration %v..%v", lo, hi)
		}
		if k.step == time.Second {
			s += ", whole seconds"
		}
		return s
	case kEnum:
		return strings.ReplaceAll(orList(k.enum), `"`, "`")
	}
	return fmt.Sprintf("%s, %sat most %d bytes", noun, each, k.maxLen())
}

// defaultText is k's default for the README.
func (k *key) defaultText() string {
	switch {
	case k.req != "":
		return "required"
	case k.def != "" && k.note != "":
		return "`" + k.def + "` " + k.note
	case k.def != "":
		return "`" + k.def + "`"
	case k.note != "":
		return k.note
	}
	return "none"
}

// readmeTable renders a section's keys as a Markdown table.
func readmeTable(s *section) string {
	var b strings.Builder
	b.WriteString("| key | type | default | keepalived | |\n|---|---|---|---|---|\n")
	for i := range s.keys {
		k := &s.keys[i]
		if k.kind == kTable || k.kind == kTables {
			continue
		}
		ka := "-"
		if k.ka != "" {
			ka = "`" + k.ka + "`"
		}
		doc := k.doc
		if k.only != nil {
			doc += "; " + strings.ReplaceAll(orList(k.only), `"`, "`") + " checks only"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", k.name, k.typeText(), k.defaultText(), ka, doc)
	}
	return b.String()
}
