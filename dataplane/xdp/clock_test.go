package xdp

import (
	"fmt"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Without ManualClock the program's clock advances every ClockPeriod (a
// timerfd's expiries, startClock).
func TestClockAdvances(t *testing.T) {
	e := newEnvOpts(t, Options{SyncInterval: -1, MapSizes: testSizes})
	first, err := e.d.now()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var last uint64
	nettest.WaitFor(t, 5*time.Second, "three ticks of the clock", func() error {
		if last, err = e.d.now(); err != nil {
			return err
		}
		if d := time.Duration(last - first); d < 3*ClockPeriod {
			return fmt.Errorf("advanced %v", d)
		}
		return nil
	})
	// Coarse: it moves by ticks, within a tick (and the coarse clock's
	// jiffy) of the time.
	if got, want := time.Duration(last-first), time.Since(start); got > want+ClockPeriod+10*time.Millisecond {
		t.Errorf("clock advanced %v in %v", got, want)
	}
}
