package xdp

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// startClock advances the program's clock every ClockPeriod in a
// goroutine of its own, from a periodic timerfd waited for in Go's
// poller, until stop is called. The poller's thread wakes once at each
// expiry and runs the tick itself. A time.Ticker woke the runtime more:
// the poller's thread twice (it sleeps whole milliseconds and wakes before
// a timer that is not due on one), sysmon at the timer, and a spinning
// thread at the hand-off of the tick to the loop's goroutine; ten times a
// second, the most of an idle daemon's wake-ups (issue 13).
func (d *Dataplane) startClock() (stop func(), err error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "xlb-clock")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	period := unix.NsecToTimespec(int64(ClockPeriod))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: period, Value: period}, nil); err != nil {
		f.Close()
		return nil, os.NewSyscallError("timerfd_settime", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [8]byte
		read := func(fd uintptr) bool {
			_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			return e != unix.EAGAIN
		}
		for {
			// Expirations missed (the process stopped, the CPU busy)
			// make one tick: the program reads the time itself.
			if err := rc.Read(read); err != nil {
				return // closed: stop
			}
			runtime.KeepAlive(&buf)
			if err := d.tick(); err != nil {
				d.log.Warn("advance dataplane clock", "error", err)
			}
		}
	}()
	return func() {
		f.Close()
		<-done
	}, nil
}
