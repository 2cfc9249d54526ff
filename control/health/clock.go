package health

import "time"

// Clock is the time source of the Manager's scheduler, injectable so tests
// drive scheduling without waiting. Only scheduling uses it: the timeout of
// a running check and its measured duration are real time, because the
// check does real I/O.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that fires once at deadline (at once when it
	// has passed). An absolute deadline, unlike a duration, cannot be
	// shifted by time moving between reading Now and arming the timer.
	TimerAt(deadline time.Time) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// realClock is the Clock of the time package. Its timers fire up to
// timerSlack late, so that the checks due within that time start in one
// round of the scheduler: at 12,800 checks a second, a round and a timer
// for each was much of the scheduler's work.
type realClock struct{}

// timerSlack is how late a realClock timer may fire: nothing next to a
// check's interval (±10% of jitter) and timeout. At 12,800 checks a
// second, 4 ms makes a round of about 50 checks, whose SYNs leave with
// one sendmmsg (synbatch.go), and about 250 rounds a second.
const timerSlack = 4 * time.Millisecond

func (realClock) Now() time.Time { return time.Now() }

func (realClock) TimerAt(deadline time.Time) Timer {
	return realTimer{time.NewTimer(time.Until(deadline) + timerSlack)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }
