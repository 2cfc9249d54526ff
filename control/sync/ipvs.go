package sync

import (
	"encoding/binary"
	"net/netip"
)

// The kernel's IPVS sync protocol, version 1 (net/netfilter/ipvs/
// ip_vs_sync.c): a datagram is an 8-byte header, struct ip_vs_sync_mesg
// {reserved 0, syncid, size, nr_conns, version 1, spare 0}, and nr_conns
// connections, each struct ip_vs_sync_v4 (36 bytes) or _v6 (72) followed
// by options (type, length, data) and padded to 4 bytes. Encoding and
// decoding are pure functions; a decoder refuses a datagram as the kernel's
// ip_vs_process_message does and says why (Reason).

// Wire constants (include/uapi/linux/ip_vs.h, ip_vs_sync.c).
const (
	ipvsHeaderLen = 8
	ipvsV4Len     = 36
	ipvsV6Len     = 72
	ipvsVersion   = 1 // SYNC_PROTO_VER
	// DefaultPort is IP_VS_SYNC_PORT; DefaultGroup IP_VS_SYNC_GROUP.
	DefaultPort = 8848

	typeINET6    = 1 << 0 // STYPE_F_INET6
	sverShift    = 12     // the version in ver_size's top 4 bits
	sverMask     = 0x0fff
	optSeqData   = 1 // IPVS_OPT_SEQ_DATA
	optPEData    = 2 // IPVS_OPT_PE_DATA
	optPEName    = 3 // IPVS_OPT_PE_NAME
	optFParam    = 0x40
	seqOptLen    = 24 // struct ip_vs_sync_conn_options
	peDataMaxLen = 255
	peNameMaxLen = 16 // IP_VS_PENAME_MAXLEN

	// Connection flags (IP_VS_CONN_F_*).
	FlagFwdMask  = 0x0007
	FlagMasq     = 0x0000
	FlagTunnel   = 0x0002
	FlagDRoute   = 0x0003
	FlagInactive = 0x0100
	FlagTemplate = 0x1000
	// flagBackupMask are the flags a receiver keeps (IP_VS_CONN_F_BACKUP_MASK).
	flagBackupMask = 0x0007 | 0x0080 | 0x0100 | 0x0600 | 0x0800 | 0x1000

	// maxConnsPerMessage: nr_conns is a byte.
	maxConnsPerMessage = 255
)

// DefaultGroup is the multicast group of IPVS sync, 224.0.0.81.
var DefaultGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})

// IPVS TCP states (ip_vs_proto_tcp.c), as carried in a record.
const (
	TCPNone        = 0
	TCPEstablished = 1
	TCPSynSent     = 2
	TCPSynRecv     = 3
	TCPFinWait     = 4
	TCPTimeWait    = 5
	TCPClose       = 6
	TCPCloseWait   = 7
	TCPLastAck     = 8
	TCPListen      = 9
	TCPSynAck      = 10
	tcpStates      = 11 // IP_VS_TCP_S_LAST
	udpStates      = 1  // IP_VS_UDP_S_LAST: NORMAL only
)

// Record is one connection of a sync message, as the kernel's struct
// ip_vs_sync_v4/_v6: addresses and ports, flags (the forwarding method in
// the low 3 bits, FlagTemplate, FlagInactive), the protocol's state, the
// firewall mark and the timeout in seconds. Options a receiver does not
// use (sequence adjustments, persistence engine data) are checked and
// skipped.
type Record struct {
	Protocol uint8
	Flags    uint32
	State    uint16
	Client   netip.AddrPort // caddr, cport (0 for a template)
	Virtual  netip.AddrPort // vaddr, vport
	Real     netip.AddrPort // daddr, dport
	Fwmark   uint32
	Timeout  uint32 // seconds
}

// is6 reports whether the record is an IPv6 one (all its addresses are).
func (r Record) is6() bool { return r.Client.Addr().Is6() }

// wireLen is the record's length without padding.
func (r Record) wireLen() int {
	if r.is6() {
		return ipvsV6Len
	}
	return ipvsV4Len
}

// appendRecord appends r, padded to 4 bytes, as ip_vs_sync_conn writes it.
func appendRecord(b []byte, r Record) []byte {
	n := r.wireLen()
	var typ uint8
	if r.is6() {
		typ = typeINET6
	}
	b = append(b, typ, r.Protocol)
	b = binary.BigEndian.AppendUint16(b, uint16(n)&sverMask) // version 0, size
	b = binary.BigEndian.AppendUint32(b, r.Flags)
	b = binary.BigEndian.AppendUint16(b, r.State)
	b = binary.BigEndian.AppendUint16(b, r.Client.Port())
	b = binary.BigEndian.AppendUint16(b, r.Virtual.Port())
	b = binary.BigEndian.AppendUint16(b, r.Real.Port())
	b = binary.BigEndian.AppendUint32(b, r.Fwmark)
	b = binary.BigEndian.AppendUint32(b, r.Timeout)
	for _, a := range []netip.Addr{r.Client.Addr(), r.Virtual.Addr(), r.Real.Addr()} {
		b = append(b, a.AsSlice()...)
	}
	return b // 36 and 72 are multiples of 4: no padding
}

// EncodeIPVS packs records into messages of at most maxLen bytes each
// (the kernel's sync_maxlen: the interface's MTU less the IP and UDP
// headers), at most 255 records each. A record with addresses of mixed
// families is skipped.
func EncodeIPVS(syncID uint8, recs []Record, maxLen int) [][]byte {
	var out [][]byte
	var msg []byte
	n := 0
	flush := func() {
		if n > 0 {
			binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
			msg[4] = uint8(n)
			out = append(out, msg)
		}
		msg, n = nil, 0
	}
	for _, r := range recs {
		if !sameFamily(r) {
			continue
		}
		if msg != nil && (len(msg)+r.wireLen() > maxLen || n == maxConnsPerMessage) {
			flush()
		}
		if msg == nil {
			msg = make([]byte, ipvsHeaderLen, maxLen)
			msg[1], msg[5] = syncID, ipvsVersion
		}
		msg = appendRecord(msg, r)
		n++
	}
	flush()
	return out
}

// IPVSMessageLen is the length of a message of n IPv4 records.
func IPVSMessageLen(n int) int { return ipvsHeaderLen + n*ipvsV4Len }

func sameFamily(r Record) bool {
	c, v, d := r.Client.Addr(), r.Virtual.Addr(), r.Real.Addr()
	return c.IsValid() && c.Is4() == v.Is4() && v.Is4() == d.Is4() && !c.Is4In6() && !v.Is4In6() && !d.Is4In6()
}

// Skipped is a record a decoder left out, and why; the rest of the
// message is used.
type Skipped struct {
	Index  int
	Reason Reason
}

// DecodeIPVS reads a sync message as ip_vs_process_message does: a
// message whose size is not the datagram's, whose sync id is not ours
// (unless ours is 0), whose version, reserved or spare byte is wrong, or
// whose records or options run past it is refused whole (the Reason); a
// record with an unknown mandatory option, an unknown protocol, an
// invalid state or an IPv4-mapped address in an IPv6 record is skipped,
// the others kept.
func DecodeIPVS(b []byte, syncID uint8) ([]Record, []Skipped, Reason) {
	if len(b) < 4 {
		return nil, nil, ReasonSize
	}
	if int(binary.BigEndian.Uint16(b[2:])) != len(b) {
		return nil, nil, ReasonSize
	}
	if syncID != 0 && b[1] != syncID {
		return nil, nil, ReasonSyncID
	}
	if len(b) < ipvsHeaderLen || b[0] != 0 || b[5] != ipvsVersion || b[6] != 0 || b[7] != 0 {
		// A version 0 message (the kernel's sync_version 0): not spoken.
		return nil, nil, ReasonVersion
	}
	n := int(b[4])
	recs := make([]Record, 0, n)
	var skipped []Skipped
	p := ipvsHeaderLen
	for i := range n {
		if p+ipvsV4Len > len(b) {
			return nil, nil, ReasonSize
		}
		vs := binary.BigEndian.Uint16(b[p+2:])
		size := int(vs & sverMask)
		end := p + size
		if end > len(b) || size < ipvsV4Len {
			return nil, nil, ReasonSize
		}
		if vs>>sverShift != 0 {
			return nil, nil, ReasonVersion
		}
		r, why := decodeRecord(b[p:end])
		switch why {
		case ReasonNone:
			recs = append(recs, r)
		case ReasonOption, ReasonProtocol, ReasonState, ReasonAddress:
			skipped = append(skipped, Skipped{Index: i, Reason: why})
		default:
			return nil, nil, why
		}
		p += (size + 3) &^ 3
	}
	return recs, skipped, ReasonNone
}

// decodeRecord reads one record (ip_vs_proc_sync_conn). A reason of
// ReasonOption, ReasonProtocol, ReasonState or ReasonAddress skips the
// record; others refuse the message.
func decodeRecord(b []byte) (Record, Reason) {
	var r Record
	v6 := b[0]&typeINET6 != 0 // the kernel reads only this bit of a v6 record's type
	if !v6 && b[0] != 0 {
		return r, ReasonMalformed
	}
	alen, hlen := 4, ipvsV4Len
	if v6 {
		alen, hlen = 16, ipvsV6Len
	}
	if len(b) < hlen {
		return r, ReasonSize
	}
	r.Protocol = b[1]
	r.Flags = binary.BigEndian.Uint32(b[4:]) & flagBackupMask
	r.State = binary.BigEndian.Uint16(b[8:])
	cport, vport, dport := binary.BigEndian.Uint16(b[10:]), binary.BigEndian.Uint16(b[12:]), binary.BigEndian.Uint16(b[14:])
	r.Fwmark = binary.BigEndian.Uint32(b[16:])
	r.Timeout = binary.BigEndian.Uint32(b[20:])
	addr := func(off int) netip.Addr {
		a, _ := netip.AddrFromSlice(b[off : off+alen])
		return a
	}
	r.Client = netip.AddrPortFrom(addr(24), cport)
	r.Virtual = netip.AddrPortFrom(addr(24+alen), vport)
	r.Real = netip.AddrPortFrom(addr(24+2*alen), dport)

	// Options: type, length (not 0), data; the F_PARAM bit makes an
	// unknown one optional. Each known one at most once.
	var seen uint8
	skip := ReasonNone
	for p := hlen; p < len(b); {
		if p+2 > len(b) {
			return r, ReasonMalformed
		}
		typ, plen := b[p], int(b[p+1])
		p += 2
		if plen == 0 || p+plen > len(b) {
			return r, ReasonMalformed
		}
		switch t := typ &^ optFParam; t {
		case optSeqData, optPEData, optPEName:
			max := map[uint8]int{optSeqData: seqOptLen, optPEData: peDataMaxLen, optPEName: peNameMaxLen}[t]
			if (t == optSeqData && plen != max) || plen > max || seen&(1<<t) != 0 {
				return r, ReasonMalformed
			}
			seen |= 1 << t
		default:
			if typ&optFParam == 0 && skip == ReasonNone {
				skip = ReasonOption
			}
		}
		p += plen
	}
	if skip != ReasonNone {
		return r, skip
	}
	if seen&(1<<optPEData) != 0 && seen&(1<<optPEName) == 0 {
		// Persistence engine data without its engine's name.
		return r, ReasonOption
	}
	if v6 && (r.Client.Addr().Is4In6() || r.Virtual.Addr().Is4In6() || r.Real.Addr().Is4In6()) {
		return r, ReasonAddress
	}
	if r.Flags&FlagTemplate == 0 {
		switch r.Protocol {
		case 6:
			if r.State >= tcpStates {
				return r, ReasonState
			}
		case 17:
			if r.State >= udpStates {
				return r, ReasonState
			}
		default:
			return r, ReasonProtocol
		}
	}
	return r, ReasonNone
}
