package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// heapHeaderRE is the header of a heap profile in text: its in-use
// objects and bytes, as sampled, and twice the sampling rate (Go's
// runtime.MemProfileRate; 0: allocations are not sampled).
var heapHeaderRE = regexp.MustCompile(`(?m)^heap profile: (\d+): \d+ \[\d+: \d+\] @ heap/(\d+)$`)

// TestPprofHeapSampled: `xlb run` samples its allocations only when
// [debug] pprof_listen serves its profiles (it starts with sampling off):
// with it, the heap profile it serves is sampled at Go's default rate.
func TestPprofHeapSampled(t *testing.T) {
	const listen = "127.0.0.1:6063"
	l := lab.New(t, lab.Spec{Directors: 1, Reals: 1, Scheduler: "rr", Extra: "\n[debug]\npprof_listen = \"" + listen + "\"\n"})
	d := l.Directors[0]
	d.Start()
	var prof string
	nettest.WaitFor(t, 20*time.Second, "a heap profile with samples", func() error {
		var err error
		if prof, err = getInNS(d, listen, "/debug/pprof/heap?debug=1"); err != nil {
			return err
		}
		m := heapHeaderRE.FindStringSubmatch(prof)
		if m == nil {
			return fmt.Errorf("no heap profile header in %.200q", prof)
		}
		if n, _ := strconv.Atoi(m[1]); n == 0 {
			return fmt.Errorf("no allocation sampled: %s", m[0])
		}
		if rate, _ := strconv.Atoi(m[2]); rate != 2*512<<10 {
			return fmt.Errorf("sampled at %d bytes (the header's heap/N is twice the rate), want Go's default 512 KiB: %s", rate/2, m[0])
		}
		return nil
	})
}

// getInNS fetches path from the HTTP server at addr in d's namespace.
func getInNS(d *lab.Director, addr, path string) (string, error) {
	var conn net.Conn
	if err := d.NS.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
