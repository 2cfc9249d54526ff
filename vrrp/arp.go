package vrrp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
)

// Ethernet, ARP (RFC 826) and neighbour discovery (RFC 4861) framing for
// the announcements of a master and the split-brain probes.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	ethHeaderLen  = 14
	arpLen        = 28
	arpRequest    = 1
	arpReply      = 2
	ip6HeaderLen  = 40
	ipv4HeaderLen = 20
	icmp6NS       = 135
	icmp6NA       = 136
	ndOptSLLA     = 1
	ndOptTLLA     = 2
	protoICMPv6   = 58
	naFlagRouter  = 0x80
	naFlagOverrd  = 0x20
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes6    = netip.MustParseAddr("ff02::1")
)

func ethHeader(b []byte, dst, src net.HardwareAddr, etherType uint16) {
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
}

func arpFrame(op uint16, dst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, ethHeaderLen+arpLen)
	ethHeader(b, dst, sha, etherTypeARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // protocol: IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha)
	copy(a[14:18], spa.AsSlice())
	copy(a[18:24], tha)
	copy(a[24:28], tpa.AsSlice())
	return b
}

// garpFrame is a gratuitous ARP request for ip from mac, laid out as
// keepalived's: broadcast, sender and target address ip, target hardware
// address ff:ff:ff:ff:ff:ff.
func garpFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	return arpFrame(arpRequest, broadcastMAC, mac, ip, broadcastMAC, ip)
}

// arpProbeFrame asks who has target with sender address 0.0.0.0 (an RFC
// 5227 probe): a holder answers to our MAC and no ARP cache learns from it.
func arpProbeFrame(mac net.HardwareAddr, target netip.Addr) []byte {
	return arpFrame(arpRequest, broadcastMAC, mac, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), target)
}

func ip6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, icmp []byte) []byte {
	b := make([]byte, ethHeaderLen+ip6HeaderLen+len(icmp))
	ethHeader(b, dstMAC, srcMAC, etherTypeIPv6)
	h := b[ethHeaderLen:]
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:6], uint16(len(icmp)))
	h[6] = protoICMPv6
	h[7] = vrrpTTL
	copy(h[8:24], src.AsSlice())
	copy(h[24:40], dst.AsSlice())
	copy(h[ip6HeaderLen:], icmp)
	binary.BigEndian.PutUint16(h[ip6HeaderLen+2:], checksum16(pseudoHeaderSum(src, dst, protoICMPv6, len(icmp)), icmp))
	return b
}

func multicastMAC6(a netip.Addr) net.HardwareAddr {
	b := a.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// unsolicitedNAFrame is an unsolicited neighbour advertisement for ip from
// mac to all nodes, as keepalived's: source ip, Override set, Router when
// forwarding, with the target link-layer address option.
func unsolicitedNAFrame(mac net.HardwareAddr, ip netip.Addr, router bool) []byte {
	icmp := make([]byte, 24+8)
	icmp[0] = icmp6NA
	if router {
		icmp[4] |= naFlagRouter
	}
	icmp[4] |= naFlagOverrd
	copy(icmp[8:24], ip.AsSlice())
	icmp[24], icmp[25] = ndOptTLLA, 1
	copy(icmp[26:32], mac)
	return ip6Frame(multicastMAC6(allNodes6), mac, ip, allNodes6, icmp)
}

// solicitedNode is the solicited-node multicast address of a (RFC 4291).
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// nsProbeFrame is a neighbour solicitation for target from the unspecified
// address (a DAD probe, RFC 4862 5.4.2): a holder answers to all nodes and
// no neighbour cache learns from it.
func nsProbeFrame(mac net.HardwareAddr, target netip.Addr) []byte {
	icmp := make([]byte, 24)
	icmp[0] = icmp6NS
	copy(icmp[8:24], target.AsSlice())
	dst := solicitedNode(target)
	return ip6Frame(multicastMAC6(dst), mac, netip.IPv6Unspecified(), dst, icmp)
}

// claim is a frame showing that the station MAC uses address IP: an ARP
// packet sent from IP, or a neighbour advertisement for IP.
type claim struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// parseClaim decodes an Ethernet frame into a claim; ok is false for any
// other frame, malformed or not.
func parseClaim(f []byte) (c claim, ok bool) {
	if len(f) < ethHeaderLen {
		return c, false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeARP:
		a := f[ethHeaderLen:]
		if len(a) < arpLen || binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
			return c, false
		}
		if op := binary.BigEndian.Uint16(a[6:8]); op != arpRequest && op != arpReply {
			return c, false
		}
		spa := netip.AddrFrom4([4]byte(a[14:18]))
		if spa.IsUnspecified() {
			return c, false
		}
		return claim{IP: spa, MAC: bytes.Clone(a[8:14])}, true
	case etherTypeIPv6:
		h := f[ethHeaderLen:]
		if len(h) < ip6HeaderLen+24 || h[0]>>4 != 6 || h[6] != protoICMPv6 || h[7] != vrrpTTL {
			return c, false
		}
		plen := int(binary.BigEndian.Uint16(h[4:6]))
		if plen < 24 || len(h) < ip6HeaderLen+plen {
			return c, false
		}
		icmp := h[ip6HeaderLen : ip6HeaderLen+plen]
		if icmp[0] != icmp6NA || icmp[1] != 0 {
			return c, false
		}
		c.IP = netip.AddrFrom16([16]byte(icmp[8:24]))
		c.MAC = bytes.Clone(f[6:12])
		for opts := icmp[24:]; len(opts) >= 8; {
			n := int(opts[1]) * 8
			if n == 0 || n > len(opts) {
				break
			}
			if opts[0] == ndOptTLLA && n >= 8 {
				c.MAC = bytes.Clone(opts[2:8])
			}
			opts = opts[n:]
		}
		return c, true
	}
	return c, false
}
