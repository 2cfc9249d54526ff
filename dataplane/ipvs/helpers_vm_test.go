//go:build vmtest

package ipvs_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/ipvs"
	"github.com/xlb-dev/xlb/test/nettest"
)

// recorder is a slog handler that keeps the dataplane's change records
// ("ipvs service created", "ipvs real server updated", ...), so tests can
// assert what Apply did and did not touch.
type recorder struct {
	mu      sync.Mutex
	changes []string
	t       testing.TB
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "key" || a.Key == "backend" || a.Key == "change" {
			line += " " + a.Value.String()
		}
		return true
	})
	r.t.Logf("log: %s %s", rec.Level, line)
	if strings.HasPrefix(rec.Message, "ipvs service ") || strings.HasPrefix(rec.Message, "ipvs real server ") {
		r.mu.Lock()
		r.changes = append(r.changes, line)
		r.mu.Unlock()
	}
	return nil
}

// take returns and clears the changes recorded so far.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.changes
	r.changes = nil
	return c
}

// director is a namespace with the IPVS dataplane driving its tables.
type director struct {
	ns  *nettest.NS
	dp  *ipvs.Dataplane
	rec *recorder
}

func newDirector(t *testing.T, ns *nettest.NS) *director {
	t.Helper()
	rec := &recorder{t: t}
	dp, err := ipvs.New(ipvs.Options{Logger: slog.New(rec), NetNS: "/run/netns/" + ns.Name})
	if err != nil {
		t.Fatalf("ipvs.New: %v", err)
	}
	t.Cleanup(func() { dp.Close() })
	rec.take()
	return &director{ns: ns, dp: dp, rec: rec}
}

func (d *director) apply(t *testing.T, services ...dataplane.Service) {
	t.Helper()
	if err := d.dp.Apply(context.Background(), services); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func (d *director) stats(t *testing.T) *dataplane.Stats {
	t.Helper()
	st, err := d.dp.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

// table is /proc/net/ip_vs of the director's namespace, as the kernel
// lists it (services hashed, real servers in list order), normalised:
// "TCP 192.0.2.100:80 rr persistent FFFFFFFF" (the timeout, in jiffies, is
// left out) and "  -> 192.0.2.11:80 Route 1".
func (d *director) table(t *testing.T) []string {
	t.Helper()
	out := d.ns.MustRun(t, "cat", "/proc/net/ip_vs")
	var lines []string
	for _, l := range strings.Split(out, "\n")[3:] {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[0] != "->":
			if len(f) == 6 && f[3] == "persistent" {
				f = append(f[:4], f[5])
			}
			s := f[0] + " " + procAddr(t, f[1]) + " " + strings.Join(f[2:], " ")
			lines = append(lines, s)
		case len(f) >= 4 && f[0] == "->":
			lines = append(lines, "  -> "+procAddr(t, f[1])+" "+f[2]+" "+f[3])
		}
	}
	return lines
}

// procAddr decodes an address of /proc/net/ip_vs.
func procAddr(t *testing.T, s string) string {
	t.Helper()
	a, err := nettest.ProcIPVSAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a.String()
}

// connEntries counts the director's IPVS connection entries towards a
// real server (/proc/net/ip_vs_conn).
func (d *director) connEntries(t *testing.T, rs netip.AddrPort) int {
	t.Helper()
	out := d.ns.MustRun(t, "cat", "/proc/net/ip_vs_conn")
	n := 0
	for _, l := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) >= 7 && procAddr(t, f[5]+":"+f[6]) == rs.String() {
			n++
		}
	}
	return n
}

// server is an HTTP server in a real server's namespace that answers with
// its name and the client's address.
func server(t *testing.T, ns *nettest.NS, name, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// client makes HTTP requests from a namespace, one new connection each.
type client struct {
	ns *nettest.NS
	hc *http.Client
}

func newClient(ns *nettest.NS) *client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 20 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &client{ns: ns, hc: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}}
}

// get returns the name of the real server that answered, and the client
// address it saw.
func (c *client) get(t *testing.T, url string) (string, string) {
	t.Helper()
	resp, err := c.hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, c.ns.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	name, peer, _ := strings.Cut(string(b), " ")
	return name, peer
}

// held is a kept-alive HTTP connection through the director.
type held struct {
	conn net.Conn
	r    *bufio.Reader
}

func hold(t *testing.T, ns *nettest.NS, addr string) *held {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 20*time.Second); return err }); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &held{conn: c, r: bufio.NewReader(c)}
}

// get sends one request on the held connection and returns who answered.
func (h *held) get(t *testing.T) string {
	t.Helper()
	h.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(h.conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		t.Fatalf("held connection: write: %v", err)
	}
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("held connection: read: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("held connection: body: %v", err)
	}
	name, _, _ := strings.Cut(string(b), " ")
	return name
}

// persistence reads a service's persistence timeout back from the kernel.
func (d *director) persistence(t *testing.T, k dataplane.ServiceKey) time.Duration {
	t.Helper()
	h, err := mobyipvs.New("/run/netns/" + d.ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.Port == k.Port && uint8(s.Protocol) == uint8(k.Proto) && s.Address.Equal(k.Addr.AsSlice()) {
			if s.Flags&1 == 0 {
				return 0
			}
			return time.Duration(s.Timeout) * time.Second
		}
	}
	t.Fatalf("no service %s installed", k)
	return 0
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func key(addr string, port uint16, proto dataplane.Proto) dataplane.ServiceKey {
	return dataplane.ServiceKey{Addr: mustAddr(addr), Port: port, Proto: proto}
}

func backend(addr string, port uint16, weight uint32) dataplane.Backend {
	return dataplane.Backend{Addr: mustAddr(addr), Port: port, Weight: weight}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func writeFile(t *testing.T, path, value string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatal(err)
	}
}
