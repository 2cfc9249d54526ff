package health

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
// second, 10 ms makes a round of about 130 checks, whose SYNs leave with
// two sendmmsg calls (synbatch.go), and about 100 rounds a second. Each
// round is a sleep and a wake-up of the daemon (about 1,100 context
// switches a second with 4 ms rounds, 730 with 10 ms), and a wake-up of
// the threads the SYNs go to. A tcp check's answer waits in the tap's
// rings for the next round, as long (synTapReadEvery), but its run ends
// when the answer was taken (takenAt).
const timerSlack = 10 * time.Millisecond

func (realClock) Now() time.Time { return time.Now() }

func (realClock) TimerAt(deadline time.Time) Timer {
	return realTimer{time.NewTimer(time.Until(deadline) + timerSlack)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// roundWake is what the Manager's scheduler sleeps on between rounds with
// real time: a timerfd armed at the next round, waited for in Go's
// poller, and fired at once by a poke (Manager.poke). The poller's thread
// wakes when it fires and runs the scheduler itself. Woken by a Go timer
// and a channel, a round woke more of the runtime: the poller's thread
// twice (it sleeps whole milliseconds, and wakes before a timer that is
// not due on one), sysmon at the timer, and a spinning thread at the
// hand-off of the expiry to the scheduler's goroutine, which went back to
// sleep (futex). At 10,000 checks a second (about 270 rounds), the
// daemon's epoll_pwait calls went from 1,860 to 1,060 a second and its
// futex calls from 540 to 105 (vrrp's timerfd timers, likewise).
type roundWake struct {
	f    *os.File
	rc   syscall.RawConn
	read func(fd uintptr) bool // readFD, bound once
	arm  func(fd uintptr)      // armFD, bound once
	spec unix.ItimerSpec       // the scheduler's, for armFD
	// poked is set by poke: the wait returns at once (a poke that came
	// before it armed the timerfd again). Taken back when the wait ends:
	// a poke that came before, the round after sees what it changed; one
	// that comes after makes the next wait return at once.
	poked atomic.Bool
	buf   [8]byte
}

func newRoundWake() (*roundWake, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	w := &roundWake{f: os.NewFile(uintptr(fd), "health-schedule")}
	if w.rc, err = w.f.SyscallConn(); err != nil {
		w.f.Close()
		return nil, err
	}
	w.read, w.arm = w.readFD, w.armFD
	return w, nil
}

// wait sleeps until due (none: zero) and timerSlack, as realClock's
// timers, or synTapReadEvery when drain and that comes first, or a poke.
// Only the scheduler calls it.
func (w *roundWake) wait(due time.Time, drain bool) {
	d := time.Duration(-1)
	if !due.IsZero() {
		d = max(time.Until(due)+timerSlack, time.Nanosecond)
	}
	if drain && (d < 0 || d > synTapReadEvery) {
		d = synTapReadEvery
	}
	w.set(d)
	if w.poked.Swap(false) {
		return
	}
	_ = w.rc.Read(w.read)
	w.poked.Swap(false) // this wake covers the pokes so far (poked)
}

// readFD reads the timerfd's expirations, and reports false while it has
// none (the poller waits).
func (w *roundWake) readFD(fd uintptr) bool {
	_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&w.buf[0])), uintptr(len(w.buf)))
	return e != unix.EAGAIN
}

// poke ends the scheduler's wait, or makes its next one return at once.
func (w *roundWake) poke() {
	w.poked.Store(true)
	_ = w.rc.Control(fireFD)
}

// set arms the timerfd d from now (disarms it when d < 0); arming it
// again clears the expirations it had. Only the scheduler calls it.
func (w *roundWake) set(d time.Duration) {
	w.spec = unix.ItimerSpec{}
	if d >= 0 {
		w.spec.Value = unix.NsecToTimespec(int64(d))
	}
	_ = w.rc.Control(w.arm)
}

// armFD and fireFD arm the timerfd at w.spec, and to fire at once, with a
// raw system call (it does not wake sysmon: synbatch.go). Through the
// file's Control, which fails once it is closed: a poke racing the
// scheduler's exit arms nothing that took its descriptor's number.
func (w *roundWake) armFD(fd uintptr) {
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&w.spec)), 0, 0, 0)
}

func fireFD(fd uintptr) {
	spec := unix.ItimerSpec{Value: unix.Timespec{Nsec: 1}}
	unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
}

func (w *roundWake) close() { w.f.Close() }
