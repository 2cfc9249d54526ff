package keepalived

import (
	"fmt"
	"strings"
)

// reference renders the keyword table as Markdown tables, one per block
// (README.md's generated part; TestReference keeps them equal).
func reference() string {
	var b strings.Builder
	var walk func(title string, kws []*keyword)
	seen := map[string]bool{}
	walk = func(title string, kws []*keyword) {
		if seen[title] {
			return
		}
		seen[title] = true
		fmt.Fprintf(&b, "\n### %s\n\n| keyword | xlb | status | |\n|---|---|---|---|\n", title)
		for _, k := range kws {
			name := "`" + k.name + "`"
			for _, a := range k.alias {
				name += ", `" + a + "`"
			}
			xlb := k.xlb
			if xlb == "" {
				xlb = "-"
			} else {
				xlb = "`" + strings.ReplaceAll(xlb, "`", "") + "`"
			}
			note := strings.ReplaceAll(k.note, "|", "\\|")
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, xlb, statusText[k.st], note)
		}
		for _, k := range kws {
			if k.sub != nil {
				t := k.doc
				if !strings.HasPrefix(title, "top level") {
					t = title + " > " + k.doc
				}
				walk(t, k.sub)
			}
		}
	}
	walk("top level", topKeywords)
	return b.String()
}
