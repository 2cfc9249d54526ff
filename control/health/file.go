package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
)

// fileChecker reads a number from a file, as keepalived's FILE_CHECK and
// its track_file (check_file.c, track_file.c process_track_file and
// update_track_file_status):
//
//   - the number is the file's first 127 bytes read as strtol(buf, NULL,
//     0) reads them: leading white space, a sign, 0x for hex, 0 for octal,
//     digits up to the first other character. A file that is missing,
//     empty or starts with no number reads 0; a number out of the 32-bit
//     range is ignored (the last one stays);
//   - FileWeight 0: the check fails while the number is not 0 (with
//     FileReverse, while it is 0); the weight stays the configured one;
//   - FileWeight W: number x W (x -1 with FileReverse) is added to the
//     configured weight (the sum bounded to 0..65535); the check fails
//     only when that product is at most -2^31 (keepalived's
//     IPVS_WEIGHT_FAULT), so in practice it sets weights.
//
// keepalived follows the file with inotify; xlb reads it every interval.
type fileChecker struct {
	path    string
	weight  int64
	reverse bool

	mu   sync.Mutex
	last int64 // the last valid number
}

func newFileChecker(s Spec) *fileChecker {
	return &fileChecker{path: s.File, weight: int64(s.FileWeight), reverse: s.FileReverse}
}

func (c *fileChecker) Check(ctx context.Context) error {
	_, err := c.CheckWeight(ctx)
	return err
}

func (c *fileChecker) CheckWeight(context.Context) (Weight, error) {
	v, err := c.read()
	if err != nil {
		return Weight{}, err
	}
	if c.weight == 0 {
		if (v != 0) != c.reverse {
			return Weight{}, fmt.Errorf("file %s reads %d", c.path, v)
		}
		return Weight{}, nil
	}
	mult := int64(1)
	if c.reverse {
		mult = -1
	}
	// |v| <= 2^31 and |weight| <= 65535: no overflow.
	w := v * c.weight * mult
	if w <= math.MinInt32 {
		return Weight{}, fmt.Errorf("file %s reads %d: weight %d", c.path, v, w)
	}
	return Weight{Mode: WeightAdd, Value: min(w, math.MaxInt32)}, nil
}

// read returns the file's number (process_track_file).
func (c *fileChecker) read() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.Open(c.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.last = 0 // keepalived: a file that disappears reads 0
			return 0, nil
		}
		return 0, fmt.Errorf("file check: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 127)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, fmt.Errorf("file check: %w", err)
	}
	v, ok := strtol(string(buf[:n]))
	if !ok || v < math.MinInt32 || v > math.MaxInt32+1 {
		return c.last, nil // keepalived: "Invalid number ... ignoring"
	}
	c.last = v
	return v, nil
}

// strtol reads a number as C's strtol(s, NULL, 0): it returns 0 and true
// when s starts with no number, and false when the number overflows.
func strtol(s string) (int64, bool) {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := uint64(10)
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && hexDigit(s[2]) < 16:
		base, s = 16, s[2:]
	case len(s) > 0 && s[0] == '0':
		base = 8
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := uint64(hexDigit(s[i]))
		if d >= base {
			break
		}
		v = v*base + d
		if v > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

func hexDigit(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}
