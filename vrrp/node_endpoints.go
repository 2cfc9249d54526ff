package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Endpoints: the VRRP and frame sockets of an interface, whose readers
// feed what arrives to the protocol.

type vrrpEndpoint struct {
	key    epKey
	conn   PacketConn
	link   Link
	byVRID map[uint8]string
	names  []string
	stop   chan struct{}
}

func (ep *vrrpEndpoint) setInstances(ics []InstanceConfig) {
	ep.byVRID = map[uint8]string{}
	ep.names = nil
	for _, ic := range ics {
		ep.byVRID[ic.VRID] = ic.Name
		ep.names = append(ep.names, ic.Name)
	}
}

func (ep *vrrpEndpoint) close() {
	close(ep.stop)
	_ = ep.conn.Close()
}

func (n *Node) openVRRP(k epKey) (*vrrpEndpoint, error) {
	l, err := n.net.Link(k.ifname, nil)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	conn, err := n.net.ListenVRRP(k.ifname, k.v6)
	if err != nil {
		return nil, fmt.Errorf("vrrp socket on %s: %w", k.ifname, err)
	}
	ep := &vrrpEndpoint{key: k, conn: conn, link: l, byVRID: map[uint8]string{}, stop: make(chan struct{})}
	go func() {
		buf := make([]byte, 2*maxAdvertLength)
		for {
			m, src, dst, ttl, err := conn.ReadPacket(buf)
			if err != nil {
				select {
				case <-ep.stop:
				default:
					n.log.Error("vrrp: reading packets stopped", "interface", k.ifname, "err", err)
				}
				return
			}
			n.pendingRx.Add(1)
			n.step(func(now time.Time) []action { return n.onPacket(now, ep, buf[:m], src, dst, ttl) })
			n.pendingRx.Add(-1)
		}
	}()
	return ep, nil
}

type frameEndpoint struct {
	key  epKey
	conn FrameConn
	link Link
	stop chan struct{}
}

func (ep *frameEndpoint) close() {
	close(ep.stop)
	_ = ep.conn.Close()
}

func (n *Node) openFrames(k epKey) (*frameEndpoint, error) {
	l, err := n.net.Link(k.ifname, nil)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", k.ifname, err)
	}
	conn, err := n.net.ListenFrames(k.ifname, k.v6)
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", k.ifname, err)
	}
	ep := &frameEndpoint{key: k, conn: conn, link: l, stop: make(chan struct{})}
	go func() {
		buf := make([]byte, 2048)
		for {
			m, err := conn.ReadFrame(buf)
			if err != nil {
				select {
				case <-ep.stop:
				default:
					n.log.Error("vrrp: reading frames stopped: split-brain detection is off", "interface", k.ifname, "err", err)
				}
				return
			}
			n.step(func(now time.Time) []action { return n.onFrame(now, buf[:m]) })
		}
	}()
	return ep, nil
}

// onPacket decodes a VRRP packet and dispatches it by VRID; rejects that
// cannot be tied to an instance count on every instance of the socket.
func (n *Node) onPacket(now time.Time, ep *vrrpEndpoint, data []byte, src, dst netip.Addr, ttl int) []action {
	name := ""
	if len(data) >= 2 {
		name = ep.byVRID[data[1]]
	}
	adv, err := ParseAdvert(data, src, dst)
	if err != nil {
		var pe *ParseError
		reason := RxLength
		if errors.As(err, &pe) {
			reason = pe.Reason
		}
		n.rxReject(ep, name, reason, err, src)
		return nil
	}
	if name == "" {
		n.rxReject(ep, "", RxVRID, fmt.Errorf("VRID %d not configured", adv.VRID), src)
		return nil
	}
	return n.core.advert(now, name, rxPacket{Advert: adv, Src: src, Dst: dst, TTL: ttl})
}

// onFrame looks for a claim on one of our VIPs by another station.
func (n *Node) onFrame(now time.Time, data []byte) []action {
	c, ok := parseClaim(data)
	if !ok || n.ownMACs[string(c.MAC)] {
		return nil
	}
	if name, ok := n.vipOwner[c.IP]; ok {
		return n.core.claim(now, name, c.IP)
	}
	return nil
}

func (n *Node) rxReject(ep *vrrpEndpoint, name, reason string, err error, src netip.Addr) {
	names := ep.names
	if name != "" {
		names = []string{name}
	}
	for _, nm := range names {
		n.core.rxError(nm, reason)
	}
	n.log.Debug("vrrp: packet rejected", "interface", ep.key.ifname, "from", src, "reason", reason, "err", err)
}
