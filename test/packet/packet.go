// Package packet builds and parses Ethernet frames (optional 802.1Q tag and
// 802.1ad outer tag, IPv4 with options, IPv6 with extension headers,
// TCP/UDP/ICMP) for tests, with its own checksum code, kept independent of
// the BPF program's so that tests verify one with the other.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IP protocol numbers.
const (
	ICMP   = 1
	TCP    = 6
	UDP    = 17
	IPIP   = 4
	IPv6   = 41
	ICMPv6 = 58
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Frame describes a frame to build.
type Frame struct {
	SrcMAC, DstMAC net.HardwareAddr
	VLAN           uint16 // 802.1Q VLAN id; 0: untagged
	// OuterVLAN is an 802.1ad (QinQ service) tag in front of VLAN; 0: none.
	OuterVLAN    uint16
	Src, Dst     netip.Addr
	Proto        uint8
	SrcPort      uint16
	DstPort      uint16
	TCPFlags     uint8 // default ACK when zero and Proto is TCP
	Seq, Ack     uint32
	TTL          uint8 // default 64
	ID           uint16
	DontFragment bool
	// MoreFragments and FragOffset (bytes, a multiple of 8) make a fragment;
	// a non-first fragment carries Payload only (no transport header).
	MoreFragments bool
	FragOffset    uint16
	// FragID is the IPv6 fragment header identification.
	FragID  uint32
	Payload []byte
	// L4 replaces the transport header and payload (e.g. ICMP bodies).
	L4 []byte
	// ZeroUDPChecksum leaves the UDP checksum 0 (IPv4 only).
	ZeroUDPChecksum bool
	// IPOptions are IPv4 options, as given, padded with zeros (end of
	// options) to a multiple of 4 bytes.
	IPOptions []byte
	// ExtHeaders are IPv6 extension headers in front of the fragment
	// header (if any) and the transport header, in order.
	ExtHeaders []ExtHeader
}

// IPv6 extension header types.
const (
	HopByHop = 0
	Routing  = 43
	Fragment = 44
	DestOpts = 60
)

// ExtHeader is an IPv6 extension header: its type and its bytes after the
// next-header and length fields, padded with zeros (Pad1 options) to a
// multiple of 8 bytes with those two.
type ExtHeader struct {
	Type uint8
	Body []byte
}

// Defaults used when MACs are unset.
var (
	DefaultSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	DefaultDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// Bytes builds the frame.
func (f Frame) Bytes() []byte {
	l4 := f.l4()
	var ip []byte
	if f.Src.Is4() {
		ip = f.ipv4(l4)
	} else {
		ip = f.ipv6(l4)
	}
	src, dst := f.SrcMAC, f.DstMAC
	if src == nil {
		src = DefaultSrcMAC
	}
	if dst == nil {
		dst = DefaultDstMAC
	}
	b := make([]byte, 0, 22+len(ip))
	b = append(b, dst...)
	b = append(b, src...)
	if f.OuterVLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x88a8)
		b = binary.BigEndian.AppendUint16(b, f.OuterVLAN)
	}
	if f.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, f.VLAN)
	}
	if f.Src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
	}
	return append(b, ip...)
}

func (f Frame) later() bool { return f.FragOffset > 0 }

func (f Frame) l4() []byte {
	if f.L4 != nil {
		return append([]byte(nil), f.L4...)
	}
	if f.later() {
		return append([]byte(nil), f.Payload...)
	}
	switch f.Proto {
	case TCP:
		h := make([]byte, 20, 20+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint32(h[4:], f.Seq)
		binary.BigEndian.PutUint32(h[8:], f.Ack)
		h[12] = 5 << 4
		flags := f.TCPFlags
		if flags == 0 {
			flags = ACK
		}
		h[13] = flags
		binary.BigEndian.PutUint16(h[14:], 65535)
		h = append(h, f.Payload...)
		if !f.MoreFragments {
			binary.BigEndian.PutUint16(h[16:], L4Checksum(f.Src, f.Dst, TCP, h))
		}
		return h
	case UDP:
		h := make([]byte, 8, 8+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(f.Payload)))
		h = append(h, f.Payload...)
		if !f.ZeroUDPChecksum && !f.MoreFragments {
			c := L4Checksum(f.Src, f.Dst, UDP, h)
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(h[6:], c)
		}
		return h
	}
	return append([]byte(nil), f.Payload...)
}

func (f Frame) ipv4(l4 []byte) []byte {
	opts := append([]byte(nil), f.IPOptions...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	hl := 20 + len(opts)
	h := make([]byte, 20, hl+len(l4))
	h[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(h[2:], uint16(hl+len(l4)))
	binary.BigEndian.PutUint16(h[4:], f.ID)
	fo := f.FragOffset / 8
	if f.DontFragment {
		fo |= 0x4000
	}
	if f.MoreFragments {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	h[8] = f.TTL
	if h[8] == 0 {
		h[8] = 64
	}
	h[9] = f.Proto
	s, d := f.Src.As4(), f.Dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	h = append(h, opts...)
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	return append(h, l4...)
}

func (f Frame) ipv6(l4 []byte) []byte {
	next := f.Proto
	var frag []byte
	if f.MoreFragments || f.FragOffset > 0 {
		frag = make([]byte, 8)
		frag[0] = f.Proto
		fo := f.FragOffset &^ 7
		if f.MoreFragments {
			fo |= 1
		}
		binary.BigEndian.PutUint16(frag[2:], fo)
		binary.BigEndian.PutUint32(frag[4:], f.FragID)
		next = 44
	}
	var ext []byte
	for i := len(f.ExtHeaders) - 1; i >= 0; i-- {
		e := f.ExtHeaders[i]
		body := append([]byte(nil), e.Body...)
		for (2+len(body))%8 != 0 {
			body = append(body, 0)
		}
		hdr := append([]byte{next, byte((2+len(body))/8 - 1)}, body...)
		ext = append(hdr, ext...)
		next = e.Type
	}
	frag = append(ext, frag...)
	h := make([]byte, 40, 40+len(frag)+len(l4))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(frag)+len(l4)))
	h[6] = next
	h[7] = f.TTL
	if h[7] == 0 {
		h[7] = 64
	}
	s, d := f.Src.As16(), f.Dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	h = append(h, frag...)
	return append(h, l4...)
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 {
	return ^fold(sum(0, b))
}

func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// L4Checksum is the TCP/UDP/ICMPv6 checksum of segment (whose checksum
// field must be zero) with the pseudo-header of src and dst.
func L4Checksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = sum(s, a[:])
		s = sum(s, b[:])
		s += uint32(proto) + uint32(len(segment))
	} else {
		a, b := src.As16(), dst.As16()
		s = sum(s, a[:])
		s = sum(s, b[:])
		s += uint32(len(segment)>>16) + uint32(len(segment)&0xffff) + uint32(proto)
	}
	return ^fold(sum(s, segment))
}

// Parsed is a decoded frame.
type Parsed struct {
	SrcMAC, DstMAC net.HardwareAddr
	VLAN           uint16
	EtherType      uint16
	Src, Dst       netip.Addr
	Proto          uint8 // transport protocol (after IPv6 fragment header)
	TTL            uint8
	SrcPort        uint16
	DstPort        uint16
	TCPFlags       uint8
	IP             []byte // IP header and everything after it
	L4             []byte // transport header and payload
	Fragmented     bool   // IPv6: a fragment header
}

// ErrShort is returned for truncated frames.
var ErrShort = errors.New("frame too short")

// Parse decodes a frame built by Frame.Bytes (or forwarded by xlb).
func Parse(b []byte) (Parsed, error) {
	var p Parsed
	if len(b) < 14 {
		return p, ErrShort
	}
	p.DstMAC, p.SrcMAC = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	p.EtherType = binary.BigEndian.Uint16(b[12:])
	off := 14
	for p.EtherType == 0x8100 || p.EtherType == 0x88a8 {
		if len(b) < off+4 {
			return p, ErrShort
		}
		p.VLAN = binary.BigEndian.Uint16(b[off:]) & 0xfff // the innermost
		p.EtherType = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	p.IP = b[off:]
	switch p.EtherType {
	case 0x0800:
		if len(p.IP) < 20 {
			return p, ErrShort
		}
		ihl := int(p.IP[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(p.IP[2:]))
		if tot > len(p.IP) || ihl < 20 || tot < ihl {
			return p, ErrShort
		}
		p.IP = p.IP[:tot]
		p.Src = netip.AddrFrom4([4]byte(p.IP[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(p.IP[16:20]))
		p.Proto, p.TTL = p.IP[9], p.IP[8]
		p.L4 = p.IP[ihl:]
	case 0x86dd:
		if len(p.IP) < 40 {
			return p, ErrShort
		}
		pl := int(binary.BigEndian.Uint16(p.IP[4:]))
		if 40+pl > len(p.IP) {
			return p, ErrShort
		}
		p.IP = p.IP[:40+pl]
		p.Src = netip.AddrFrom16([16]byte(p.IP[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(p.IP[24:40]))
		p.Proto, p.TTL = p.IP[6], p.IP[7]
		p.L4 = p.IP[40:]
		for (p.Proto == HopByHop || p.Proto == Routing || p.Proto == DestOpts) && len(p.L4) >= 8 {
			n := (int(p.L4[1]) + 1) * 8
			if n > len(p.L4) {
				return p, ErrShort
			}
			p.Proto, p.L4 = p.L4[0], p.L4[n:]
		}
		if p.Proto == Fragment && len(p.L4) >= 8 {
			p.Fragmented = true
			p.Proto = p.L4[0]
			p.L4 = p.L4[8:]
		}
	default:
		return p, fmt.Errorf("ethertype %#04x", p.EtherType)
	}
	switch p.Proto {
	case TCP:
		if len(p.L4) >= 20 {
			p.SrcPort = binary.BigEndian.Uint16(p.L4[0:])
			p.DstPort = binary.BigEndian.Uint16(p.L4[2:])
			p.TCPFlags = p.L4[13]
		}
	case UDP:
		if len(p.L4) >= 8 {
			p.SrcPort = binary.BigEndian.Uint16(p.L4[0:])
			p.DstPort = binary.BigEndian.Uint16(p.L4[2:])
		}
	}
	return p, nil
}

// VerifyChecksums checks the IPv4 header checksum and the TCP/UDP/ICMP
// checksum of an unfragmented frame, recomputing them from scratch.
func VerifyChecksums(b []byte) error {
	p, err := Parse(b)
	if err != nil {
		return err
	}
	if p.Src.Is4() {
		ihl := int(p.IP[0]&0xf) * 4
		if c := Checksum(p.IP[:ihl]); c != 0 {
			return fmt.Errorf("IPv4 header checksum wrong (residue %#04x)", c)
		}
		if binary.BigEndian.Uint16(p.IP[6:])&0x3fff != 0 {
			return nil // a fragment: the transport checksum covers the whole datagram
		}
	} else if p.Fragmented {
		return nil
	}
	seg := append([]byte(nil), p.L4...)
	switch p.Proto {
	case TCP, UDP, ICMPv6:
		if p.Proto == UDP && p.Src.Is4() && binary.BigEndian.Uint16(seg[6:]) == 0 {
			return nil // no checksum
		}
		if c := L4Checksum(p.Src, p.Dst, p.Proto, seg); c != 0 {
			return fmt.Errorf("protocol %d checksum wrong (residue %#04x)", p.Proto, c)
		}
	case ICMP:
		if c := Checksum(seg); c != 0 {
			return fmt.Errorf("ICMP checksum wrong (residue %#04x)", c)
		}
	}
	return nil
}

// ICMPMessage builds an ICMPv4 message (header and body) with its checksum.
func ICMPMessage(typ, code uint8, rest uint32, body []byte) []byte {
	m := make([]byte, 8, 8+len(body))
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:], rest)
	m = append(m, body...)
	binary.BigEndian.PutUint16(m[2:], Checksum(m))
	return m
}

// ICMPv6Message builds an ICMPv6 message from src to dst with its checksum.
func ICMPv6Message(src, dst netip.Addr, typ, code uint8, rest uint32, body []byte) []byte {
	m := make([]byte, 8, 8+len(body))
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:], rest)
	m = append(m, body...)
	binary.BigEndian.PutUint16(m[2:], L4Checksum(src, dst, ICMPv6, m))
	return m
}

// IPPacket returns the IP packet of a frame (without the Ethernet header).
func IPPacket(frame []byte) []byte {
	p, err := Parse(frame)
	if err != nil {
		panic(err)
	}
	return append([]byte(nil), p.IP...)
}
