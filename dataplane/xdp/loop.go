package xdp

import (
	"time"
)

// loop advances the program's clock, runs Sync periodically, and waits
// for the grace periods the Apply asks for (grace.go).
func (d *Dataplane) loop() {
	defer close(d.done)
	var clock, sync <-chan time.Time
	if !d.opts.ManualClock {
		if stop, err := d.startClock(); err == nil {
			defer stop()
		} else {
			t := time.NewTicker(ClockPeriod)
			defer t.Stop()
			clock = t.C
		}
	}
	if d.opts.SyncInterval > 0 {
		t := time.NewTicker(d.opts.SyncInterval)
		defer t.Stop()
		sync = t.C
	}
	for {
		select {
		case <-d.stop:
			return
		case <-clock:
			if err := d.tick(); err != nil {
				d.log.Warn("advance dataplane clock", "error", err)
			}
		case <-sync:
			if err := d.Sync(); err != nil {
				d.log.Warn("connection table sync", "error", err)
			}
		case <-d.graceKick:
			d.waitGrace()
			d.privatizeTables()
		}
	}
}
