package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
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
		m := readmeBlock.FindStringSubmatch(b)
		seen[m[1]+" "+m[2]] = true
		if m[1] == "names" {
			return "<!-- names " + m[2] + " -->\n" + namesTable(t, m[2]) + "<!-- end -->"
		}
		return "<!-- keys " + m[2] + " -->\n" + readmeTable(sectionOf(m[2])) + "<!-- end -->"
	})
	for _, s := range sections {
		if s.name != "" && !seen["keys "+s.name] {
			t.Errorf("README.md has no <!-- keys %s --> block", s.name)
		}
	}
	for _, n := range []string{"scheduler", "forward"} {
		if !seen["names "+n] {
			t.Errorf("README.md has no <!-- names %s --> block", n)
		}
	}
	// The check types are described one by one, below their keys: each
	// names the ones it describes ("- `http`, `https` (HTTP_GET, ...").
	described := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		if head, ok := strings.CutPrefix(l, "- `"); ok {
			head, _, _ = strings.Cut(head, " (")
			head, _, _ = strings.Cut(head, ":")
			for _, n := range strings.Split(head, ", ") {
				described[strings.Trim(n, "`")] = true
			}
		}
	}
	for _, c := range checktype.Table {
		if !described[string(c.Type)] {
			t.Errorf("README.md describes no check type %q (a line starting \"- `%s`\")", c.Type, c.Type)
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

var readmeBlock = regexp.MustCompile(`(?s)<!-- (keys|names) (\S+) -->\n.*?<!-- end -->`)

// namesTable renders a table of names declared in dataplane.
func namesTable(t *testing.T, name string) string {
	var b strings.Builder
	code := func(s string) string {
		if s == "" {
			return "-"
		}
		return "`" + s + "`"
	}
	switch name {
	case "scheduler":
		b.WriteString("| scheduler | picks | XDP | IPVS |\n|---|---|---|---|\n")
		for _, s := range dataplane.SchedulerTable {
			xdp := "yes"
			if s.BPF == "" {
				xdp = "-"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Name, s.Doc, xdp, code(s.IPVS))
		}
	case "forward":
		b.WriteString("| forward | | ipvsadm | keepalived | status |\n|---|---|---|---|---|\n")
		for _, f := range dataplane.ForwardTable {
			fmt.Fprintf(&b, "| `%s` | %s | `%s` | `lb_kind %s` | %s |\n", f.Name, f.Doc, f.IPVSAdm, f.Keepalived, f.Status)
		}
	default:
		t.Errorf("README.md: unknown <!-- names %s --> block", name)
	}
	return b.String()
}

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

// README.md's example lists the values of its enumerated keys in comments
// ("scheduler = "mh"  # rr | wrr | ..."): they follow the key table.
// go test ./config -run TestREADMEExample -update rewrites them.
func TestREADMEExample(t *testing.T) {
	old, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]*key{}
	for _, name := range []string{"scheduler", "forward"} {
		keys[name] = &sectionOf("virtual_server").keys[sectionOf("virtual_server").index[name]]
	}
	hc := sectionOf("virtual_server.health_check")
	keys["type"] = &hc.keys[hc.index["type"]]
	seen := map[string]bool{}
	got := readmeExample.ReplaceAllStringFunc(string(old), func(l string) string {
		m := readmeExample.FindStringSubmatch(l)
		seen[m[2]] = true
		return m[1] + strings.Join(keys[m[2]].enum, " | ")
	})
	for name := range keys {
		if !seen[name] {
			t.Errorf("README.md's example has no %s = ... # a | b comment", name)
		}
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != string(old) {
		t.Errorf("README.md's example lists other values than the key table: run\n\tgo test ./config -run TestREADMEExample -update\nthen review the diff:\n%s", lineDiff(string(old), got))
	}
}

var readmeExample = regexp.MustCompile(`(?m)^(    (scheduler|forward|type) = "\w+" +# )\w+( \| \w+)+$`)
