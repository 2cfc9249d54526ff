package config

import (
	"bufio"
	"os"
	"strings"
)

// PeekDataplane reads the [dataplane] table of the configuration file at
// path, on its own: what the daemon needs to start loading its program
// while it reads the rest (a file of 200,000 lines takes about as long as
// the kernel's verifier). It reads the file up to the end of that table.
// ok is false when the file has no [dataplane] table, or when the table
// alone is not a valid configuration (an interface missing, a value the
// full file would report). A key of the table set elsewhere (a dotted
// key, an inline table) is not seen: the result is a guess, which the
// caller checks against what Load returns.
func PeekDataplane(path string, env Env) (Dataplane, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Dataplane{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var b strings.Builder
	in := false
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			if in {
				break // the next table
			}
			if t, _, _ = strings.Cut(t, "#"); strings.TrimSpace(t) == "[dataplane]" {
				in = true
				b.WriteString("[dataplane]\n")
			}
			continue
		}
		if in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if !in || sc.Err() != nil {
		return Dataplane{}, false
	}
	c, err := parse(path, b.String(), env)
	if err != nil {
		return Dataplane{}, false
	}
	return c.Dataplane, true
}
