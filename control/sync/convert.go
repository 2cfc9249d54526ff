package sync

import (
	"net/netip"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// A connection's record, as IPVS writes one, and back: what xlb tracks
// (new, established, closing) against IPVS's TCP states.

// fwdFlags are IPVS's forwarding methods (the low bits of the flags).
var fwdFlags = map[dataplane.ForwardMode]uint32{
	dataplane.NAT:           FlagMasq,
	dataplane.Tunnel:        FlagTunnel,
	dataplane.DirectRouting: FlagDRoute,
}

// RecordOf is the IPVS record of a connection: its state as IPVS names
// it (a new TCP connection is SYN_RECV on a director, a closing one
// FIN_WAIT; UDP has one state), FlagInactive unless established (IPVS
// counts those in InActConn), a template's client port 0 and state NONE.
func RecordOf(c dataplane.Conn) Record {
	r := Record{
		Protocol: uint8(c.Service.Proto),
		Flags:    fwdFlags[c.Forward],
		Client:   c.Client,
		Virtual:  netip.AddrPortFrom(c.Service.Addr, c.Service.Port),
		Real:     netip.AddrPortFrom(c.Backend.Addr, c.Backend.Port),
		Timeout:  uint32((c.Timeout + time.Second - 1) / time.Second),
	}
	switch {
	case c.Template:
		r.Flags |= FlagTemplate
		r.Client = netip.AddrPortFrom(c.Client.Addr(), 0)
	case c.Service.Proto != dataplane.TCP:
	case c.State == dataplane.ConnEstablished:
		r.State = TCPEstablished
	case c.State == dataplane.ConnClosing:
		r.State = TCPFinWait
	default:
		r.State = TCPSynRecv
	}
	if !c.Template && (c.Service.Proto == dataplane.TCP && c.State != dataplane.ConnEstablished) {
		r.Flags |= FlagInactive
	}
	return r
}

// ConnOf is the connection a record describes, or why it cannot be one
// here: not TCP or UDP, a firewall-mark service (xlb has none), a state
// its protocol lacks. A timeout of 0 (as version 0 senders) leaves the
// receiver's own timeout.
func ConnOf(r Record) (dataplane.Conn, Reason) {
	c := dataplane.Conn{
		Service:  dataplane.ServiceKey{Addr: r.Virtual.Addr(), Port: r.Virtual.Port(), Proto: dataplane.Proto(r.Protocol)},
		Client:   r.Client,
		Backend:  dataplane.BackendKey{Addr: r.Real.Addr(), Port: r.Real.Port()},
		Template: r.Flags&FlagTemplate != 0,
		Timeout:  time.Duration(r.Timeout) * time.Second,
	}
	for mode, f := range fwdFlags {
		if r.Flags&FlagFwdMask == f {
			c.Forward = mode
		}
	}
	if c.Service.Proto != dataplane.TCP && c.Service.Proto != dataplane.UDP {
		return c, ReasonProtocol
	}
	if r.Fwmark != 0 {
		return c, ReasonUnknownService
	}
	if c.Template {
		return c, ReasonNone
	}
	if c.Service.Proto == dataplane.UDP {
		if r.State >= udpStates {
			return c, ReasonState
		}
		return c, ReasonNone
	}
	switch r.State {
	case TCPEstablished:
		c.State = dataplane.ConnEstablished
	case TCPNone, TCPSynSent, TCPSynRecv, TCPListen, TCPSynAck:
		c.State = dataplane.ConnNew
	case TCPFinWait, TCPTimeWait, TCPClose, TCPCloseWait, TCPLastAck:
		c.State = dataplane.ConnClosing
	default:
		return c, ReasonState
	}
	return c, ReasonNone
}
