package nldump_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xlb-dev/xlb/dataplane/nldump"
)

// TestRetry: a dump that a change interrupted runs again, and its next
// complete answer is used; one interrupted every time gives up after
// Tries runs with the error; any other error is not retried.
func TestRetry(t *testing.T) {
	for _, c := range []struct {
		name        string
		interrupted int   // runs interrupted before a complete one
		other       error // returned by the first run instead
		runs        int
		want        []int
		wantErr     error
	}{
		{"complete", 0, nil, 1, []int{1}, nil},
		{"interrupted twice", 2, nil, 3, []int{3}, nil},
		{"always interrupted", nldump.Tries + 3, nil, nldump.Tries, []int{nldump.Tries}, netlink.ErrDumpInterrupted},
		{"another error", 0, errors.New("boom"), 1, nil, errors.New("boom")},
	} {
		t.Run(c.name, func(t *testing.T) {
			runs := 0
			got, err := nldump.Retry(func() ([]int, error) {
				runs++
				switch {
				case c.other != nil:
					return nil, c.other
				case runs <= c.interrupted:
					return []int{runs}, fmt.Errorf("addresses: %w", netlink.ErrDumpInterrupted)
				}
				return []int{runs}, nil
			})
			if runs != c.runs || fmt.Sprint(got) != fmt.Sprint(c.want) || fmt.Sprint(err) != fmt.Sprint(c.wantErr) &&
				!(c.wantErr != nil && errors.Is(err, c.wantErr)) {
				t.Errorf("%d runs, %v, %v; want %d, %v, %v", runs, got, err, c.runs, c.want, c.wantErr)
			}
		})
	}
}
