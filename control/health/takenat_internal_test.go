package health

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTakenAt: an answer's time is when the tap took it, on the clock
// time.Now measures durations with; an unknown time (0), or one after
// the read, is the read's.
func TestTakenAt(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	read := time.Now()
	taken := ts.Nano() - int64(30*time.Millisecond)
	if d := read.Sub(takenAt(taken, read)); d < 30*time.Millisecond || d > 40*time.Millisecond {
		t.Errorf("taken 30 ms before the read: %v before it, want 30 ms", d)
	}
	for _, tk := range []int64{0, -1, ts.Nano() + int64(time.Second)} {
		if got := takenAt(tk, read); !got.Equal(read) {
			t.Errorf("taken %d: %v, want the read's time %v", tk, got, read)
		}
	}
}
