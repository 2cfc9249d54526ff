// Package alerts holds xlb's Prometheus alerting rules (xlb.rules.yml) and
// their unit tests (xlb.rules_test.yml), which promtool runs here.
package alerts

import (
	"os/exec"
	"strings"
	"testing"
)

// promtool checks the rules and runs their unit tests: each alert fires
// on the series of its situation, after its "for", and not before.
func TestRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool (Debian's prometheus package) is not installed: run .ci/deps")
	}
	for _, args := range [][]string{
		{"check", "rules", "xlb.rules.yml"},
		{"test", "rules", "xlb.rules_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
