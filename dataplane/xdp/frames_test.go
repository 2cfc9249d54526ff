package xdp

import (
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/xlb-dev/xlb/test/packet"
)

// Builders for the tests' expected frames that test/packet lacks: tunnel
// headers, and the flow hash the program derives per-flow fields from
// (the outer source within a prefix, the GUE source port, the IPv6 flow
// label) and the flow cache slot. Written from the C's description, not shared
// with it, so that a change on either side shows.

// flowHash is bpf/lib/hash.h's xlb_hash_flow: MurmurHash3 (x86_32) steps
// over the source and destination addresses (as the program loads them:
// 32-bit little-endian words of the network-order bytes), then
// sport<<16|dport, finalised with the protocol as the length.
func flowHash(src, dst netip.Addr, sport, dport uint16, proto uint8) uint32 {
	const seed = 0x786c6232 // "xlb2"
	mix := func(h, k uint32) uint32 {
		k *= 0xcc9e2d51
		k = bits.RotateLeft32(k, 15)
		k *= 0x1b873593
		h ^= k
		h = bits.RotateLeft32(h, 13)
		return h*5 + 0xe6546b64
	}
	words := func(a netip.Addr) []uint32 {
		var b []byte
		if a.Is4() {
			v := a.As4()
			b = v[:]
		} else {
			v := a.As16()
			b = v[:]
		}
		w := make([]uint32, len(b)/4)
		for i := range w {
			w[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
		return w
	}
	s, d := words(src), words(dst)
	h := mix(mix(uint32(seed), s[0]), d[0])
	if len(s) == 4 {
		for _, k := range append(s[1:], d[1:]...) {
			h = mix(h, k)
		}
	}
	h = mix(h, uint32(sport)<<16|uint32(dport))
	h ^= uint32(proto)
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// frameHash is flowHash of a frame's 5-tuple.
func frameHash(f packet.Frame) uint32 {
	return flowHash(f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto)
}

// cacheIdx is bpf/lib/flowcache.h's lb_cache_idx, the flow cache slot of a
// frame's 5-tuple among slots (a power of two): the addresses as 32-bit
// little-endian words (an IPv6 one folded by XOR), the ports word as the
// program loads struct xlb_flow's (sport in the low half), the top bits of
// a multiplicative hash.
func cacheIdx(f packet.Frame, slots uint32) uint32 {
	fold := func(a netip.Addr) uint32 {
		if a.Is4() {
			v := a.As4()
			return binary.LittleEndian.Uint32(v[:])
		}
		v := a.As16()
		var x uint32
		for i := 0; i < 16; i += 4 {
			x ^= binary.LittleEndian.Uint32(v[i:])
		}
		return x
	}
	ports := uint64(f.SrcPort) | uint64(f.DstPort)<<16
	h := uint64(fold(f.Src))<<32 | uint64(fold(f.Dst))
	h ^= (ports<<8 | uint64(f.Proto)) * 0xc2b2ae3d27d4eb4f
	h *= 0x9e3779b97f4a7c15
	return uint32(h >> (64 - bits.TrailingZeros32(slots)))
}

// outerIPv6 is the IPv6 tunnel header the test expects in front of an
// inner packet of payloadLen bytes.
func outerIPv6(src, dst netip.Addr, next, tclass uint8, flowLabel uint32, payloadLen int) []byte {
	h := make([]byte, 40)
	binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(tclass)<<20|flowLabel&0xfffff)
	binary.BigEndian.PutUint16(h[4:], uint16(payloadLen))
	h[6] = next
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return h
}

// gueHeaders are the UDP header (checksum zero, as the program sends it)
// and the GUE version 0 header (no options) in front of an inner IP packet
// of innerLen bytes.
func gueHeaders(sport, dport uint16, innerProto uint8, innerLen int) []byte {
	h := make([]byte, 8+4)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+4+innerLen))
	h[9] = innerProto
	return h
}

// ethHeader is an untagged Ethernet header.
func ethHeader(dst, src []byte, etherType uint16) []byte {
	h := append(append([]byte{}, dst...), src...)
	return binary.BigEndian.AppendUint16(h, etherType)
}
