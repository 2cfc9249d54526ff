package xdp

import (
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// maxVerifierInsns bounds the instructions the verifier may process for one
// program: its work sets the load time, and with it a daemon's restart
// (xlb_xdp at 973,043 instructions took 6 s to load, and a restarted
// master lost its role to the backup: TestRestartWithPins; at 155,000 it
// loads in about 0.2 s). The bound counts instructions, not time, so that
// a loaded machine does not fail it.
const maxVerifierInsns = 400_000

// TestVerifierCost loads every program of the object with the verifier's
// statistics and logs, per program, the instructions the verifier processed
// and the time the load took (go test -run TestVerifierCost -v); it fails
// for a program over maxVerifierInsns.
func TestVerifierCost(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	start := time.Now()
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %+v", err)
	}
	defer coll.Close()
	total := time.Since(start)
	names := make([]string, 0, len(coll.Programs))
	for name := range coll.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	re := regexp.MustCompile(`processed (\d+) insns`)
	for _, name := range names {
		log := coll.Programs[name].VerifierLog
		m := re.FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("%s: no processed instructions in the verifier's log:\n%s", name, log)
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: %d instructions processed by the verifier; %s", name, n, lastLines(log))
		if n > maxVerifierInsns {
			t.Errorf("%s: the verifier processed %d instructions, more than %d: its load slows a restart",
				name, n, maxVerifierInsns)
		}
	}
	t.Logf("collection loaded in %v", total.Round(time.Millisecond))
}

// lastLines returns the verifier log's statistics lines, joined.
func lastLines(log string) string {
	m := regexp.MustCompile(`(?m)^(processed .*|verification time .*)$`).FindAllString(log, -1)
	out := ""
	for _, s := range m {
		if out != "" {
			out += "; "
		}
		out += s
	}
	return out
}
