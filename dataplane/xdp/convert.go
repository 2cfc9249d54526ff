package xdp

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// Addresses in the maps are 16 bytes in network byte order (an IPv4
// address in the first 4); ports are in host byte order.

const (
	familyV4 = 4
	familyV6 = 6
)

func addrWords(a netip.Addr) (w [16]uint8, family uint8) {
	if a.Is4() {
		b := a.As4()
		copy(w[:], b[:])
		return w, familyV4
	}
	return a.As16(), familyV6
}

func wordsAddr(w [16]uint8, family uint8) netip.Addr {
	if family == familyV4 {
		return netip.AddrFrom4([4]byte(w[:4]))
	}
	return netip.AddrFrom16(w)
}

// enumNames returns the names of a C enum from the object's BTF, lower
// case without prefix ("pass_not_service"), by value; the _MAX entry is
// left out.
func enumNames(types *btf.Spec, name, prefix string) (map[uint32]string, error) {
	values, err := enumValues(types, name)
	if err != nil {
		return nil, err
	}
	names := make(map[uint32]string, len(values))
	for n, v := range values {
		if !strings.HasSuffix(n, "_MAX") {
			names[uint32(v)] = strings.ToLower(strings.TrimPrefix(n, prefix))
		}
	}
	return names, nil
}

// enumValues returns the values of a C enum from the object's BTF, by name.
func enumValues(types *btf.Spec, name string) (map[string]uint64, error) {
	var e *btf.Enum
	if err := types.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("enum %s: %w", name, err)
	}
	values := make(map[string]uint64, len(e.Values))
	for _, v := range e.Values {
		values[v.Name] = v.Value
	}
	return values, nil
}
