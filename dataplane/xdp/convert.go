package xdp

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Address and port fields are in network byte order in memory; the
// generated structs hold them as native-endian integers.

const (
	familyV4 = 4
	familyV6 = 6
)

func addrWords(a netip.Addr) (w [4]uint32, family uint8) {
	if a.Is4() {
		b := a.As4()
		w[0] = binary.NativeEndian.Uint32(b[:])
		return w, familyV4
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w, familyV6
}

func wordsAddr(w [4]uint32, family uint8) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	if family == familyV4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// be16 converts a port to its in-memory network-order representation.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// unbe16 is the inverse of be16.
func unbe16(v uint16) uint16 { return be16(v) }

// enumNames returns the names of a C enum from the object's BTF, lower
// case without prefix ("pass_not_service"), by value; the _MAX entry is
// left out.
func enumNames(types *btf.Spec, name, prefix string) (map[uint32]string, error) {
	var e *btf.Enum
	if err := types.TypeByName(name, &e); err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(e.Values))
	for _, v := range e.Values {
		if strings.HasSuffix(v.Name, "_MAX") {
			continue
		}
		names[uint32(v.Value)] = strings.ToLower(strings.TrimPrefix(v.Name, prefix))
	}
	return names, nil
}
