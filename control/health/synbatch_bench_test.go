package health

import (
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/test/nettest"
)

// BenchmarkSYNSend is the director's cost of sending a SYN (ns/op is per
// SYN): a sendto each, or sendmmsg 64 at a time. The SYNs leave by a veth
// whose peer is down, which drops them: the real server's side is not
// counted.
func BenchmarkSYNSend(b *testing.B) {
	nettest.RequireRoot(b)
	ns, peer := nettest.NewNS(b, "hcb"), nettest.NewNS(b, "hcp")
	nettest.Veth(b, ns, "eth0", peer, "eth0")
	nettest.Addr(b, ns, "eth0", "10.88.0.1/24")
	ns.MustRun(b, "ip", "neigh", "replace", "10.88.0.2", "lladdr", "02:00:00:00:00:02", "dev", "eth0", "nud", "permanent")
	peer.MustRun(b, "ip", "link", "set", "eth0", "down")
	src, dst := netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	var p *synProber
	if err := ns.Do(func() (err error) {
		p, err = openSYNProber(synKey{bindTo: src})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.closeFiles)
	syns := make([]synOut, synBatchMax)
	for i := range syns {
		syns[i] = synOut{m: synMatch{addr: dst, port: uint16(1000 + i)}, src: src, seq: uint32(i)}
	}
	b.Run("sendto", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			s := syns[i%len(syns)]
			if err := p.send(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sendmmsg", func(b *testing.B) {
		buf := new(synSendBuf)
		fail := func(_ int, err error) { b.Fatal(err) }
		for n := 0; n < b.N; n += len(syns) {
			if err := p.sendSYNs(buf, syns[:min(len(syns), b.N-n)], fail); err != nil {
				b.Fatal(err)
			}
		}
	})
}
