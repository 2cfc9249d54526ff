package health

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/nldump"
)

// The IPv4 SYNs of a prober with a tap (synprobe_tap.go) leave through an
// AF_PACKET socket, as Ethernet frames built here, where they can: the
// raw socket's send (the route looked up, the IP header built, an IP ID
// drawn, netfilter's hooks, the neighbour's output) for each SYN was about
// a quarter of the daemon's CPU at 12,800 checks a second (issue 13). The
// answers do not need the stack either: the tap takes them before it (a
// SYN the stack did not see has no conntrack entry, so the answers must
// not reach it: only the SYNs that leave by an interface the tap takes the
// answers on are sent so).
//
// A check learns its route once (learnRoute): the interface and next hop
// of its real server, by the kernel's route lookup; again after a change
// of the routes (heard on a netlink socket at the refreshes), its SYNs
// going through the raw socket meanwhile. The next hop's MAC is
// read from the kernel's neighbour table, at most once per
// pktRefreshEvery per interface, by the goroutine sending. A SYN goes
// through the raw socket instead while the neighbour is not resolved (the
// stack then resolves it), and one SYN per refresh while the kernel has
// not confirmed it lately (stale: the stack's send makes it verify the
// entry, as its own traffic would).

const (
	// pktRefreshEvery is how often a link's neighbours are read again.
	pktRefreshEvery = time.Second
	// pktMaxPaths caps the next hops a prober sends to through its
	// packet socket (real servers on the director's link are a next hop
	// each); the SYNs to others go through the raw socket.
	pktMaxPaths = 1024
	// pktFrameLen is an Ethernet header, an IPv4 header, and the SYN.
	pktFrameLen = 14 + 20 + 24
)

// A ProbeLinker is a ProbeTap that says on which interfaces it takes the
// answers (their indexes in the tap's network namespace): the probers'
// SYNs that leave by them bypass the stack. A ProbeTap that is not one
// leaves every SYN to the stack.
type ProbeLinker interface {
	ProbeLinks() ([]int, error)
}

// pktSender is a prober's packet socket and the next hops it sends to.
type pktSender struct {
	file  *os.File
	rc    syscall.RawConn
	nl    *netlink.Handle // in the prober's network namespace
	ttl   uint8
	ident atomic.Uint32
	tap   ProbeLinker
	calls atomic.Uint64 // sendmmsg calls (for the tests)
	// routeEvents is a netlink socket that hears of the changes to the
	// IPv4 routes; gen counts the changes heard: a path learned before
	// the last one is stale (its SYNs go through the raw socket, and its
	// checks learn their route again).
	routeEvents int
	gen         atomic.Uint64
	eventsMu    sync.Mutex
	events      [4096]byte   // routeEvents' reads, under eventsMu
	nextPoll    atomic.Int64 // when pollRoutes reads them next (Unix ns)

	mu     sync.Mutex
	routes map[pathKey]*synRoute
	links  map[int]*pktLink
	// raw is the route through the raw socket from each source, as
	// learned since the last change of the routes heard (rawRoute).
	raw map[netip.Addr]*synRoute
}

type pathKey struct {
	src     netip.Addr
	ifindex int
	nexthop netip.Addr
}

// pktLink is an interface the sender sends by.
type pktLink struct {
	index   int
	next    atomic.Int64 // when its neighbours are read next (Unix ns)
	refresh sync.Mutex   // held by the goroutine reading them
	paths   []*pktPath   // under pktSender.mu
}

// pktPath is a source and next hop on a link: how its SYNs leave.
type pktPath struct {
	s       *pktSender
	gen     uint64 // s.gen when it was learned
	link    *pktLink
	nexthop netip.Addr
	// eth is the frames' Ethernet header; nil: the SYNs go through the
	// raw socket (the neighbour is not resolved).
	eth atomic.Pointer[[14]byte]
	// kick: the kernel has not confirmed the neighbour lately; the next
	// SYN goes through the raw socket, so that the stack verifies it.
	kick atomic.Bool
}

// openPktSender opens the packet sender of a prober in the calling
// thread's network namespace, or returns nil when the SYNs cannot bypass
// the stack there.
func openPktSender(tap ProbeTap) *pktSender {
	pl, ok := tap.(ProbeLinker)
	if !ok {
		return nil
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0) // protocol 0: receives nothing
	if err != nil {
		return nil
	}
	ev, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		return nil
	}
	if err := unix.Bind(ev, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_ROUTE}); err != nil {
		unix.Close(fd)
		unix.Close(ev)
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		unix.Close(fd)
		unix.Close(ev)
		return nil
	}
	f := os.NewFile(uintptr(fd), "tcp-check-pkt")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(ev)
		h.Close()
		return nil
	}
	ttl := uint8(64)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_default_ttl"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 && n < 256 {
			ttl = uint8(n)
		}
	}
	return &pktSender{file: f, rc: rc, nl: h, ttl: ttl, tap: pl, routeEvents: ev, routes: make(map[pathKey]*synRoute), links: make(map[int]*pktLink), raw: make(map[netip.Addr]*synRoute)}
}

func (s *pktSender) close() {
	s.file.Close()
	unix.Close(s.routeEvents)
	s.nl.Close()
}

// routesChanged reads the route changes heard since the last call, and
// makes the paths learned before them stale. Called with a link's
// refresh held.
func (s *pktSender) routesChanged() {
	if !s.eventsMu.TryLock() {
		return // another link's refresh reads them
	}
	defer s.eventsMu.Unlock()
	changed := false
	for {
		n, _, err := unix.Recvfrom(s.routeEvents, s.events[:], unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) || n > 0 {
			changed = true // a change, or changes lost (ENOBUFS)
		}
		if err != nil || n <= 0 {
			break
		}
	}
	if changed {
		s.gen.Add(1)
	}
}

// pollRoutes reads the route changes heard, unless they were read less
// than pktRefreshEvery ago (the links' refreshes read them too).
func (s *pktSender) pollRoutes(now time.Time) {
	if next := s.nextPoll.Load(); now.UnixNano() < next || !s.nextPoll.CompareAndSwap(next, now.Add(pktRefreshEvery).UnixNano()) {
		return
	}
	s.routesChanged()
}

// stale reports whether the route of via changed since it was learned.
func (via *pktPath) stale() bool { return via.gen != via.s.gen.Load() }

// route returns the route of the checks of target from r's source: r's
// source through the raw socket (rawRoute) when their SYNs go through it.
func (s *pktSender) route(r *synRoute, target netip.Addr) (*synRoute, error) {
	if !target.Is4() || !r.src.Is4() {
		return r, nil
	}
	// Learned before the routes are read: a change between the two makes
	// it stale, not missed.
	gen := s.gen.Load()
	rts, err := s.nl.RouteGetWithOptions(target.AsSlice(), &netlink.RouteGetOptions{SrcAddr: r.src.AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", target, err)
	}
	if len(rts) != 1 {
		return s.rawRoute(r, gen), nil
	}
	rt := rts[0]
	if rt.Type != unix.RTN_UNICAST || len(rt.MultiPath) > 0 || rt.Encap != nil || rt.LinkIndex <= 0 {
		return s.rawRoute(r, gen), nil
	}
	hop := target
	if rt.Gw != nil {
		gw, ok := netip.AddrFromSlice(rt.Gw)
		if !ok || !gw.Unmap().Is4() {
			return s.rawRoute(r, gen), nil
		}
		hop = gw.Unmap()
	}
	links, err := s.tap.ProbeLinks()
	if err != nil || !slices.Contains(links, rt.LinkIndex) {
		return s.rawRoute(r, gen), nil
	}
	key := pathKey{src: r.src, ifindex: rt.LinkIndex, nexthop: hop}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr := s.routes[key]; pr != nil && !pr.via.stale() {
		return pr, nil
	}
	if pr := s.routes[key]; pr != nil {
		// Learned again after a change: the stale path goes.
		delete(s.routes, key)
		l := pr.via.link
		l.paths = slices.DeleteFunc(l.paths, func(p *pktPath) bool { return p == pr.via })
	}
	if len(s.routes) >= pktMaxPaths {
		return s.rawLocked(r, gen), nil
	}
	l := s.links[rt.LinkIndex]
	if l == nil {
		l = &pktLink{index: rt.LinkIndex}
		s.links[rt.LinkIndex] = l
	}
	path := &pktPath{s: s, gen: gen, link: l, nexthop: hop}
	l.paths = append(l.paths, path)
	l.next.Store(0) // read its neighbour at its first SYN
	pr := &synRoute{p: r.p, src: r.src, via: path}
	s.routes[key] = pr
	return pr, nil
}

// rawRoute is the route through the raw socket from r's source (r is the
// prober's), learned when s had heard of gen changes of the routes: one
// for all the checks from the source that learned it since.
func (s *pktSender) rawRoute(r *synRoute, gen uint64) *synRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rawLocked(r, gen)
}

// rawLocked is rawRoute, called with s.mu held.
func (s *pktSender) rawLocked(r *synRoute, gen uint64) *synRoute {
	if rr := s.raw[r.src]; rr != nil && rr.gen == gen && rr.p == r.p {
		return rr
	}
	rr := &synRoute{p: r.p, src: r.src, s: s, gen: gen}
	s.raw[r.src] = rr
	return rr
}

// refresh reads l's MAC address and neighbours again when it is time,
// unless another goroutine is at it.
func (s *pktSender) refresh(l *pktLink, now time.Time) {
	if now.UnixNano() < l.next.Load() || !l.refresh.TryLock() {
		return
	}
	defer l.refresh.Unlock()
	if now.UnixNano() < l.next.Load() {
		return
	}
	l.next.Store(now.Add(pktRefreshEvery).UnixNano())
	s.routesChanged()
	s.mu.Lock()
	paths := slices.Clone(l.paths)
	s.mu.Unlock()
	var mac []byte
	var neighs []netlink.Neigh
	link, err := s.nl.LinkByIndex(l.index)
	if err == nil && link.Attrs().EncapType == "ether" && len(link.Attrs().HardwareAddr) == 6 && link.Attrs().Flags&net.FlagUp != 0 {
		mac = link.Attrs().HardwareAddr
		neighs, err = nldump.Retry(func() ([]netlink.Neigh, error) { return s.nl.NeighList(l.index, unix.AF_INET) })
		if err != nil {
			neighs = nil
		}
	}
	for _, path := range paths {
		var eth *[14]byte
		kick := false
		for _, n := range neighs {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || a.Unmap() != path.nexthop || len(n.HardwareAddr) != 6 {
				continue
			}
			if n.State&(unix.NUD_REACHABLE|unix.NUD_STALE|unix.NUD_DELAY|unix.NUD_PROBE|unix.NUD_PERMANENT|unix.NUD_NOARP) == 0 {
				break // incomplete, failed: the stack resolves it
			}
			eth = new([14]byte)
			copy(eth[0:6], n.HardwareAddr)
			copy(eth[6:12], mac)
			binary.BigEndian.PutUint16(eth[12:], unix.ETH_P_IP)
			kick = n.State&(unix.NUD_REACHABLE|unix.NUD_PERMANENT|unix.NUD_NOARP) == 0
			break
		}
		path.eth.Store(eth)
		if kick {
			path.kick.Store(true)
		}
	}
}

// frame returns the Ethernet header the SYN to via leaves with now, or
// nil when it goes through the raw socket.
func (s *pktSender) frame(via *pktPath, now time.Time) *[14]byte {
	s.refresh(via.link, now)
	eth := via.eth.Load()
	if eth == nil || via.stale() || via.kick.Load() && via.kick.Swap(false) {
		return nil
	}
	return eth
}

// fillFrame writes the frame of the SYN syn (whose TCP segment is seg)
// into b.
func (s *pktSender) fillFrame(b *[pktFrameLen]byte, eth *[14]byte, syn synOut, seg *[24]byte) {
	copy(b[0:14], eth[:])
	ip := b[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], 20+24)
	binary.BigEndian.PutUint16(ip[4:], uint16(s.ident.Add(1)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF, as the stack's (IP_PMTUDISC_WANT)
	ip[8], ip[9] = s.ttl, unix.IPPROTO_TCP
	ip[10], ip[11] = 0, 0
	src, dst := syn.src.As4(), syn.m.addr.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	copy(b[34:], seg[:])
}
