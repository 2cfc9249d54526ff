package config

import (
	"fmt"
	"strings"
	"testing"
)

// scaleConfig is services x reals NAT virtual servers, as a hosting tier
// has them (test/scale measures the same shape end to end).
func scaleConfig(services, reals int, check string) string {
	var b strings.Builder
	b.WriteString("[global]\nrouter_id = \"d1\"\n[dataplane]\nmode = \"xdp\"\ninterfaces = [\"eth0\"]\n")
	for i := range services {
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"s%d\"\naddress = \"10.200.%d.%d\"\nport = 80\nforward = \"nat\"\n"+
			"[virtual_server.health_check]\ntype = %q\n", i, (i+1)/256, (i+1)%256, check)
		for j := range reals {
			n := i*reals + j
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.201.%d.%d\"\nport = 8080\n", n/256%256, n%256)
		}
	}
	return b.String()
}

// BenchmarkParseScale decodes 1,000 services x 64 real servers (200,000
// lines, 4.6 MB): `xlb check`, a start and every reload do.
func BenchmarkParseScale(b *testing.B) {
	src := []byte(scaleConfig(1000, 64, "none"))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("scale.toml", src, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseScaleGarbage: decoding 1,000 services x 64 real servers
// allocates at most 780 bytes a real server in all (44 MB). The fast path
// reads a real server's keys from its lazy node, without filling its map:
// filling them made 62 MB (972 bytes a real server), at every reload.
func TestParseScaleGarbage(t *testing.T) {
	src := []byte(scaleConfig(1000, 64, "none"))
	var err error
	_, alloc := measure(func() { _, err = Parse("scale.toml", src, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if per := alloc / 64000; per > 780 {
		t.Errorf("decoding 64,000 real servers allocated %d bytes, %d a real server; want at most 780", alloc, per)
	}
}
