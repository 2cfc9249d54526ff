package nettest

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ProcIPVSAddr decodes an address of /proc/net/ip_vs: 0A4D0064:0050 (IPv4,
// hex) or [fd77::100]:0050 (IPv6); the port is hex in both.
func ProcIPVSAddr(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q in /proc/net/ip_vs", s)
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q in /proc/net/ip_vs: %w", s, err)
	}
	var a netip.Addr
	if strings.HasPrefix(s, "[") && i > 1 && s[i-1] == ']' {
		a, err = netip.ParseAddr(s[1 : i-1])
	} else {
		var b []byte
		b, err = hex.DecodeString(s[:i])
		if err == nil && len(b) == 4 {
			a = netip.AddrFrom4([4]byte(b))
		}
	}
	if err != nil || !a.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("bad address %q in /proc/net/ip_vs: %v", s, err)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
