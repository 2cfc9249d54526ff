package control

import (
	"context"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/vrrp"
)

// TestForwardRoles: VRRP's events reach the daemon in order; once VRRP
// stops (its events channel closed) the loop ends instead of reading the
// closed channel's zero events as role changes; it ends with its context
// too.
func TestForwardRoles(t *testing.T) {
	events := make(chan vrrp.Event, 2)
	events <- vrrp.Event{Instance: "VI_1", To: vrrp.Master}
	events <- vrrp.Event{Instance: "VI_2", To: vrrp.Backup}
	close(events)
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		forwardRoles(t.Context(), events, func(ev vrrp.Event) { got = append(got, ev.Instance+" "+ev.To.String()) })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after VRRP's events were closed")
	}
	if len(got) != 2 || got[0] != "VI_1 MASTER" || got[1] != "VI_2 BACKUP" {
		t.Errorf("events %q, want VI_1 MASTER and VI_2 BACKUP, nothing after", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done = make(chan struct{})
	go func() {
		defer close(done)
		forwardRoles(ctx, make(chan vrrp.Event), func(vrrp.Event) { t.Error("an event from an empty channel") })
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after its context ended")
	}
}
