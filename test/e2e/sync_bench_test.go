package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/packet"
)

// syncLagRate is issue 15's rate: a new flow is on the backup within
// 100 ms (p99) at 10,000 new flows/s.
const (
	syncLagRate = 10000
	syncLagFor  = 2 * time.Second
	syncLagPoll = 5 * time.Millisecond
)

// BenchmarkSyncLag: how soon a new connection through the master is on the
// backup at a sustained rate. The benchmark reads the backup's imported
// connections (its pinned xlb_sync_conns_v1) every 5 ms and notes when
// each client address and port first appears there; a connection's lag is
// that moment minus the moment its handshake's ACK went through the
// master: its report, the master's datagram, the backup's import, and up
// to 5 ms of polling.
//
// tcp: real connections from the client namespace, paced at syncLagRate
// (each closed 200 ms after its handshake: few descriptors; the client's
// TIME_WAIT keeps every port distinct); the lag counts from the return of
// connect(). On the 2-core test machine the client, the real servers and
// both directors share the CPUs: the client reaches 6,500-6,700
// connections/s (8 workers no more than 4), p50 11.6-12.4 ms, p99
// 25-27 ms, max 31-37 ms.
//
// frames: the same new flows without the client's and real servers'
// kernels, so that the rate is the one asked for: each flow's SYN and
// then its ACK are run through the master's attached XDP program
// (BPF_PROG_TEST_RUN on the program the daemon attached to eth0, with
// eth0 as the ingress interface, from the master's namespace), as the
// NIC would deliver them; everything after that (the embryo, the
// connection entry, the report ring, the daemon's reader and sender, the
// backup's import) is the daemons' own. The lag counts from the return of
// the ACK's run; the rate is paced at syncLagRate and twice it.
func BenchmarkSyncLag(b *testing.B) {
	b.Run("tcp", benchSyncLagTCP)
	for _, rate := range []int{syncLagRate, 2 * syncLagRate} {
		b.Run(fmt.Sprintf("frames-%d", rate), func(b *testing.B) { benchSyncLagFrames(b, rate) })
	}
}

// lagEP is a client's address and port (struct xlb_flow: src's first 4
// bytes for IPv4, sport at 32 in host order).
type lagEP struct {
	a [4]byte
	p uint16
}

// lagRun records when each flow went through the master (opened) and
// when the backup's imports first held it (seen).
type lagRun struct {
	mu     sync.Mutex
	opened map[lagEP]time.Time
	seen   map[lagEP]time.Time
	failed int
	start  time.Time
	took   time.Duration
	stop   chan struct{}
	polled chan struct{}
}

// syncLagLab is the two-director DR lab with xlb's sync (no periodic
// refresh: every record is a new flow's) and the backup's imports.
func syncLagLab(b *testing.B) (*lab.Lab, *ebpf.Map) {
	l := syncLab(b, lab.DR, "xlb", "refresh_interval = \"0s\"\n")
	m, err := ebpf.LoadPinnedMap(filepath.Join(l.Directors[1].PinPath, "xlb_sync_conns_v1"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return l, m
}

// startLag starts polling the backup's imports every syncLagPoll.
func startLag(b *testing.B, m *ebpf.Map) *lagRun {
	r := &lagRun{opened: map[lagEP]time.Time{}, seen: map[lagEP]time.Time{}, stop: make(chan struct{}), polled: make(chan struct{})}
	go func() {
		defer close(r.polled)
		keys := make([][40]byte, 4096)
		vals := make([][24]byte, 4096)
		tick := time.NewTicker(syncLagPoll)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			now := time.Now()
			var cursor ebpf.MapBatchCursor
			for {
				n, err := m.BatchLookup(&cursor, keys, vals, nil)
				r.mu.Lock()
				for _, k := range keys[:n] {
					e := lagEP{[4]byte(k[0:4]), binary.NativeEndian.Uint16(k[32:34])}
					if _, ok := r.seen[e]; !ok {
						r.seen[e] = now
					}
				}
				r.mu.Unlock()
				if err != nil {
					if !errors.Is(err, ebpf.ErrKeyNotExist) {
						b.Errorf("reading the backup's imports: %v", err)
					}
					break
				}
			}
		}
	}()
	return r
}

func (r *lagRun) open(e lagEP, at time.Time) {
	r.mu.Lock()
	r.opened[e] = at
	r.mu.Unlock()
}

// finish waits until every opened flow is seen (or 3 s), stops polling
// and reports the lags.
func (r *lagRun) finish(b *testing.B, rate int) {
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(syncLagPoll) {
		r.mu.Lock()
		missing := 0
		for p := range r.opened {
			if _, ok := r.seen[p]; !ok {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			break
		}
	}
	close(r.stop)
	<-r.polled

	var lags []time.Duration
	missing := 0
	for p, at := range r.opened {
		s, ok := r.seen[p]
		if !ok {
			missing++
			continue
		}
		lags = append(lags, max(0, s.Sub(at)))
	}
	if len(lags) == 0 {
		b.Fatalf("no connection reached the backup (%d opened, %d failed)", len(r.opened), r.failed)
	}
	slices.Sort(lags)
	q := func(f float64) time.Duration { return lags[min(len(lags)-1, int(f*float64(len(lags))))] }
	got := float64(len(r.opened)) / r.took.Seconds()
	b.ReportMetric(got, "conn/s")
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "ms-p99")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "ms-max")
	b.Logf("%d new flows at %.0f/s (paced at %d/s; %d failed): on the backup p50 %v, p99 %v, max %v after the master forwarded the handshake's ACK (target p99 <= 100ms at %d/s); %d never seen there",
		len(r.opened), got, rate, r.failed, q(0.5).Round(100*time.Microsecond), q(0.99).Round(100*time.Microsecond),
		lags[len(lags)-1].Round(100*time.Microsecond), syncLagRate, missing)
	if missing > 0 {
		b.Errorf("%d of %d flows never reached the backup", missing, len(r.opened))
	}
}

func benchSyncLagTCP(b *testing.B) {
	const workers = 4 // each from an address of its own: 5,000 ports in TIME_WAIT each
	l, m := syncLagLab(b)
	vip := netip.AddrPortFrom(l.VIP, uint16(syncServices[0].port))
	// More client addresses: connect() searching 28,000 ports among
	// 20,000 in TIME_WAIT to one destination was the bottleneck (1,400/s).
	var srcs []net.IP
	for i := range workers {
		a := fmt.Sprintf("10.77.0.%d", 50+i)
		l.Client.MustRun(b, "ip", "addr", "add", a+"/24", "dev", "eth0")
		srcs = append(srcs, net.ParseIP(a))
	}

	for b.Loop() {
		r := startLag(b, m)
		// The connections, paced: worker w opens its share every tick.
		r.start = time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: srcs[w]}, Timeout: 2 * time.Second}
			wg.Go(func() {
				err := l.Client.Do(func() error {
					per := syncLagRate / workers
					total := int(syncLagFor.Seconds() * float64(per))
					for i := range total {
						if d := time.Until(r.start.Add(time.Duration(i) * time.Second / time.Duration(per))); d > 0 {
							time.Sleep(d) // pacing the load, not waiting for a condition
						}
						c, err := dialer.Dial("tcp", vip.String())
						at := time.Now()
						if err != nil {
							r.mu.Lock()
							r.failed++
							r.mu.Unlock()
							continue
						}
						la := c.LocalAddr().(*net.TCPAddr)
						r.open(lagEP{[4]byte(la.IP.To4()), uint16(la.Port)}, at)
						time.AfterFunc(200*time.Millisecond, func() { c.Close() })
					}
					return nil
				})
				if err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		r.took = time.Since(r.start)
		r.finish(b, syncLagRate)
	}
}

// xdpMD is struct xdp_md, BPF_PROG_TEST_RUN's context of an XDP program.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

func benchSyncLagFrames(b *testing.B, rate int) {
	l, m := syncLagLab(b)
	master := l.Directors[0]
	id, err := master.XDPProgram("eth0")
	if err != nil || id == 0 {
		b.Fatalf("the master's XDP program on eth0: id %d, %v", id, err)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	var eth0 *net.Interface
	if err := master.NS.Do(func() (err error) { eth0, err = net.InterfaceByName("eth0"); return err }); err != nil {
		b.Fatal(err)
	}
	clientMAC := net.HardwareAddr{0x02, 0x77, 0, 0, 0, 0x10}
	vip := uint16(syncServices[0].port)
	// Client addresses of the lab's client network, 5,000 ports each.
	const perAddr = 5000
	n := int(syncLagFor.Seconds()) * rate
	frame := func(i int, flags uint8) []byte {
		f := packet.Frame{SrcMAC: clientMAC, DstMAC: eth0.HardwareAddr, Src: netip.AddrFrom4([4]byte{10, 77, 0, byte(50 + i/perAddr)}),
			Dst: l.VIP, Proto: packet.TCP, SrcPort: uint16(20000 + i%perAddr), DstPort: vip, TCPFlags: flags, Seq: 1000, Ack: 2000}
		if flags == packet.ACK {
			f.Seq, f.Ack = 1001, 5001
		}
		return f.Bytes()
	}
	syns, acks := make([][]byte, n), make([][]byte, n)
	for i := range n {
		syns[i], acks[i] = frame(i, packet.SYN), frame(i, packet.ACK)
	}
	ran := 0
	for b.Loop() {
		if ran++; ran > 1 {
			b.Fatal("one run only: the flows are the same each time")
		}
		r := startLag(b, m)
		out := make([]byte, 256)
		err := master.NS.Do(func() error {
			run := func(f []byte) (uint32, error) {
				ctx := xdpMD{DataEnd: uint32(len(f)), IngressIfindex: uint32(eth0.Index)}
				return prog.Run(&ebpf.RunOptions{Data: f, DataOut: out, Context: ctx})
			}
			r.start = time.Now()
			for i := range n {
				// Paced per millisecond: a SYN and, a handshake's RTT
				// later (here the next tick), its ACK.
				if d := time.Until(r.start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
					time.Sleep(d) // pacing the load, not waiting for a condition
				}
				if v, err := run(syns[i]); err != nil || v != 3 /* XDP_TX */ {
					r.failed++
					if err != nil {
						return fmt.Errorf("SYN %d: %w", i, err)
					}
					continue
				}
				if i == 0 {
					continue
				}
				if v, err := run(acks[i-1]); err != nil || v != 3 {
					r.failed++
					if err != nil {
						return fmt.Errorf("ACK %d: %w", i-1, err)
					}
					continue
				}
				a := acks[i-1]
				r.open(lagEP{[4]byte(a[26:30]), binary.BigEndian.Uint16(a[34:36])}, time.Now())
			}
			r.took = time.Since(r.start)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		r.finish(b, rate)
	}
}
