package health_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

func checkWeight(t *testing.T, s health.Spec) (health.Weight, error) {
	t.Helper()
	c, err := health.NewChecker(s)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	wc, ok := c.(health.WeightChecker)
	if !ok {
		t.Fatalf("%s checker sets no weight", s.Type)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	return wc.CheckWeight(ctx)
}

// The file's number as keepalived's track_file reads it (strtol base 0),
// and what FILE_CHECK makes of it with each weight.
func TestFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(weight int, reverse bool) health.Spec {
		return health.Spec{Type: checktype.File, Target: netip.MustParseAddrPort("10.0.0.7:80"), File: path,
			FileWeight: weight, FileReverse: reverse, Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1}
	}
	add := func(n int64) health.Weight { return health.Weight{Mode: health.WeightAdd, Value: n} }
	for _, tc := range []struct {
		content string // "<missing>": no file
		weight  int
		reverse bool
		up      bool
		want    health.Weight
	}{
		{"<missing>", 0, false, true, health.Weight{}}, // keepalived: a missing file reads 0
		{"0\n", 0, false, true, health.Weight{}},
		{"1\n", 0, false, false, health.Weight{}}, // weight 0: not 0 is down
		{"  -7 apples", 0, false, false, health.Weight{}},
		{"apples", 0, false, true, health.Weight{}}, // no number reads 0
		{"0", 0, true, false, health.Weight{}},      // reverse: 0 is down
		{"5", 0, true, true, health.Weight{}},
		{"5", 1, false, true, add(5)}, // keepalived's default weight 1: the number is added
		{"0x10", 2, false, true, add(32)},
		{"010", 1, false, true, add(8)}, // octal, as strtol base 0
		{"-3", 10, false, true, add(-30)},
		{"3", 10, true, true, add(-30)},
		{"2147483648", -1, false, false, add(0)}, // -2^31: keepalived's IPVS_WEIGHT_FAULT
	} {
		if tc.content == "<missing>" {
			os.Remove(path)
		} else {
			write(tc.content)
		}
		w, err := checkWeight(t, spec(tc.weight, tc.reverse))
		if (err == nil) != tc.up {
			t.Errorf("%q weight %d reverse %v: error %v, want up %v", tc.content, tc.weight, tc.reverse, err, tc.up)
		}
		if err == nil && w != tc.want {
			t.Errorf("%q weight %d reverse %v: weight %v, want %v", tc.content, tc.weight, tc.reverse, w, tc.want)
		}
	}
	// A number out of range is ignored: the last one stays.
	c, err := health.NewChecker(spec(1, false))
	if err != nil {
		t.Fatal(err)
	}
	wc := c.(health.WeightChecker)
	write("12")
	if w, err := wc.CheckWeight(context.Background()); err != nil || w != add(12) {
		t.Fatalf("12: %v %v", w, err)
	}
	write("99999999999")
	if w, err := wc.CheckWeight(context.Background()); err != nil || w != add(12) {
		t.Errorf("out of range after 12: %v %v, want +12 kept", w, err)
	}
	// Weight applies over the configured weight, bounded.
	for _, tc := range []struct {
		w         health.Weight
		cfg, want uint32
	}{
		{health.Weight{}, 7, 7}, {add(5), 7, 12}, {add(-30), 7, 0}, {add(70000), 7, 65535},
		{health.Weight{Mode: health.WeightSet, Value: 3}, 7, 3},
	} {
		if got := tc.w.Apply(tc.cfg); got != tc.want {
			t.Errorf("%v over %d: %d, want %d", tc.w, tc.cfg, got, tc.want)
		}
	}
	if err := (health.Spec{Type: checktype.File, Target: netip.MustParseAddrPort("10.0.0.7:80"), Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "missing file") {
		t.Errorf("no file: %v", err)
	}
}
