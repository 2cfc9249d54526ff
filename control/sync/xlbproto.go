package sync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// xlb's own sync protocol carries the IPVS records inside an envelope
// that IPVS's lacks: the sender's boot epoch and a sequence number (a
// receiver refuses what it has seen, or an older boot's), and an HMAC-SHA256
// over the whole datagram with a key both directors hold (IPVS accepts
// anything from the segment). It adds the bulk sync: a director that
// starts asks its peers for their whole tables.
//
//	 0      4    5    6      8        16       24
//	| XLBS | v1 | type | 0 | epoch | seq | payload ... | HMAC-SHA256 (32) |
//
// Payloads: conns, an IPVS message (version 1 header and records); bulk
// conns, the request id (8) and an IPVS message; bulk request, the request
// id; bulk end, the request id and the records sent (4). An IPVS receiver
// on the same group and port drops these (their size field is not the
// datagram's).

// MsgType is an envelope's type.
type MsgType uint8

const (
	MsgConns       MsgType = 1 // connections, as they happen
	MsgBulkConns   MsgType = 2 // connections answering a bulk request
	MsgBulkRequest MsgType = 3 // send me your whole table
	MsgBulkEnd     MsgType = 4 // that was all of it: this many records
)

const (
	xlbMagic     = "XLBS"
	xlbVersion   = 1
	xlbHeaderLen = 24
	xlbMACLen    = sha256.Size
	// MinKeyLen is the shortest HMAC key accepted (bytes).
	MinKeyLen = 16
)

// XLBOverhead is what the envelope adds to an IPVS message of bulk
// connections (the largest).
const XLBOverhead = xlbHeaderLen + 8 + xlbMACLen

// Envelope is an xlb datagram, decoded.
type Envelope struct {
	Type      MsgType
	Epoch     uint64 // the sender's boot (ns since the Unix epoch)
	Seq       uint64 // the sender's sequence number in that boot, from 1
	RequestID uint64 // bulk conns, request, end
	Count     uint32 // bulk end: the records sent
	Body      []byte // conns, bulk conns: an IPVS message
}

// SealXLB encodes e and appends its HMAC with key.
func SealXLB(key []byte, e Envelope) []byte {
	b := make([]byte, 0, xlbHeaderLen+8+4+len(e.Body)+xlbMACLen)
	b = append(b, xlbMagic...)
	b = append(b, xlbVersion, uint8(e.Type), 0, 0)
	b = binary.BigEndian.AppendUint64(b, e.Epoch)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	switch e.Type {
	case MsgBulkConns, MsgBulkRequest, MsgBulkEnd:
		b = binary.BigEndian.AppendUint64(b, e.RequestID)
	}
	switch e.Type {
	case MsgConns, MsgBulkConns:
		b = append(b, e.Body...)
	case MsgBulkEnd:
		b = binary.BigEndian.AppendUint32(b, e.Count)
	}
	return appendMAC(key, b)
}

// appendMAC appends the HMAC-SHA256 of b with key.
func appendMAC(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(b)
}

// OpenXLB checks a datagram's magic, version and HMAC, in that order, and
// decodes it. Nothing of a datagram is trusted before its HMAC verifies.
func OpenXLB(key, b []byte) (Envelope, Reason) {
	var e Envelope
	if len(b) < xlbHeaderLen+xlbMACLen {
		return e, ReasonSize
	}
	if string(b[:4]) != xlbMagic || b[4] != xlbVersion {
		return e, ReasonVersion
	}
	body, sum := b[:len(b)-xlbMACLen], b[len(b)-xlbMACLen:]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), sum) {
		return e, ReasonHMAC
	}
	e.Type = MsgType(b[5])
	if b[6] != 0 || b[7] != 0 {
		return e, ReasonVersion
	}
	e.Epoch = binary.BigEndian.Uint64(b[8:])
	e.Seq = binary.BigEndian.Uint64(b[16:])
	p := body[xlbHeaderLen:]
	switch e.Type {
	case MsgConns:
		e.Body = p
	case MsgBulkConns, MsgBulkRequest, MsgBulkEnd:
		if len(p) < 8 {
			return e, ReasonSize
		}
		e.RequestID = binary.BigEndian.Uint64(p)
		p = p[8:]
		switch e.Type {
		case MsgBulkConns:
			e.Body = p
		case MsgBulkRequest:
			if len(p) != 0 {
				return e, ReasonSize
			}
		case MsgBulkEnd:
			if len(p) != 4 {
				return e, ReasonSize
			}
			e.Count = binary.BigEndian.Uint32(p)
		}
	default:
		return e, ReasonVersion
	}
	return e, ReasonNone
}
