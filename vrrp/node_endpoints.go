package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Endpoints: the VRRP and frame sockets of an interface, whose readers
// feed what arrives to the protocol.

type vrrpEndpoint struct {
	key  epKey
	conn PacketConn
	link Link
	stop chan struct{}
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
	ep := &vrrpEndpoint{key: k, conn: conn, link: l, stop: make(chan struct{})}
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
			n.step(n.decode(k, buf[:m], src, dst, ttl))
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
			if c, ok := parseClaim(buf[:m]); ok && !n.isOwnMAC(c.MAC) {
				n.step(vipClaimed{c.IP})
			}
		}
	}()
	return ep, nil
}

// decode turns a VRRP packet received on the socket k into an input: the
// advertisement, or why it was rejected (logged here, where the details
// are known).
func (n *Node) decode(k epKey, data []byte, src, dst netip.Addr, ttl int) input {
	adv, err := ParseAdvert(data, src, dst)
	if err == nil {
		return advertReceived{ifname: k.ifname, v6: k.v6, pkt: rxPacket{Advert: adv, Src: src, Dst: dst, TTL: ttl}}
	}
	reason := RxLength
	if pe, ok := errors.AsType[*ParseError](err); ok {
		reason = pe.Reason
	}
	n.log.Debug("vrrp: packet rejected", "interface", k.ifname, "from", src, "reason", reason, "err", err)
	r := packetRejected{ifname: k.ifname, v6: k.v6, reason: reason}
	if len(data) >= 2 {
		r.vrid = data[1]
	}
	return r
}

// isOwnMAC reports whether mac is one of ours (setOwnMACs).
func (n *Node) isOwnMAC(mac net.HardwareAddr) bool {
	own := n.ownMACs.Load()
	return own != nil && (*own)[string(mac)]
}
