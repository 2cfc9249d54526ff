package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// TestDaemonSmoke: one director, DR, rr: requests are answered by the real
// servers in order.
func TestDaemonSmoke(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 2, Scheduler: "rr"})
	d := l.Directors[0]
	d.Start()
	nettest.WaitFor(t, 20*time.Second, "a real server answers", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	var got []string
	for range 6 {
		s, err := l.Get(2 * time.Second)
		if err != nil {
			t.Fatalf("request: %v\n%s", err, l.Logs())
		}
		got = append(got, s)
	}
	t.Logf("answers: %v", got)
	out, err := d.StatusText()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("xlb status:\n%s", out)
	if !strings.Contains(out, "rs1") && !strings.Contains(out, "10.77.0.11") {
		t.Errorf("status lacks the real servers:\n%s", out)
	}
}
