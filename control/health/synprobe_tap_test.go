package health_test

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/test/nettest"
)

// captureTap plays the XDP program's part (bpf/lib/probe.h): the director
// drops the answers before its stack (nftables, in front of the raw
// socket's delivery) and the tap reports the SYN-ACKs and RSTs to the
// sources watched, read from a packet capture.
type captureTap struct {
	c *nettest.Capture

	mu        sync.Mutex
	watched   map[netip.AddrPort]bool
	unwatched []netip.AddrPort
}

func (ct *captureTap) WatchProbes(src netip.Addr, port uint16) error {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.watched[netip.AddrPortFrom(src, port)] = true
	return nil
}

func (ct *captureTap) UnwatchProbes(src netip.Addr, port uint16) error {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	delete(ct.watched, netip.AddrPortFrom(src, port))
	ct.unwatched = append(ct.unwatched, netip.AddrPortFrom(src, port))
	return nil
}

func (ct *captureTap) ReadProbeAnswers(out []health.ProbeAnswer) ([]health.ProbeAnswer, error) {
	for {
		select {
		case f := <-ct.c.Frames():
			p := f.Data
			if len(p) < 14+20 || binary.BigEndian.Uint16(p[12:]) != 0x0800 || p[14+9] != 6 {
				continue
			}
			tcp := p[14+int(p[14]&0x0f)*4:]
			if len(tcp) < 20 || tcp[13]&0x10 == 0 || tcp[13]&0x06 == 0 {
				continue // not a SYN-ACK or RST-ACK
			}
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[14+16:14+20])), binary.BigEndian.Uint16(tcp[2:]))
			ct.mu.Lock()
			ok := ct.watched[dst]
			ct.mu.Unlock()
			if !ok {
				continue
			}
			out = append(out, health.ProbeAnswer{
				From:    netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[14+12:14+16])), binary.BigEndian.Uint16(tcp[0:])),
				Port:    dst.Port(),
				Ack:     binary.BigEndian.Uint32(tcp[8:]),
				Refused: tcp[13]&0x04 != 0,
			})
		default:
			return out, nil
		}
	}
}

// TestTCPProbeTap: with a tap (the XDP program) taking the answers off the
// wire before the director's stack, the checks get them from the tap: up
// from a SYN-ACK, refused from a RST. Replacing the tap closes its
// probers, which give their sources back first.
func TestTCPProbeTap(t *testing.T) {
	l := newLab(t)
	l.listen(t, "tcp", "10.77.9.2:9000")
	dropIn(t, l.dir, "tcp sport { 9000, 9001 } drop") // the raw socket never sees them
	tap := &captureTap{c: l.dir.Capture(t, "eth0", 0x0800), watched: map[netip.AddrPort]bool{}}
	if err := l.dir.Do(func() error { return health.SetProbeTap(tap) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.dir.Do(func() error { return health.SetProbeTap(nil) }) })

	if err := l.check(t, labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9000))); err != nil {
		t.Errorf("listening, answered through the tap: %v", err)
	}
	err := l.check(t, labSpec(checktype.TCP, netip.AddrPortFrom(rs4, 9001)))
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed, answered through the tap: %v, want connection refused", err)
	}
	tap.mu.Lock()
	var watched []netip.AddrPort
	for ap := range tap.watched {
		watched = append(watched, ap)
	}
	tap.mu.Unlock()
	if len(watched) != 1 || watched[0].Addr() != dir4 {
		t.Fatalf("sources watched %v, want %v and the probes' port", watched, dir4)
	}

	if err := l.dir.Do(func() error { return health.SetProbeTap(nil) }); err != nil {
		t.Fatal(err)
	}
	tap.mu.Lock()
	unwatched := slices.Clone(tap.unwatched)
	tap.mu.Unlock()
	if !slices.Equal(unwatched, watched) {
		t.Errorf("sources given back %v, want %v", unwatched, watched)
	}
}
