package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BGP is [bgp]: the director announces its VIPs to routers (active-active
// directors behind ECMP). Nil when the file has no [bgp].
type BGP struct {
	ASN uint32
	// RouterID is invalid (zero) for the default: the first IPv4 address
	// of the dataplane interfaces, found at start.
	RouterID netip.Addr
	// Announce is AnnounceHealthy or AnnounceAlways.
	Announce    string
	DrainTime   time.Duration
	RestartTime time.Duration // 0: no graceful restart
	Peers       []BGPPeer
	VIPs        []BGPVIP
	Line        int
}

// The values of [bgp] announce.
const (
	AnnounceHealthy = "healthy"
	AnnounceAlways  = "always"
)

// BGPPeer is a [[bgp.peer]].
type BGPPeer struct {
	Address       netip.Addr
	ASN           uint32
	Port          uint16
	HoldTime      time.Duration
	BFD           bool
	BFDInterval   time.Duration
	BFDMultiplier int
	// PasswordFile holds the TCP MD5 password; "" none. The daemon reads
	// it when it configures the peer.
	PasswordFile string
	// MED and LocalPref are nil when not set.
	MED         *uint32
	LocalPref   *uint32
	Communities []Community
	Line        int
}

// BGPVIP is a [[bgp.vip]]: the attributes of one VIP's route.
type BGPVIP struct {
	Address     netip.Addr
	MED         *uint32
	LocalPref   *uint32
	Communities []Community
	Line        int
}

// Community is a BGP community (RFC 1997), written "AS:VALUE".
type Community uint32

func (c Community) String() string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// ParseCommunity parses "AS:VALUE", each 0..65535.
func ParseCommunity(s string) (Community, error) {
	a, v, ok := strings.Cut(s, ":")
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(v, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q is not AS:VALUE (each 0..65535)", s)
	}
	return Community(hi<<16 | lo), nil
}

func checkCommunity(s string) error {
	_, err := ParseCommunity(s)
	return err
}

// bgp decodes [bgp], its peers and VIP attributes.
func (d *decoder) bgp(t *table) *BGP {
	b := &BGP{Line: d.idx.line(t.p)}
	t.fill(b)
	if b.RouterID.IsValid() && !b.RouterID.Is4() {
		t.errorf("router_id", "router_id %s: a BGP identifier is an IPv4 address", b.RouterID)
	}
	seen := map[netip.Addr]int{}
	for _, pt := range t.tables("peer") {
		p := BGPPeer{Line: d.idx.line(pt.p)}
		setDefaults(pt.sec, &p)
		pt.decode(&p, "address")
		if p.Address.IsValid() {
			pt.lbl, pt.lazy = fmt.Sprintf("bgp.peer %s", p.Address), lazyLabel{}
			if line, dup := seen[p.Address]; dup {
				pt.errorf("address", "duplicate bgp.peer %s (first on line %d)", p.Address, line)
			}
			seen[p.Address] = p.Line
		}
		pt.decode(&p)
		k := pt.spec("hold_time")
		if v, ok := pt.read(k); ok {
			if h := v.(time.Duration); h > 0 && h < 3*time.Second {
				pt.errorf("hold_time", "hold_time %v: 0 or at least 3s (RFC 4271)", h)
			} else {
				p.HoldTime = h
			}
		}
		p.MED, p.LocalPref, p.Communities = d.bgpAttrs(pt)
		pt.finish()
		b.Peers = append(b.Peers, p)
	}
	if t.has("peer") && len(b.Peers) == 0 && t.valid("peer") {
		t.errorf("peer", "peer: at least one [[bgp.peer]] is needed")
	}
	clear(seen)
	for _, vt := range t.tables("vip") {
		v := BGPVIP{Line: d.idx.line(vt.p)}
		vt.decode(&v, "address")
		if v.Address.IsValid() {
			vt.lbl, vt.lazy = fmt.Sprintf("bgp.vip %s", v.Address), lazyLabel{}
			if line, dup := seen[v.Address]; dup {
				vt.errorf("address", "duplicate bgp.vip %s (first on line %d)", v.Address, line)
			}
			seen[v.Address] = v.Line
		}
		vt.decode(&v)
		v.MED, v.LocalPref, v.Communities = d.bgpAttrs(vt)
		vt.finish()
		b.VIPs = append(b.VIPs, v)
	}
	t.finish()
	return b
}

// bgpAttrs reads the route attributes med, local_pref and communities.
func (d *decoder) bgpAttrs(t *table) (med, pref *uint32, comms []Community) {
	num := func(key string) *uint32 {
		v, ok := t.read(t.spec(key))
		if !ok {
			return nil
		}
		n := uint32(v.(int64))
		return &n
	}
	med, pref = num("med"), num("local_pref")
	t.each("communities", func(_ int, _ keyPath, v any) {
		c, _ := ParseCommunity(v.(string)) // checked by the key
		comms = append(comms, c)
	})
	return med, pref, comms
}

// checkBGP checks what [bgp] says about the rest of the file: each
// bgp.vip is a virtual_server address.
func (d *decoder) checkBGP(c *Config, p keyPath) {
	if c.BGP == nil {
		return
	}
	vips := map[netip.Addr]bool{}
	for _, v := range c.VirtualServers {
		vips[v.Address] = true
	}
	for i, v := range c.BGP.VIPs {
		if v.Address.IsValid() && !vips[v.Address] {
			d.errorf(p.key("vip").index(i).key("address"), "bgp.vip %s: not the address of any virtual_server", v.Address)
		}
	}
}
