package vrrp

import (
	"fmt"
	"net/netip"
	"time"
)

// The inputs of the core: everything that happens to the protocol is one
// of these values, handed to core.handle with the time (holo-vrrp's
// ProtocolMsg). They are plain data: the Node builds them from what its
// sockets, timer, scripts and link watcher report, and the tests list them.

// input is one of the types below.
type input interface{ isInput() }

type (
	// startUp: the node runs; instances leave Init once their tracking
	// is known.
	startUp struct{}
	// timersDue: the timers due at the time of the call fire
	// (Master_Down_Timer, Adver_Timer, announcements, probe rounds).
	timersDue struct{}
	// advertReceived: a VRRP packet that decoded well arrived on the
	// socket of (ifname, v6); the core finds its instance by VRID.
	advertReceived struct {
		ifname string
		v6     bool
		pkt    rxPacket
	}
	// packetRejected: a packet on the socket of (ifname, v6) failed to
	// decode for reason (one of RxErrorReasons). vrid is the VRID it
	// carries, 0 when it could not be read: the error then counts on
	// every instance of the socket.
	packetRejected struct {
		ifname string
		v6     bool
		vrid   uint8
		reason string
	}
	// vipClaimed: another station (not one of our MACs) said it holds ip:
	// a gratuitous ARP, an ARP reply, an NA.
	vipClaimed struct{ ip netip.Addr }
	// linkChanged: an interface is up (IFF_UP and IFF_RUNNING) or not.
	linkChanged struct {
		ifname string
		up     bool
	}
	// scriptRan: track script name, whose command is script, exited with
	// status 0 (ok) or not. A result of a command the configuration no
	// longer has (replaced by a reload) is ignored.
	scriptRan struct {
		name, script string
		ok           bool
	}
	// sourceAddr: the address instance inst advertises from, read from
	// its interface (a configured UnicastSrc wins).
	sourceAddr struct {
		inst string
		addr netip.Addr
	}
	// configChanged: a new, valid configuration with defaults applied
	// (Config.normalize), applied with keepalived's reload semantics.
	configChanged struct{ cfg Config }
	// shutDown: the node stops; every instance stops for good.
	shutDown struct{}
)

func (startUp) isInput()        {}
func (timersDue) isInput()      {}
func (advertReceived) isInput() {}
func (packetRejected) isInput() {}
func (vipClaimed) isInput()     {}
func (linkChanged) isInput()    {}
func (scriptRan) isInput()      {}
func (sourceAddr) isInput()     {}
func (configChanged) isInput()  {}
func (shutDown) isInput()       {}

// handle runs one input at time now and returns what the Node must do, in
// order. It never blocks and does no I/O.
func (c *core) handle(now time.Time, in input) []action {
	switch in := in.(type) {
	case startUp:
		return c.start(now)
	case timersDue:
		return c.tick(now)
	case advertReceived:
		return c.receive(now, in)
	case packetRejected:
		return c.reject(in)
	case vipClaimed:
		return c.claim(now, in.ip)
	case linkChanged:
		return c.linkState(now, in.ifname, in.up)
	case scriptRan:
		return c.scriptResult(now, in)
	case sourceAddr:
		c.setLocal(in.inst, in.addr)
		return nil
	case configChanged:
		return c.reconfigure(now, in.cfg)
	case shutDown:
		return c.shutdown(now)
	}
	panic(fmt.Sprintf("vrrp: unknown input %T", in))
}
