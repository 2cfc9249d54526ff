package xdp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
	"github.com/xlb-dev/xlb/test/packet"
)

// End-to-end tests: real clients and servers in network namespaces, the
// dataplane attached in native mode to the director's veths.

// e2eTimeout bounds every wait of these tests: generous, the machine is
// shared.
const e2eTimeout = 15 * time.Second

var (
	dirEth0IP4 = netip.MustParseAddr("192.0.2.1")
	dirEth0IP6 = netip.MustParseAddr("2001:db8:c::1")
)

// labNS is a namespace of these labs. IPv6 duplicate address detection
// is off: the director forwards IPv6 from its first packet on.
func labNS(t *testing.T, label string) *nettest.NS {
	t.Helper()
	ns := nettest.NewNS(t, label)
	nettest.NoDAD(t, ns)
	return ns
}

// openDirector attaches the dataplane (native XDP) to the director's eth0
// and eth1 and detaches it when the test ends.
func openDirector(t *testing.T, ns *nettest.NS) *Dataplane {
	t.Helper()
	var d *Dataplane
	if err := ns.Do(func() (err error) {
		d, err = Open(Options{Interfaces: []string{"eth0", "eth1"}, Mode: dataplane.AttachNative, SyncInterval: -1, MapSizes: testSizes})
		return err
	}); err != nil {
		t.Fatalf("open the dataplane in the director: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	if info := d.Info(); info.Attach != "native" {
		t.Fatalf("attached %q, want native", info.Attach)
	}
	return d
}

// setupDirector sets up a director namespace: eth0 toward the clients
// (192.0.2.1, 2001:db8:c::1), eth1 toward the real servers (10.0.1.254,
// 2001:db8:1::fe), forwarding on. The client gets its addresses and
// default routes via the director.
func setupDirector(t *testing.T, cli, dir *nettest.NS) {
	t.Helper()
	nettest.Sysctl(t, dir, "net.ipv4.conf.all.forwarding", "1")
	nettest.Sysctl(t, dir, "net.ipv6.conf.all.forwarding", "1")
	nettest.Addr(t, dir, "eth0", dirEth0IP4.String()+"/24")
	nettest.Addr(t, dir, "eth0", dirEth0IP6.String()+"/64")
	nettest.Addr(t, dir, "eth1", eth1IP4.String()+"/24")
	nettest.Addr(t, dir, "eth1", eth1IP6.String()+"/64")
	nettest.Addr(t, cli, "eth0", client4.String()+"/24")
	nettest.Addr(t, cli, "eth0", client6.String()+"/64")
	cli.MustRun(t, "ip", "route", "add", "default", "via", dirEth0IP4.String())
	cli.MustRun(t, "ip", "-6", "route", "add", "default", "via", dirEth0IP6.String())
	// Native XDP redirect toward a veth needs NAPI on its peer.
	nettest.GRO(t, cli, "eth0")
	// Complete checksums, as from a wire: the director rewrites packets.
	nettest.TxChecksumOff(t, cli, "eth0")
}

// realServer is a real server namespace of the NAT lab: an HTTP server
// on :8080 answering with its name, a UDP echo on :5353 answering
// "<name>:<payload>", on both its addresses.
type realServer struct {
	name         string
	ns           *nettest.NS
	addr4, addr6 netip.Addr
}

func (rs *realServer) addr(v6 bool) netip.Addr {
	if v6 {
		return rs.addr6
	}
	return rs.addr4
}

// bigBody is what GET /big returns: 1 MB, not a repeated short pattern.
var bigBody = func() []byte {
	b := make([]byte, 1<<20)
	x := uint32(1)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}()

func (rs *realServer) serve(t *testing.T) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, rs.name) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Server", rs.name)
		w.Write(bigBody)
	})
	for _, a := range []netip.Addr{rs.addr4, rs.addr6} {
		var ln net.Listener
		var pc net.PacketConn
		if err := rs.ns.Do(func() (err error) {
			if ln, err = net.Listen("tcp", netip.AddrPortFrom(a, 8080).String()); err != nil {
				return err
			}
			pc, err = net.ListenPacket("udp", netip.AddrPortFrom(a, 5353).String())
			return err
		}); err != nil {
			t.Fatalf("%s: listen: %v", rs.name, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: e2eTimeout}
		served := make(chan struct{})
		go func() { defer close(served); srv.Serve(ln) }()
		echoed := make(chan struct{})
		go func() {
			defer close(echoed)
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(rs.name+":"), buf[:n]...), from)
			}
		}()
		t.Cleanup(func() {
			srv.Close()
			pc.Close()
			<-served
			<-echoed
		})
	}
}

// natLab is the LVS-NAT topology: a client (192.0.2.10, 2001:db8:c::10),
// the director, and two real servers (10.0.1.1 and .2, 2001:db8:1::1
// and ::2) on a bridge behind the director's eth1, their default gateway.
type natLab struct {
	cli, dir, sw *nettest.NS
	rs           []*realServer
	d            *Dataplane
}

func newNATLab(t *testing.T) *natLab {
	t.Helper()
	l := &natLab{cli: labNS(t, "cli"), dir: labNS(t, "dir"), sw: labNS(t, "sw")}
	sw := l.sw
	nettest.Veth(t, l.cli, "eth0", l.dir, "eth0")
	nettest.Veth(t, l.dir, "eth1", sw, "dir")
	ports := []string{"dir"}
	for i := range 2 {
		rs := &realServer{
			name:  fmt.Sprintf("rs%d", i+1),
			ns:    labNS(t, "rs"),
			addr4: netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}),
			addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%d", i+1)),
		}
		nettest.Veth(t, rs.ns, "eth0", sw, rs.name)
		nettest.Addr(t, rs.ns, "eth0", rs.addr4.String()+"/24")
		nettest.Addr(t, rs.ns, "eth0", rs.addr6.String()+"/64")
		nettest.TxChecksumOff(t, rs.ns, "eth0")
		rs.ns.MustRun(t, "ip", "route", "add", "default", "via", eth1IP4.String())
		rs.ns.MustRun(t, "ip", "-6", "route", "add", "default", "via", eth1IP6.String())
		ports = append(ports, rs.name)
		l.rs = append(l.rs, rs)
	}
	nettest.Bridge(t, sw, "br0", ports...)
	setupDirector(t, l.cli, l.dir)
	nettest.GRO(t, sw, "dir")
	l.d = openDirector(t, l.dir)

	var svcs []dataplane.Service
	for _, vip := range []netip.Addr{vip4b, vip6} {
		for _, p := range []struct {
			proto       dataplane.Proto
			port, rport uint16
		}{{dataplane.TCP, 80, 8080}, {dataplane.UDP, 53, 5353}} {
			s := dataplane.Service{
				Name: "nat-" + p.proto.String(), Key: dataplane.ServiceKey{Addr: vip, Port: p.port, Proto: p.proto},
				Scheduler: dataplane.RoundRobin, Forward: dataplane.NAT, Enabled: true,
			}
			for _, rs := range l.rs {
				s.Backends = append(s.Backends, dataplane.Backend{Addr: rs.addr(vip.Is6()), Port: p.rport, Weight: 1})
			}
			svcs = append(svcs, s)
		}
	}
	if err := l.dir.Do(func() error { return l.d.Apply(t.Context(), svcs) }); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, rs := range l.rs {
		rs.serve(t)
	}
	return l
}

// dial connects from the client namespace.
func (l *natLab) dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := l.cli.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// httpClient makes each request on a new connection from the client
// namespace.
func (l *natLab) httpClient() *http.Client {
	d := &net.Dialer{Timeout: e2eTimeout}
	return &http.Client{
		Timeout: e2eTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return l.dial(ctx, d, network, addr)
			},
		},
	}
}

// get returns the body of an HTTP GET and the X-Server header.
func get(c *http.Client, url string) ([]byte, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, resp.Header.Get("X-Server"), nil
}

// twoCPUs returns two CPUs this process may run on; ok is false on a
// machine with one.
func twoCPUs() (a, b int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, false
	}
	var cpus []int
	for i := 0; i < 1024 && len(cpus) < 2; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return 0, 0, false
	}
	return cpus[0], cpus[1], true
}

// onCPU runs fn on the calling goroutine's OS thread bound to cpu; the
// caller must have locked the goroutine to its thread. cpu < 0: anywhere.
func onCPU(cpu int, fn func() error) error {
	if cpu < 0 {
		return fn()
	}
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return fmt.Errorf("get CPU affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("bind to CPU %d: %w", cpu, err)
	}
	err := fn()
	if rerr := unix.SchedSetaffinity(0, &old); rerr != nil {
		return errors.Join(err, fmt.Errorf("restore CPU affinity: %w", rerr))
	}
	return err
}

// exchangeFrom makes one HTTP request on a connection from a fixed client
// address and port; the server closes first (Connection: close), so the
// client's side of the connection ends in CLOSED, not TIME_WAIT. The
// client connects on CPU connectCPU and sends its request from
// requestCPU (< 0: any): on veth, the director handles a packet on the
// CPU that sent it, so the handshake and the request reach the director
// on different CPUs.
func (l *natLab) exchangeFrom(local, vip netip.AddrPort, connectCPU, requestCPU int) (string, error) {
	d := &net.Dialer{Timeout: e2eTimeout, LocalAddr: net.TCPAddrFromAddrPort(local)}
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	var c net.Conn
	if err := l.cli.Do(func() error {
		return onCPU(connectCPU, func() (err error) {
			c, err = d.DialContext(ctx, "tcp", vip.String())
			return err
		})
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(e2eTimeout))
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		errc <- onCPU(requestCPU, func() error {
			_, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", vip.Addr())
			return err
		})
	}()
	if err := <-errc; err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return "", fmt.Errorf("read response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return "", fmt.Errorf("after the response: %v, want the server's FIN", err)
	}
	return string(body), nil
}

// query sends one datagram from a fixed client port on a connected UDP
// socket, which takes the reply only from the address it is connected to.
func (l *natLab) query(local, vip netip.AddrPort, payload string) (string, error) {
	d := &net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(local)}
	c, err := l.dial(context.Background(), d, "udp", vip.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(e2eTimeout))
	if _, err := io.WriteString(c, payload); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("no reply from %s: %w", vip, err)
	}
	return string(buf[:n]), nil
}

// netCounters reads a namespace's protocol counters: "Tcp:OutSegs",
// "TcpExt:TCPSynRetrans", "Ip:ForwDatagrams" (/proc/net/snmp and netstat)
// and "Ip6OutForwDatagrams" (/proc/net/snmp6).
func netCounters(t *testing.T, ns *nettest.NS) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	if err := ns.Do(func() error {
		for _, f := range []string{"snmp", "netstat"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + f)
			if err != nil {
				return err
			}
			// Pairs of lines: "Proto: Name1 Name2...", "Proto: 1 2...".
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				for j := 1; j < len(names) && j < len(values); j++ {
					n, _ := strconv.ParseInt(values[j], 10, 64) // some are signed (Tcp:MaxConn)
					out[names[0]+names[j]] = uint64(n)
				}
			}
		}
		b, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 2 {
				out[f[0]], _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("counters of %s: %v", ns.Name, err)
	}
	return out
}

// tcpSent is how many TCP segments a namespace sent, retransmissions
// included: Tcp:OutSegs leaves retransmitted segments to RetransSegs,
// except SYN-ACKs, counted in both. listener: the namespace only accepts
// connections, so its TCPSynRetrans are SYN-ACK retransmissions (a
// client's are SYN retransmissions, counted once).
func tcpSent(c map[string]uint64, listener bool) uint64 {
	n := c["Tcp:OutSegs"] + c["Tcp:RetransSegs"]
	if listener {
		n -= c["TcpExt:TCPSynRetrans"]
	}
	return n
}

func (l *natLab) stats(t *testing.T) *dataplane.Stats {
	t.Helper()
	st, err := l.d.Stats(t.Context())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

// TestE2ENAT: real HTTP and UDP clients and servers through a NAT
// director, for IPv4 and IPv6, with port mapping (80 -> 8080, 53 -> 5353)
// and round robin over two real servers.
func TestE2ENAT(t *testing.T) {
	t.Parallel()
	l := newNATLab(t)
	cli0 := netCounters(t, l.cli)
	rs0 := make([]map[string]uint64, len(l.rs))
	for i, rs := range l.rs {
		rs0[i] = netCounters(t, rs.ns)
	}
	dir0 := netCounters(t, l.dir)

	for _, fam := range []struct {
		name   string
		cli    netip.Addr
		vip    netip.Addr
		v6     bool
		portLo uint16 // first of the fixed client ports of this family
	}{
		{"ipv4", client4, vip4b, false, 20000},
		{"ipv6", client6, vip6, true, 21000},
	} {
		t.Run(fam.name, func(t *testing.T) {
			tcpKey := dataplane.ServiceKey{Addr: fam.vip, Port: 80, Proto: dataplane.TCP}
			udpKey := dataplane.ServiceKey{Addr: fam.vip, Port: 53, Proto: dataplane.UDP}
			rsByName := map[string]*realServer{}
			for _, rs := range l.rs {
				rsByName[rs.name] = rs
			}
			served := map[string]int{} // TCP connections answered, by real server

			t.Run("http", func(t *testing.T) {
				// Short requests, each on a new connection: rr alternates.
				hc := l.httpClient()
				base := "http://" + netip.AddrPortFrom(fam.vip, 80).String()
				const requests = 6
				got := map[string]int{}
				for i := range requests {
					body, _, err := get(hc, base+"/")
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					got[string(body)]++
					served[string(body)]++
				}
				for _, rs := range l.rs {
					if got[rs.name] != requests/len(l.rs) {
						t.Errorf("rr served %v, want %d requests each", got, requests/len(l.rs))
						break
					}
				}
				// A long response: hundreds of segments translated back.
				body, from, err := get(hc, base+"/big")
				if err != nil {
					t.Fatalf("1 MB response: %v", err)
				}
				served[from]++
				if !bytes.Equal(body, bigBody) {
					t.Fatalf("1 MB response from %s: got %d bytes, not the ones sent", from, len(body))
				}
			})

			t.Run("same client port after close", func(t *testing.T) {
				// Connections one after the other from one client port:
				// the director's entry of the closed connection gives way
				// to the new one, scheduled anew (the next real server of
				// the rr cycle), which must get all of its packets, on
				// whichever CPU the director handles them: the handshake
				// on one, the request on another, so that per-CPU state
				// (the flow cache) left by the previous connection on
				// either is put to the test.
				local := netip.AddrPortFrom(fam.cli, fam.portLo)
				vip := netip.AddrPortFrom(fam.vip, 80)
				cpuA, cpuB, ok := twoCPUs()
				if !ok {
					cpuA, cpuB = -1, -1
					t.Log("one CPU: connections from one client port are tested without CPU placement")
				}
				prev, err := l.exchangeFrom(local, vip, cpuA, cpuB)
				if err != nil {
					t.Fatalf("first connection from %s: %v", local, err)
				}
				served[prev]++
				for round := 1; round <= 4; round++ {
					nettest.WaitFor(t, e2eTimeout, "the previous connection to leave the client's socket table", func() error {
						out, err := l.cli.Run("ss", "-Htan", fmt.Sprintf("sport = :%d", local.Port()))
						if err != nil || strings.TrimSpace(out) != "" {
							return fmt.Errorf("%v: %s", err, out)
						}
						return nil
					})
					old, ok := rsByName[prev]
					if !ok {
						t.Fatalf("connection answered %q", prev)
					}
					// The previous real server has received everything of
					// its connection: the client's last segment (its FIN)
					// was acknowledged.
					oldIn := netCounters(t, old.ns)["Tcp:InSegs"]
					start := time.Now()
					next, err := l.exchangeFrom(local, vip, cpuA, cpuB)
					if err != nil {
						t.Fatalf("connection %d from %s (the previous one served by %s): %v", round+1, local, prev, err)
					}
					took := time.Since(start)
					served[next]++
					if next == prev {
						t.Errorf("connection %d from %s served by %s again: not scheduled anew", round+1, local, next)
					}
					if n := netCounters(t, old.ns)["Tcp:InSegs"] - oldIn; n != 0 {
						t.Errorf("connection %d from %s, served by %s in %v: %d of its TCP segments went to %s, the real server of the previous connection",
							round+1, local, next, took.Round(time.Millisecond), n, prev)
					}
					prev = next
				}
			})

			t.Run("udp", func(t *testing.T) {
				// Queries from fixed, distinct ports: each one a new flow.
				answered := map[string]int{}
				var qBytes, rBytes uint64
				const queries = 6
				hdr := uint64(14 + 20 + 8)
				if fam.v6 {
					hdr = 14 + 40 + 8
				}
				for i := range queries {
					q := fmt.Sprintf("query %d", i)
					r, err := l.query(netip.AddrPortFrom(fam.cli, fam.portLo+1+uint16(i)), netip.AddrPortFrom(fam.vip, 53), q)
					if err != nil {
						t.Fatalf("query %d: %v", i, err)
					}
					name, echoed, ok := strings.Cut(r, ":")
					if !ok || echoed != q {
						t.Fatalf("query %q answered %q", q, r)
					}
					answered[name]++
					qBytes += hdr + uint64(len(q))
					rBytes += hdr + uint64(len(r))
				}
				for _, rs := range l.rs {
					if answered[rs.name] != queries/len(l.rs) {
						t.Errorf("rr answered %v, want %d queries each", answered, queries/len(l.rs))
						break
					}
				}
				// Counted exactly: one packet each way per query.
				us := l.stats(t).Services[udpKey]
				if us.Packets != queries || us.PacketsOut != queries || us.Connections != queries || us.Bytes != qBytes || us.BytesOut != rBytes {
					t.Errorf("UDP service counters %+v, want %d packets and connections in (%d bytes), %d packets out (%d bytes)",
						us.Counters, queries, qBytes, queries, rBytes)
				}
				for _, rs := range l.rs {
					c := us.Backend(dataplane.BackendKey{Addr: rs.addr(fam.v6), Port: 5353})
					if n := uint64(answered[rs.name]); c.Packets != n || c.PacketsOut != n || c.Connections != n {
						t.Errorf("UDP backend %s counters %+v, want %d packets in and out and %d connections", rs.name, c.Counters, n, n)
					}
				}
			})

			ts := l.stats(t).Services[tcpKey]
			for _, rs := range l.rs {
				c := ts.Backend(dataplane.BackendKey{Addr: rs.addr(fam.v6), Port: 8080})
				if c.Connections != uint64(served[rs.name]) {
					t.Errorf("TCP backend %s counted %d connections, served %d", rs.name, c.Connections, served[rs.name])
				}
			}
			if ts.BytesOut < uint64(len(bigBody)) {
				t.Errorf("TCP service counted %d bytes out, less than the 1 MB response", ts.BytesOut)
			}
		})
	}

	t.Run("every packet through the XDP program", func(t *testing.T) {
		// Every TCP segment client and real servers sent crossed the
		// director once and was counted; once the closing segments are
		// through, the counts are equal.
		tcpKeys := []dataplane.ServiceKey{{Addr: vip4b, Port: 80, Proto: dataplane.TCP}, {Addr: vip6, Port: 80, Proto: dataplane.TCP}}
		nettest.WaitFor(t, e2eTimeout, "TCP counters to match the segments client and real servers sent", func() error {
			st := l.stats(t)
			var errs []error
			var in uint64
			out := make([]uint64, len(l.rs))
			for _, k := range tcpKeys {
				s := st.Services[k]
				in += s.Packets
				var sum dataplane.Counters
				for i, rs := range l.rs {
					c := s.Backend(dataplane.BackendKey{Addr: rs.addr(k.Addr.Is6()), Port: 8080})
					out[i] += c.PacketsOut
					sum.Add(c.Counters)
				}
				if sum.Packets != s.Packets || sum.PacketsOut != s.PacketsOut || sum.Bytes != s.Bytes || sum.BytesOut != s.BytesOut {
					errs = append(errs, fmt.Errorf("%s: backends sum to %+v, the service counted %+v", k, sum, s.Counters))
				}
			}
			if sent := tcpSent(netCounters(t, l.cli), false) - tcpSent(cli0, false); in != sent {
				errs = append(errs, fmt.Errorf("TCP services counted %d packets in, the client sent %d segments", in, sent))
			}
			for i, rs := range l.rs {
				if sent := tcpSent(netCounters(t, rs.ns), true) - tcpSent(rs0[i], true); out[i] != sent {
					errs = append(errs, fmt.Errorf("%s's TCP backends counted %d packets out, it sent %d segments", rs.name, out[i], sent))
				}
			}
			return errors.Join(errs...)
		})

		// Redirected between the interfaces, except the first packet
		// toward each real server, which the kernel forwarded while it
		// resolved the neighbour.
		st := l.stats(t)
		v := st.Verdicts
		t.Logf("verdicts %v, events %v", nonZero(v), nonZero(st.Events))
		var counted uint64
		for _, s := range st.Services {
			counted += s.Packets + s.PacketsOut
		}
		if v["pass_no_neigh"] < 1 || v["pass_no_neigh"] > uint64(2*len(l.rs)) {
			t.Errorf("pass_no_neigh %d, want between 1 and %d (one per real server and family)", v["pass_no_neigh"], 2*len(l.rs))
		}
		if v["redirect"]+v["pass_no_neigh"] != counted {
			t.Errorf("%d packets redirected and %d passed to resolve neighbours, %d counted by the services", v["redirect"], v["pass_no_neigh"], counted)
		}
		dir := netCounters(t, l.dir)
		if fwd := dir["Ip:ForwDatagrams"] - dir0["Ip:ForwDatagrams"] + dir["Ip6OutForwDatagrams"] - dir0["Ip6OutForwDatagrams"]; fwd != v["pass_no_neigh"] {
			t.Errorf("the director's kernel forwarded %d packets, the program passed it %d to resolve neighbours", fwd, v["pass_no_neigh"])
		}
		for name, n := range v {
			if n != 0 && (strings.HasPrefix(name, "drop_") || strings.HasPrefix(name, "tx") || name == "pass_fib" || name == "pass_no_devmap") {
				t.Errorf("verdict %s counted %d packets", name, n)
			}
		}
	})

	t.Run("nat_reply counts the replies translated back", func(t *testing.T) {
		st := l.stats(t)
		var out uint64
		for _, s := range st.Services {
			out += s.PacketsOut
		}
		if st.Events["nat_reply"] != out {
			t.Errorf("nat_reply events %d, but %d reply packets were translated back to the VIPs", st.Events["nat_reply"], out)
		}
	})
}

func nonZero(m map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// frameWhere returns the first captured frame for which match returns
// true, failing the test after timeout.
func frameWhere(t *testing.T, c *nettest.Capture, what string, match func(packet.Parsed) bool) []byte {
	t.Helper()
	timer := time.NewTimer(e2eTimeout)
	defer timer.Stop()
	for {
		select {
		case f := <-c.Frames():
			if p, err := packet.Parse(f.Data); err == nil && match(p) {
				return f.Data
			}
		case <-timer.C:
			t.Fatalf("no %s captured in %v", what, e2eTimeout)
		}
	}
}

// TestE2ETunnel: the director encapsulates a client's real packets toward
// a real server; checked in a capture at the real server (this kernel has
// no ipip driver to decapsulate): outer header, and the inner packet
// byte for byte as the client sent it.
func TestE2ETunnel(t *testing.T) {
	t.Parallel()
	cli, dir, rsNS := labNS(t, "cli"), labNS(t, "dir"), labNS(t, "rs")
	nettest.Veth(t, cli, "eth0", dir, "eth0")
	nettest.Veth(t, dir, "eth1", rsNS, "eth0")
	setupDirector(t, cli, dir)
	nettest.Addr(t, rsNS, "eth0", rip4.String()+"/24")
	nettest.Addr(t, rsNS, "eth0", rip6.String()+"/64")
	nettest.GRO(t, rsNS, "eth0")
	d := openDirector(t, dir)
	// Tunnel next hops come from the neighbour table (the control plane
	// resolves them): resolve the real server's, as it would.
	dir.MustRun(t, "ping", "-c1", "-W5", rip4.String())
	dir.MustRun(t, "ping", "-6", "-c1", "-W5", rip6.String())

	gueVIP := netip.MustParseAddr("10.0.0.4")
	guePrefix := netip.MustParsePrefix("10.0.9.0/24")
	const guePort = 6080
	tun := func(vip netip.Addr, proto dataplane.Proto, port uint16, encap dataplane.Encap, src netip.Prefix, rs netip.Addr) dataplane.Service {
		return dataplane.Service{
			Name: "tun", Key: dataplane.ServiceKey{Addr: vip, Port: port, Proto: proto},
			Scheduler: dataplane.RoundRobin, Forward: dataplane.Tunnel, Enabled: true,
			Tunnel:   dataplane.TunnelOptions{Encap: encap, GUEPort: guePort, Source: src},
			Backends: []dataplane.Backend{{Addr: rs, Port: port, Weight: 1}},
		}
	}
	svcs := []dataplane.Service{
		tun(vip4b, dataplane.TCP, 80, dataplane.EncapIPIP, netip.Prefix{}, rip4),
		tun(vip6, dataplane.TCP, 80, dataplane.EncapIPIP, netip.Prefix{}, rip6),
		tun(gueVIP, dataplane.UDP, 53, dataplane.EncapGUE, guePrefix, rip4),
	}
	if err := dir.Do(func() error { return d.Apply(t.Context(), svcs) }); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// The real server reads GUE with a plain UDP socket: its stack takes
	// the datagram (zero UDP checksum) as is.
	var gue net.PacketConn
	if err := rsNS.Do(func() (err error) {
		gue, err = net.ListenPacket("udp", netip.AddrPortFrom(rip4, guePort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gue.Close() })

	var dirMAC, rsMAC net.HardwareAddr
	for _, x := range []struct {
		ns  *nettest.NS
		mac *net.HardwareAddr
	}{{dir, &dirMAC}, {rsNS, &rsMAC}} {
		if err := x.ns.Do(func() error {
			i, err := net.InterfaceByName(map[*nettest.NS]string{dir: "eth1", rsNS: "eth0"}[x.ns])
			if err == nil {
				*x.mac = i.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name  string
		vip   netip.AddrPort
		proto dataplane.Proto
		v6    bool
		// check validates the outer headers of a captured frame and
		// returns the encapsulated packet.
		check func(t *testing.T, p packet.Parsed) []byte
	}{
		{"ipip", netip.AddrPortFrom(vip4b, 80), dataplane.TCP, false, func(t *testing.T, p packet.Parsed) []byte {
			ip := p.IP
			if p.Src != eth1IP4 || p.Dst != rip4 || p.Proto != packet.IPIP || ip[0] != 0x45 || p.TTL != 64 || packet.Checksum(ip[:20]) != 0 {
				t.Errorf("outer IPv4 header %x: want 10.0.1.254 -> 10.0.1.1, protocol 4, ttl 64, valid checksum", ip[:20])
			}
			inner := p.L4
			if ip[6]&0x40 != inner[6]&0x40 {
				t.Errorf("outer DF %v, inner DF %v", ip[6]&0x40 != 0, inner[6]&0x40 != 0)
			}
			return inner
		}},
		{"ip6ip6", netip.AddrPortFrom(vip6, 80), dataplane.TCP, true, func(t *testing.T, p packet.Parsed) []byte {
			if p.Src != eth1IP6 || p.Dst != rip6 || p.Proto != packet.IPv6 || p.IP[0]>>4 != 6 || p.TTL != 64 {
				t.Errorf("outer IPv6 header %x: want 2001:db8:1::fe -> 2001:db8:1::1, next header 41, hop limit 64", p.IP[:40])
			}
			return p.L4
		}},
		{"gue", netip.AddrPortFrom(gueVIP, 53), dataplane.UDP, false, func(t *testing.T, p packet.Parsed) []byte {
			first, last := guePrefix.Addr().Next(), netip.MustParseAddr("10.0.9.254")
			if !guePrefix.Contains(p.Src) || p.Src.Less(first) || last.Less(p.Src) || p.Dst != rip4 || p.Proto != packet.UDP || packet.Checksum(p.IP[:20]) != 0 {
				t.Errorf("outer IPv4 header %x: want 10.0.9.1-254 -> 10.0.1.1, UDP, valid checksum", p.IP[:20])
			}
			udp := p.L4
			if p.DstPort != guePort || p.SrcPort < 49152 || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) || !bytes.Equal(udp[6:8], []byte{0, 0}) {
				t.Errorf("outer UDP header %x: want source port >= 49152, destination %d, length %d, no checksum", udp[:8], guePort, len(udp))
			}
			if !bytes.Equal(udp[8:12], []byte{0, packet.IPIP, 0, 0}) {
				t.Errorf("GUE header %x, want version 0, protocol 4, no flags", udp[8:12])
			}
			return udp[12:]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eth := uint16(0x0800)
			if tc.v6 {
				eth = 0x86dd
			}
			sent := cli.CaptureSent(t, "eth0", eth)
			got := rsNS.Capture(t, "eth0", eth)
			var sport uint16
			switch tc.proto {
			case dataplane.TCP:
				// A real connect: its SYN goes into the tunnel, and nobody
				// answers it (the real server cannot decapsulate).
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					var c net.Conn
					cli.Do(func() (err error) {
						c, err = (&net.Dialer{}).DialContext(ctx, "tcp", tc.vip.String())
						return err
					})
					if c != nil {
						c.Close()
					}
				}()
				defer func() { cancel(); <-done }()
			case dataplane.UDP:
				var c net.Conn
				if err := cli.Do(func() (err error) {
					c, err = net.Dial("udp", tc.vip.String())
					return err
				}); err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := io.WriteString(c, "through the tunnel"); err != nil {
					t.Fatal(err)
				}
				sport = uint16(c.LocalAddr().(*net.UDPAddr).Port)
			}
			out := frameWhere(t, sent, "client packet to "+tc.vip.String(), func(p packet.Parsed) bool {
				return p.Dst == tc.vip.Addr() && p.DstPort == tc.vip.Port() && p.Proto == uint8(tc.proto) && (sport == 0 || p.SrcPort == sport)
			})
			want := packet.IPPacket(out)
			frame := frameWhere(t, got, "tunnelled packet at the real server", func(p packet.Parsed) bool {
				return p.Proto == packet.IPIP || p.Proto == packet.IPv6 || (p.Proto == packet.UDP && p.DstPort == guePort)
			})
			if !bytes.Equal(frame[0:6], rsMAC) || !bytes.Equal(frame[6:12], dirMAC) {
				t.Errorf("frame from %x to %x, want from the director's eth1 %s to the real server %s", frame[6:12], frame[0:6], dirMAC, rsMAC)
			}
			p, err := packet.Parse(frame)
			if err != nil {
				t.Fatalf("captured frame: %v: %x", err, frame)
			}
			inner := tc.check(t, p)
			if !bytes.Equal(inner, want) {
				t.Errorf("inner packet differs from the client's:\n got %x\nwant %x", inner, want)
			}
			if err := packet.VerifyChecksums(append(bytes.Clone(out[:14]), inner...)); err != nil {
				t.Errorf("inner packet: %v", err)
			}
			if tc.name == "gue" {
				gue.SetReadDeadline(time.Now().Add(e2eTimeout))
				buf := make([]byte, 2048)
				n, _, err := gue.ReadFrom(buf)
				if err != nil {
					t.Fatalf("GUE socket on the real server: %v", err)
				}
				if !bytes.Equal(buf[:n], p.L4[8:]) {
					t.Errorf("GUE socket read %x, want the GUE header and the inner packet", buf[:n])
				}
			}
		})
	}
	st, err := d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		b := st.Services[s.Key].Backend(s.Backends[0].Key())
		if b.Connections != 1 || b.Packets < 1 {
			t.Errorf("%s: backend counters %+v, want 1 connection", s.Key, b.Counters)
		}
	}
	t.Logf("verdicts %v", nonZero(st.Verdicts))
	if st.Verdicts["redirect"] < uint64(len(svcs)) {
		t.Errorf("verdicts %v: want the tunnelled packets redirected", nonZero(st.Verdicts))
	}
	for name, n := range st.Verdicts {
		if n != 0 && strings.HasPrefix(name, "drop_") {
			t.Errorf("verdict %s counted %d packets", name, n)
		}
	}
}
