package control

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/nldump"
)

// NetNeighbors resolves direct-routing real servers' MACs from the kernel's
// neighbour table (netlink), asking the kernel to resolve missing entries
// (NTF_USE) and following neighbour updates; it also keeps tunnelled real
// servers' next hops resolved. Lookup never blocks: the work
// happens in Run, which calls onChange when an answer changes.
type NetNeighbors struct {
	log      *slog.Logger
	onChange func()
	ns       netns.NsHandle // namespace to work in; netns.None(): the current one
	h        *netlink.Handle

	mu     sync.Mutex
	known  map[netip.Addr]neighbor
	wanted map[netip.Addr]bool
	warned map[netip.Addr]bool
	// routed: tunnelled real servers whose next hop (gateway or the server
	// itself) is kept resolved, mapped to that next hop once it resolved.
	routed map[netip.Addr]netip.Addr
	// reprobe are the addresses Reprobe asked for, to probe in Run;
	// probed when each was probed last (Reprobe's rate limit).
	reprobe map[netip.Addr]bool
	probed  map[netip.Addr]time.Time
	wake    chan struct{}

	lost atomic.Uint64 // subscriptions ended with updates lost
	// version counts the changes of known (Version).
	version atomic.Uint64
	// rcvBuf is the subscription socket's receive buffer; 0: neighRcvBuf;
	// negative: the kernel's default (a larger one was refused).
	rcvBuf int
}

type neighbor struct {
	mac     net.HardwareAddr
	ifindex int
}

// NewNetNeighbors returns a resolver working in namespace ns (netns.None():
// the process's).
func NewNetNeighbors(log *slog.Logger, ns netns.NsHandle, onChange func()) (*NetNeighbors, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NetNeighbors{
		log: log, onChange: onChange, ns: ns, h: h,
		known:   map[netip.Addr]neighbor{},
		wanted:  map[netip.Addr]bool{},
		warned:  map[netip.Addr]bool{},
		routed:  map[netip.Addr]netip.Addr{},
		reprobe: map[netip.Addr]bool{},
		probed:  map[netip.Addr]time.Time{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// Lookup implements Neighbors.
func (n *NetNeighbors) Lookup(addr netip.Addr) (net.HardwareAddr, int, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.known[addr]
	if !n.wanted[addr] {
		n.wanted[addr] = true
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	return e.mac, e.ifindex, ok
}

// Version implements Neighbors.
func (n *NetNeighbors) Version() uint64 { return n.version.Load() }

// KeepRoute implements Neighbors: the XDP program finds a tunnelled real
// server's next hop in the FIB and drops while that hop's MAC is unknown,
// and nothing else would make the kernel resolve it.
func (n *NetNeighbors) KeepRoute(addr netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.routed[addr]; !ok {
		n.routed[addr] = netip.Addr{}
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// reprobeEvery is how often Reprobe probes one address at most: a real
// server whose check stays down is probed again now and then, not at every
// reconciliation.
const reprobeEvery = 10 * time.Second

// Reprobe implements Neighbors: a known entry is set to PROBE (the MAC it
// has kept): the kernel sends its unicast probes at once (ucast_probes, 3 x
// retrans_time, 1 s by default), and, unanswered, marks the entry FAILED,
// which Run then resolves anew by broadcast. So a real server that changed
// its MAC without announcing it is found again seconds after its check
// fails, not when its entry goes stale; one that answers stays REACHABLE.
func (n *NetNeighbors) Reprobe(addr netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.known[addr]; !ok || time.Since(n.probed[addr]) < reprobeEvery {
		return
	}
	n.probed[addr] = time.Now()
	n.reprobe[addr] = true
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// probeAll sets the entries Reprobe asked for to PROBE.
func (n *NetNeighbors) probeAll() {
	n.mu.Lock()
	todo := make(map[netip.Addr]neighbor, len(n.reprobe))
	for a := range n.reprobe {
		if e, ok := n.known[a]; ok {
			todo[a] = e
		}
	}
	clear(n.reprobe)
	n.mu.Unlock()
	for a, e := range todo {
		family := netlink.FAMILY_V4
		if a.Is6() {
			family = netlink.FAMILY_V6
		}
		err := n.h.NeighSet(&netlink.Neigh{LinkIndex: e.ifindex, Family: family, IP: a.AsSlice(), HardwareAddr: e.mac, State: netlink.NUD_PROBE})
		if err != nil {
			n.log.Debug("probe neighbour", "addr", a, "error", err)
			continue
		}
		n.log.Info("real server's check failed: probing its neighbour entry again (a MAC changed unannounced is found)", "addr", a, "mac", e.mac.String())
	}
}

// Run resolves wanted addresses until ctx is done.
//
// It follows the kernel's neighbour updates, so that a real server's new
// MAC (announced by a gratuitous ARP or unsolicited NA, which the kernel
// takes at once) reaches the dataplane at once. The subscription's socket
// overflows when updates come faster than they are read (a busy or hostile
// LAN, a flood of ARP from many addresses): the kernel drops the rest
// (ENOBUFS) and the subscription ends. Run then subscribes again (at
// once, then at most once a second) and reads every wanted entry again, as
// updates were lost.
func (n *NetNeighbors) Run(ctx context.Context) error {
	defer n.h.Close()
	var sub *neighSubscription
	defer func() { sub.close() }()
	// Unresolved entries are retried every second; resolved ones are
	// refreshed (a STALE entry is revalidated) every 30 s.
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	lastRefresh := time.Now()
	subscribed := false
	var lastLoss time.Time
	for {
		if sub == nil {
			s, err := n.subscribe()
			if err != nil {
				n.log.Warn("subscribe to neighbour updates: retrying", "error", err)
			} else {
				sub = s
				if subscribed {
					// Updates may have been missed: every answer is read
					// again (after subscribing, so that none is missed
					// since).
					n.resolveAll(true, false)
				}
				subscribed = true
			}
		}
		var updates <-chan netlink.NeighUpdate
		if sub != nil {
			updates = sub.updates
		}
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				n.log.Warn("neighbour updates lost: subscribing again and reading every real server's entry again", "error", sub.err())
				sub.close()
				sub = nil
				n.lost.Add(1)
				// Subscribe again at once, but not more than once a
				// second: a sustained flood must not keep it spinning.
				if time.Since(lastLoss) < time.Second {
					select {
					case <-ctx.Done():
						return nil
					case <-retry.C:
					}
				}
				lastLoss = time.Now()
				continue
			}
			if a, ok := netip.AddrFromSlice(u.IP); ok {
				if n.isWanted(a.Unmap()) {
					n.resolve(a.Unmap(), false)
				}
				n.hopChanged(a.Unmap())
			}
		case <-n.wake:
			n.resolveAll(false, false)
			n.probeAll()
		case <-retry.C:
			refresh := time.Since(lastRefresh) > 30*time.Second
			if refresh {
				lastRefresh = time.Now()
			}
			n.resolveAll(refresh, refresh)
		}
	}
}

// neighSubscription is a subscription to the kernel's neighbour updates.
type neighSubscription struct {
	updates chan netlink.NeighUpdate
	done    chan struct{}
	mu      sync.Mutex
	last    error // the error that ended it
}

// neighRcvBuf is the subscription socket's receive buffer: room for a few
// thousand updates, so that a burst does not overflow it.
const neighRcvBuf = 4 << 20

func (n *NetNeighbors) subscribe() (*neighSubscription, error) {
	s := &neighSubscription{updates: make(chan netlink.NeighUpdate, 256), done: make(chan struct{})}
	opts := netlink.NeighSubscribeOptions{
		ErrorCallback: func(err error) {
			s.mu.Lock()
			s.last = err
			s.mu.Unlock()
		},
	}
	if n.ns.IsOpen() {
		opts.Namespace = &n.ns
	}
	if n.rcvBuf >= 0 {
		opts.ReceiveBufferSize, opts.ReceiveBufferForceSize = cmp.Or(n.rcvBuf, neighRcvBuf), true
	}
	err := netlink.NeighSubscribeWithOptions(s.updates, s.done, opts)
	if err != nil && opts.ReceiveBufferForceSize {
		// Without CAP_NET_ADMIN the buffer cannot pass rmem_max: the
		// default from now on (netlink leaves the refused socket open).
		n.log.Debug("neighbour updates: larger receive buffer refused", "error", err)
		n.rcvBuf = -1
		opts.ReceiveBufferSize, opts.ReceiveBufferForceSize = 0, false
		err = netlink.NeighSubscribeWithOptions(s.updates, s.done, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe to neighbour updates: %w", err)
	}
	return s, nil
}

func (s *neighSubscription) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *neighSubscription) close() {
	if s != nil {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
}

// UpdatesLost counts the times neighbour updates were lost (and every entry
// read again).
func (n *NetNeighbors) UpdatesLost() uint64 { return n.lost.Load() }

func (n *NetNeighbors) isWanted(a netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.wanted[a]
}

// resolveAll resolves the wanted addresses not known yet, or all of them
// (all), and keeps the tunnelled real servers' next hops resolved; refresh
// revalidates stale entries.
func (n *NetNeighbors) resolveAll(all, refresh bool) {
	n.mu.Lock()
	var todo []netip.Addr
	for a := range n.wanted {
		if _, ok := n.known[a]; !ok || all {
			todo = append(todo, a)
		}
	}
	var routes []netip.Addr
	for a, hop := range n.routed {
		if !hop.IsValid() || all {
			routes = append(routes, a)
		}
	}
	n.mu.Unlock()
	for _, a := range todo {
		n.resolve(a, refresh)
	}
	for _, a := range routes {
		n.keepRoute(a, refresh)
	}
}

// hopChanged makes the routes through next hop a be checked again on the
// next tick (its entry changed: it may have failed).
func (n *NetNeighbors) hopChanged(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for dst, hop := range n.routed {
		if hop == a {
			n.routed[dst] = netip.Addr{}
		}
	}
}

// keepRoute finds dst's next hop and asks the kernel to resolve it when it
// has no usable entry (or refresh asks to revalidate a stale one).
func (n *NetNeighbors) keepRoute(dst netip.Addr, refresh bool) {
	routes, err := n.h.RouteGet(dst.AsSlice())
	if err != nil || len(routes) == 0 {
		n.warnOnce(dst, "tunnelled real server has no route: it gets no new flows", fmt.Sprint(err))
		return
	}
	rt := routes[0]
	hop := dst
	if rt.Gw != nil {
		if g, ok := netip.AddrFromSlice(rt.Gw); ok {
			hop = g.Unmap()
		}
	}
	found := n.find(hop, rt.LinkIndex)
	n.ensure(hop, rt.LinkIndex, found, refresh)
	if found != nil {
		n.mu.Lock()
		n.routed[dst] = hop
		delete(n.warned, dst)
		n.mu.Unlock()
	}
}

// ensure asks the kernel to resolve hop on link when it has no usable
// entry (found is nil) or refresh asks to revalidate a stale one: NTF_USE
// makes the kernel resolve it without our sending anything.
func (n *NetNeighbors) ensure(hop netip.Addr, link int, found *netlink.Neigh, refresh bool) {
	if found == nil || refresh && found.State&netlink.NUD_STALE != 0 {
		family := netlink.FAMILY_V4
		if hop.Is6() {
			family = netlink.FAMILY_V6
		}
		err := n.h.NeighSet(&netlink.Neigh{LinkIndex: link, Family: family, IP: hop.AsSlice(), State: netlink.NUD_NONE, Flags: netlink.NTF_USE})
		if err != nil && err != unix.EEXIST {
			n.log.Debug("trigger neighbour resolution", "addr", hop, "error", err)
		}
	}
}

// find returns the kernel's usable neighbour entry for a on link, or nil.
func (n *NetNeighbors) find(a netip.Addr, link int) *netlink.Neigh {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := nldump.Retry(func() ([]netlink.Neigh, error) { return n.h.NeighList(link, family) })
	if err != nil {
		n.log.Warn("list neighbours", "error", err)
		return nil
	}
	for i := range neighs {
		if ip, ok := netip.AddrFromSlice(neighs[i].IP); ok && ip.Unmap() == a && len(neighs[i].HardwareAddr) == 6 && neighs[i].State&usableNUD != 0 {
			return &neighs[i]
		}
	}
	return nil
}

func (n *NetNeighbors) warnOnce(a netip.Addr, msg, reason string) {
	n.mu.Lock()
	warn := !n.warned[a]
	n.warned[a] = true
	n.mu.Unlock()
	if warn {
		n.log.Warn(msg, "addr", a, "reason", reason)
	}
}

// usable neighbour states: the MAC is known (STALE still is).
const usableNUD = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// resolve looks addr up and records the answer; when the kernel has no
// usable entry (or refresh asks to revalidate a stale one) it asks the
// kernel to resolve it.
func (n *NetNeighbors) resolve(a netip.Addr, refresh bool) {
	routes, err := n.h.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		n.forget(a, fmt.Sprintf("no route: %v", err))
		return
	}
	rt := routes[0]
	if rt.Gw != nil {
		n.forget(a, fmt.Sprintf("reached through gateway %s: direct routing needs the real server on a directly connected network", rt.Gw))
		return
	}
	found := n.find(a, rt.LinkIndex)
	n.ensure(a, rt.LinkIndex, found, refresh)
	if found == nil {
		n.forget(a, "")
		return
	}
	e := neighbor{mac: found.HardwareAddr, ifindex: rt.LinkIndex}
	n.mu.Lock()
	old, had := n.known[a]
	n.known[a] = e
	delete(n.warned, a)
	changed := !had || old.ifindex != e.ifindex || old.mac.String() != e.mac.String()
	if changed {
		n.version.Add(1)
	}
	n.mu.Unlock()
	if changed {
		n.log.Info("real server next hop resolved", "addr", a, "mac", e.mac.String(), "ifindex", e.ifindex)
		n.onChange()
	}
}

func (n *NetNeighbors) forget(a netip.Addr, why string) {
	n.mu.Lock()
	_, had := n.known[a]
	delete(n.known, a)
	if had {
		n.version.Add(1)
	}
	warn := why != "" && !n.warned[a]
	if warn {
		n.warned[a] = true
	}
	n.mu.Unlock()
	if warn {
		n.log.Warn("real server next hop unknown: it gets no new flows", "addr", a, "reason", why)
	}
	if had {
		n.onChange()
	}
}
