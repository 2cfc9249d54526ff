package vrrp

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to every decoder of the package: the
// advertisement decoder (as IPv4 and IPv6 payload) and the ARP / NA frame
// decoder. Seeds are keepalived 2.2.7's captures. A decoded advertisement
// must encode back to the same bytes (reserved bits aside).
func FuzzDecode(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add(c.frame)
		if c.frame[12] == 0x08 && c.frame[13] == 0x00 {
			_, _, _, _, _, payload := ipv4Payload(f, c.frame)
			f.Add(payload)
		}
	}
	src4, dst4 := netip.MustParseAddr("10.77.0.1"), MulticastGroup4
	src6, dst6 := netip.MustParseAddr("fe80::1"), MulticastGroup6
	f.Fuzz(func(t *testing.T, b []byte) {
		parseClaim(b)
		for _, sd := range [][2]netip.Addr{{src4, dst4}, {src6, dst6}} {
			a, err := ParseAdvert(b, sd[0], sd[1])
			if err != nil {
				if _, ok := err.(*ParseError); !ok {
					t.Fatalf("error %T is not a *ParseError", err)
				}
				continue
			}
			if a.Version == 3 && b[4]&0xf0 != 0 {
				continue // reserved bits are not kept
			}
			out, err := a.Marshal(sd[0], sd[1])
			if err != nil {
				t.Fatalf("re-encode %+v: %v", a, err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("round trip:\n in %x\nout %x", b, out)
			}
		}
	})
}
