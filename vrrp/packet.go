package vrrp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// Protocol constants (RFC 5798 section 5, RFC 3768 section 5).
const (
	IPProtoVRRP     = 112 // IP protocol number
	vrrpTTL         = 255 // TTL / hop limit sent, and required in multicast mode (RFC 5798 5.1.1.3, 7.1)
	vrrpTOS         = 0xc0
	advertType      = 1 // the only VRRP packet type
	headerLen       = 8
	authDataLen     = 8 // VRRPv2 authentication data
	authTypeNone    = 0
	authTypeSimple  = 1
	authTypeAH      = 2
	v3IntervalMask  = 0x0fff
	centisecond     = 10 * time.Millisecond
	maxAdvertLength = headerLen + 255*16 + authDataLen
)

// Multicast groups of VRRP (RFC 5798 section 5.1.1.2 and 5.1.2.2).
var (
	MulticastGroup4 = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	MulticastGroup6 = netip.MustParseAddr("ff02::12")
)

// Receive error reasons: each rejected advertisement increments exactly
// one of these counters in InstanceStatus.RxErrors, except RxIntervalLimit,
// which counts accepted VRRPv3 advertisements whose interval was refused
// (bounded, see InstanceConfig.LearnedIntervalMaxFactor). The names are
// stable (they are metric label values); a retired name is never reused.
const (
	RxTTL      = "ttl"       // multicast mode: IPv4 TTL or IPv6 hop limit is not 255
	RxVersion  = "version"   // not the instance's VRRP version
	RxType     = "type"      // not an ADVERTISEMENT
	RxLength   = "length"    // shorter or longer than its address count says
	RxChecksum = "checksum"  // bad checksum
	RxVRID     = "vrid"      // VRID not configured on this interface
	RxAuth     = "auth"      // VRRPv2 auth type or password mismatch
	RxAddrList = "addr_list" // address list differs from the configured VIPs
	RxInterval = "interval"  // VRRPv2 interval mismatch, or a zero interval
	RxPeer     = "peer"      // unicast mode: source is not a configured peer
	// RxIntervalLimit: a VRRPv3 interval above LearnedIntervalMaxFactor
	// times ours: the advert counts, a backup learns the limit instead.
	RxIntervalLimit = "interval_limit"
)

// RxErrorReasons lists every receive error reason, in a stable order.
var RxErrorReasons = []string{RxTTL, RxVersion, RxType, RxLength, RxChecksum, RxVRID, RxAuth, RxAddrList, RxInterval, RxPeer, RxIntervalLimit}

// ParseError is a rejected packet: Reason is one of RxErrorReasons.
type ParseError struct {
	Reason string
	Detail string
}

func (e *ParseError) Error() string { return "vrrp packet rejected (" + e.Reason + "): " + e.Detail }

func rxErr(reason, format string, args ...any) *ParseError {
	return &ParseError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Advert is a VRRP ADVERTISEMENT, version 2 or 3.
type Advert struct {
	Version  int
	VRID     uint8
	Priority uint8
	// Interval: centiseconds in v3 (Max Adver Int), seconds in v2.
	Interval time.Duration
	// AuthType and AuthData: VRRPv2 only.
	AuthType uint8
	AuthData [authDataLen]byte
	Addrs    []netip.Addr
}

// Marshal encodes the advertisement (the IP payload) for a packet from src
// to dst, which the VRRPv3 checksum covers through the pseudo-header
// (RFC 5798 5.2.8); the VRRPv2 checksum covers the message only. All
// addresses must be of src's family.
func (a *Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	alen := 4
	if src.Is6() {
		alen = 16
	}
	if len(a.Addrs) > 255 {
		return nil, fmt.Errorf("%d addresses do not fit in an advertisement", len(a.Addrs))
	}
	n := headerLen + len(a.Addrs)*alen
	if a.Version == 2 {
		n += authDataLen
	}
	b := make([]byte, n)
	b[0] = byte(a.Version)<<4 | advertType
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = byte(len(a.Addrs))
	switch a.Version {
	case 2:
		if alen != 4 {
			return nil, fmt.Errorf("VRRPv2 is IPv4 only")
		}
		secs := a.Interval / time.Second
		if secs < 1 || secs > 255 || a.Interval%time.Second != 0 {
			return nil, fmt.Errorf("VRRPv2 interval %v is not 1-255 whole seconds", a.Interval)
		}
		b[4] = a.AuthType
		b[5] = byte(secs)
		copy(b[n-authDataLen:], a.AuthData[:])
	case 3:
		cs := a.Interval / centisecond
		if cs < 1 || cs > v3IntervalMask || a.Interval%centisecond != 0 {
			return nil, fmt.Errorf("VRRPv3 interval %v is not 1-4095 centiseconds", a.Interval)
		}
		binary.BigEndian.PutUint16(b[4:6], uint16(cs))
	default:
		return nil, fmt.Errorf("VRRP version %d: want 2 or 3", a.Version)
	}
	for i, addr := range a.Addrs {
		if addr.Is6() != (alen == 16) || addr.Is4In6() {
			return nil, fmt.Errorf("address %s is not of the packet's family", addr)
		}
		copy(b[headerLen+i*alen:], addr.AsSlice())
	}
	var sum uint32
	if a.Version == 3 {
		sum = pseudoHeaderSum(src, dst, IPProtoVRRP, n)
	}
	binary.BigEndian.PutUint16(b[6:8], ^fold(sum+checksumAdd(b)))
	return b, nil
}

// ParseAdvert decodes and checks an advertisement received from src to dst
// (the IP payload): version, type, length against the address count,
// checksum and a non-zero interval (RFC 5798 7.1). The checks that need
// the instance (TTL, VRID, authentication, addresses) are the caller's.
// Errors are *ParseError.
func ParseAdvert(b []byte, src, dst netip.Addr) (Advert, error) {
	var a Advert
	if len(b) < headerLen {
		return a, rxErr(RxLength, "%d bytes, shorter than the %d-byte header", len(b), headerLen)
	}
	a.Version = int(b[0] >> 4)
	if a.Version != 2 && a.Version != 3 {
		return a, rxErr(RxVersion, "version %d", a.Version)
	}
	if t := b[0] & 0x0f; t != advertType {
		return a, rxErr(RxType, "type %d", t)
	}
	a.VRID, a.Priority = b[1], b[2]
	count := int(b[3])
	alen := 4
	if src.Is6() {
		alen = 16
		if a.Version == 2 {
			return a, rxErr(RxVersion, "VRRPv2 over IPv6")
		}
	}
	want := headerLen + count*alen
	if a.Version == 2 {
		want += authDataLen
	}
	if len(b) != want {
		return a, rxErr(RxLength, "%d bytes for %d addresses, want %d", len(b), count, want)
	}
	var sum uint32
	if a.Version == 3 {
		sum = pseudoHeaderSum(src, dst, IPProtoVRRP, len(b))
	}
	if fold(sum+checksumAdd(b)) != 0xffff {
		return a, rxErr(RxChecksum, "bad checksum 0x%04x", binary.BigEndian.Uint16(b[6:8]))
	}
	if a.Version == 2 {
		a.AuthType = b[4]
		a.Interval = time.Duration(b[5]) * time.Second
		copy(a.AuthData[:], b[len(b)-authDataLen:])
	} else {
		a.Interval = time.Duration(binary.BigEndian.Uint16(b[4:6])&v3IntervalMask) * centisecond
	}
	if a.Interval == 0 {
		return a, rxErr(RxInterval, "zero advertisement interval")
	}
	a.Addrs = make([]netip.Addr, count)
	for i := range count {
		p := b[headerLen+i*alen:]
		if alen == 4 {
			a.Addrs[i] = netip.AddrFrom4([4]byte(p[:4]))
		} else {
			a.Addrs[i] = netip.AddrFrom16([16]byte(p[:16]))
		}
	}
	return a, nil
}

// checksumAdd returns the 32-bit one's complement sum of b, unfolded.
func checksumAdd(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold folds a 32-bit sum to 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudoHeaderSum is the sum of the IPv4 (RFC 768 style) or IPv6 (RFC 8200
// section 8.1) pseudo-header.
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s := checksumAdd(src.AsSlice()) + checksumAdd(dst.AsSlice())
	return s + uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
}

// checksum16 is the Internet checksum of b with an initial sum.
func checksum16(initial uint32, b []byte) uint16 { return ^fold(initial + checksumAdd(b)) }
