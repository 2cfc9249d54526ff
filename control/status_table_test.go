package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
	"github.com/xlb-dev/xlb/test/nettest"
)

// variedStatus is n services whose cells differ in width (long names,
// overrides, sorry servers, unresolved MACs, IPv6, non-ASCII names).
func variedStatus(n int) *Status {
	st := testStatus()
	base := st.Services[0]
	st.Services = nil
	for i := range n {
		s := base
		s.Name = strings.Repeat("é", i%7) + fmt.Sprint("svc", i)
		s.Up, s.Forwarding, s.SorryActive = i%3 != 0, i%4 != 0, i%5 == 0
		s.Persistence = int64(i % 2 * 300)
		if i%6 == 0 {
			s.Address = fmt.Sprintf("[2001:db8::%x]:443", i)
		}
		s.Reals = nil
		for j := range i % 4 {
			r := base.Reals[j%2]
			r.Address = fmt.Sprintf("10.78.%d.%d:%d", i, j, 80+j*1000*i)
			r.Weight, r.Effective = uint32(j*i), uint32(j)
			if j == 2 {
				w := uint32(i * 7)
				r.Override = &w
			}
			r.Sorry, r.Unresolved = j == 3, i%2 == 1
			r.ActiveConns, r.InactiveConns = uint64(i*j*12345), uint64(j)
			s.Reals = append(s.Reals, r)
		}
		st.Services = append(st.Services, s)
	}
	return st
}

// The services table is aligned exactly as text/tabwriter aligned it.
func TestServicesTableAsTabwriter(t *testing.T) {
	for _, n := range []int{0, 1, 2, 9, 40} {
		st := variedStatus(n)
		for _, f := range []Format{FormatConns, FormatStats, FormatRate} {
			var want bytes.Buffer
			tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
			servicesTable(tw, st.services(), f)
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			al := &aligner{}
			servicesTable(al, st.services(), f)
			al.measured(&got)
			servicesTable(al, st.services(), f)
			if got.String() != want.String() {
				t.Errorf("%d services, format %d:\n%s\nwant (tabwriter):\n%s", n, f, got.String(), want.String())
			}
		}
	}
}

// heapProbe is a writer that measures the heap in use once, when half of
// want bytes have gone through it.
type heapProbe struct {
	n, want int
	heap    uint64
}

func (p *heapProbe) Write(b []byte) (int, error) {
	p.n += len(b)
	if p.heap == 0 && p.n >= p.want/2 {
		p.heap = liveHeap()
	}
	return len(b), nil
}

// `xlb status` of 64,000 real servers writes its table as it makes it:
// what the formatting holds while it writes is small beside the text (the
// tabwriter held all 6 MB of it, and its cells, until the end).
func TestFormatStatusHoldsNoTable(t *testing.T) {
	st := manyServices(32000) // 64,000 real servers
	var size countWriter
	if err := FormatStatus(&size, st, FormatConns); err != nil {
		t.Fatal(err)
	}
	before := liveHeap()
	probe := &heapProbe{want: int(size)}
	if err := FormatStatus(probe, st, FormatConns); err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(st)
	held := int64(probe.heap) - int64(before)
	t.Logf("status text %d bytes; held while writing it: %d bytes", size, held)
	if held > int64(size)/8 {
		t.Errorf("FormatStatus held %d bytes while writing %d bytes of text", held, size)
	}
}

// countWriter counts what is written to it.
type countWriter int

func (c *countWriter) Write(b []byte) (int, error) { *c += countWriter(len(b)); return len(b), nil }

var _ io.Writer = (*countWriter)(nil)

// fullStatus is variedStatus with every field of every service and real
// server set, rates too, and strings encoding/json escapes.
func fullStatus() *Status {
	st := variedStatus(12)
	for i := range st.Services {
		s := &st.Services[i]
		s.Instance = "VI_<1>"
		s.SorryActive = true
		s.Rates = &Rates{CPS: 1.5, InPPS: 1e-7, OutPPS: 3e21, InBPS: 0, OutBPS: 12345.678}
		for j := range s.Reals {
			r := &s.Reals[j]
			r.HealthError = "dial \"x\" & y\n\u2028 \xff"
			r.Rates = &Rates{CPS: float64(j)}
		}
	}
	st.Services = append(st.Services, ServiceInfo{Name: "empty"}, ServiceInfo{Name: "none", Reals: []RealInfo{}})
	return st
}

// The services of the JSON status are written as encoding/json writes
// them (json.MarshalIndent, as json.Encoder with SetIndent wrote the
// whole status before).
func TestServiceJSONAsEncodingJSON(t *testing.T) {
	for _, st := range []*Status{fullStatus(), variedStatus(30), testStatus(), {Version: "v1", Services: []ServiceInfo{}}, {Version: "v1"}} {
		for i := range st.Services {
			want, err := json.MarshalIndent(&st.Services[i], "    ", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if got := appendServiceJSON(nil, &st.Services[i], "    "); string(got) != string(want) {
				t.Errorf("service %d:\n%s\nwant (encoding/json):\n%s", i, got, want)
			}
		}
		var want, got bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			t.Fatal(err)
		}
		if err := writeStatusJSON(&got, st); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("writeStatusJSON differs from json.Encoder")
		}
	}
}

// The JSON status costs no allocation per service: encoding/json's two
// buffers per service were 49 MB of garbage per status of 64,000 real
// servers.
func TestStatusJSONAllocations(t *testing.T) {
	st := manyServices(1000)
	for i := range st.Services { // rates are rare, and left to encoding/json
		st.Services[i].Rates = nil
		st.Services[i].Reals = slices.Clone(st.Services[i].Reals)
		for j := range st.Services[i].Reals {
			st.Services[i].Reals[j].Rates = nil
		}
	}
	allocs := testing.AllocsPerRun(3, func() {
		if err := writeStatusJSON(io.Discard, st); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 100 {
		t.Errorf("writeStatusJSON of %d services: %.0f allocations", len(st.Services), allocs)
	}
}

// streamHandler gives many services, and holds the last until released.
type streamHandler struct {
	statusHandler
	svc     ServiceInfo
	n       int
	release chan struct{}
}

// Status is the whole status, made as the daemon makes it.
func (h *streamHandler) Status(rates bool) *Status {
	st, services := h.StatusServices(rates)
	_ = services(func(s *ServiceInfo) error { st.Services = append(st.Services, *s); return nil })
	return st
}

func (h *streamHandler) StatusServices(bool) (*Status, Services) {
	return &Status{Version: "v1"}, func(fn func(*ServiceInfo) error) error {
		for i := range h.n {
			if i == h.n-1 {
				<-h.release
			}
			if err := fn(&h.svc); err != nil {
				return err
			}
		}
		return nil
	}
}

// `xlb status --json` is written as the daemon makes it: the first
// services reach the client before the last is made (the socket built the
// whole status first, 27 MB at 64,000 real servers).
func TestStatusStreamedAsMade(t *testing.T) {
	svc := testStatus().Services[0]
	for range 100 { // 100 real servers: 40 kB of JSON a service
		svc.Reals = append(svc.Reals, svc.Reals[0])
	}
	h := &streamHandler{svc: svc, n: 50, release: make(chan struct{})}
	_, path := serveSocket(t, h, SocketOptions{})
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- CallOutput(path, Request{Command: "status", Output: "json"}, pw); pw.Close() }()
	first := make([]byte, 256<<10)
	got := make(chan error, 1)
	go func() { _, err := io.ReadFull(pr, first); got <- err }()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(h.release)
		<-got
		t.Fatal("no 256 kB of the status before its last service was made")
	}
	close(h.release)
	rest, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(append(first, rest...), &back); err != nil || len(back.Services) != h.n || len(back.Services[h.n-1].Reals) != len(svc.Reals) {
		t.Errorf("status: %v, %d services", err, len(back.Services))
	}
}

// The daemon's streamed status (text and JSON) is its whole status.
func TestDaemonStatusStreamedIsWhole(t *testing.T) {
	r := startDaemonOn(t, dataplanetest.NewFake(), func(sock string) string { return scaleConfig(sock, "", 5, 3, "none", 8080) }, nil)
	nettest.WaitFor(t, 10*time.Second, "the first apply", func() error {
		if len(r.d.Status(false).Services) != 5 {
			return context.DeadlineExceeded
		}
		return nil
	})
	st := r.d.Status(false)
	for output, f := range map[string]Format{"text": FormatConns, "stats": FormatStats, "json": -1} {
		var want, got bytes.Buffer
		if f < 0 {
			if err := writeStatusJSON(&want, st); err != nil {
				t.Fatal(err)
			}
		} else if err := FormatStatus(&want, st, f); err != nil {
			t.Fatal(err)
		}
		if err := CallOutput(r.sock, Request{Command: "status", Output: output}, &got); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("status %s streamed:\n%s\nwant (whole):\n%s", output, got.String(), want.String())
		}
	}
}
