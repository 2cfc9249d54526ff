package xdp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// tcpFrame and udpFrame are addressed to eth0, where the test frames
// arrive: the program refuses frames for other hosts' MACs on the
// interfaces it is attached to.
func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags uint8) packet.Frame {
	return packet.Frame{DstMAC: eth0MAC, Src: src, Dst: dst, Proto: packet.TCP, SrcPort: sport, DstPort: dport, TCPFlags: flags, Payload: []byte("GET / HTTP/1.0\r\n\r\n")}
}

func udpFrame(src, dst netip.Addr, sport, dport uint16) packet.Frame {
	return packet.Frame{DstMAC: eth0MAC, Src: src, Dst: dst, Proto: packet.UDP, SrcPort: sport, DstPort: dport, Payload: []byte("query")}
}

// withMACs returns frame with its Ethernet addresses replaced.
func withMACs(frame []byte, dst, src []byte) []byte {
	out := bytes.Clone(frame)
	copy(out[0:6], dst)
	copy(out[6:12], src)
	return out
}

func truncate(b []byte, n int) []byte { return bytes.Clone(b[:n]) }

func patch(b []byte, off int, v ...byte) []byte {
	out := bytes.Clone(b)
	copy(out[off:], v)
	return out
}

// arpRequest is a who-has frame.
func arpRequest() []byte {
	b := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x06,
		0, 1, 8, 0, 6, 4, 0, 1, 0x02, 0, 0, 0, 0, 1, 192, 0, 2, 10, 0, 0, 0, 0, 0, 0, 10, 0, 0, 3}
	return b
}

// padTo pads a frame with zero bytes to n bytes, as a NIC pads a short
// frame to Ethernet's minimum of 60 (without the FCS).
func padTo(frame []byte, n int) []byte {
	out := bytes.Clone(frame)
	for len(out) < n {
		out = append(out, 0)
	}
	return out
}

// withIPLength sets the IPv4 total length (recomputing the header checksum)
// or the IPv6 payload length of an untagged frame, leaving the frame's
// bytes as they are.
func withIPLength(frame []byte, n uint16) []byte {
	out := bytes.Clone(frame)
	ip := out[14:]
	if ip[0]>>4 == 4 {
		binary.BigEndian.PutUint16(ip[2:], n)
		ihl := int(ip[0]&0xf) * 4
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:ihl]))
	} else {
		binary.BigEndian.PutUint16(ip[4:], n)
	}
	return out
}

// ipv6WithHopByHop inserts an 8-byte hop-by-hop options header in front of
// the transport header of an IPv6 frame without extension headers.
func ipv6WithHopByHop(frame []byte) []byte {
	const ipOff = 14
	next := frame[ipOff+6]
	out := make([]byte, 0, len(frame)+8)
	out = append(out, frame[:ipOff+40]...)
	out = append(out, next, 0, 1, 4, 0, 0, 0, 0) // PadN option
	out = append(out, frame[ipOff+40:]...)
	out[ipOff+6] = 0 // hop-by-hop
	binary.BigEndian.PutUint16(out[ipOff+4:], binary.BigEndian.Uint16(frame[ipOff+4:])+8)
	return out
}

func TestForwardingTable(t *testing.T) {
	e := newEnv(t)
	rs4 := e.rs(0, "10.0.1.1", 1)
	rs6 := e.rs(1, "2001:db8:1::1", 1)
	rsOther := e.rs(2, "10.0.2.1", 1)
	rsOther.Ifindex = int32(e.eth1)
	disabled := drService(netip.MustParseAddr("10.0.0.4"), dataplane.TCP, dataplane.RoundRobin, e.rs(0, "10.0.1.1", 1))
	disabled.Enabled = false
	e.apply(
		drService(vip4, dataplane.TCP, dataplane.RoundRobin, rs4),
		drService(vip4, dataplane.UDP, dataplane.RoundRobin, rs4),
		drService(vip6, dataplane.TCP, dataplane.RoundRobin, rs6),
		drService(vip6, dataplane.UDP, dataplane.RoundRobin, rs6),
		drService(netip.MustParseAddr("10.0.0.5"), dataplane.TCP, dataplane.RoundRobin, rsOther),
		disabled,
	)

	syn4 := tcpFrame(client4, vip4, 40000, 80, packet.SYN).Bytes()
	syn6 := tcpFrame(client6, vip6, 40000, 80, packet.SYN).Bytes()
	udp4 := udpFrame(client4, vip4, 5353, 80).Bytes()
	udp6 := udpFrame(client6, vip6, 5353, 80).Bytes()
	vlan := tcpFrame(client4, vip4, 40001, 80, packet.SYN)
	vlan.VLAN = 42
	vlanSyn := vlan.Bytes()
	icmpEcho := packet.Frame{Src: client4, Dst: vip4, Proto: packet.ICMP, L4: []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}}.Bytes()
	vrrp := packet.Frame{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("224.0.0.18"), Proto: 112, TTL: 255, L4: []byte{0x31, 51, 150, 1, 0, 100, 0, 0, 10, 0, 0, 3}}.Bytes()
	// Minimum-size frames: the NIC pads them to 60 bytes.
	bareSyn4 := tcpFrame(client4, vip4, 40003, 80, packet.SYN)
	bareSyn4.Payload = nil
	paddedSyn4 := padTo(bareSyn4.Bytes(), 60)
	bareUDP4 := udpFrame(client4, vip4, 5354, 80)
	bareUDP4.Payload = []byte("q")
	paddedUDP4 := padTo(bareUDP4.Bytes(), 60)
	bareSyn6 := tcpFrame(client6, vip6, 40003, 80, packet.SYN)
	bareSyn6.Payload = nil
	icmpEchoPadded := padTo(icmpEcho, 60)
	frag := tcpFrame(client4, vip4, 40002, 80, packet.ACK)
	frag.FragOffset, frag.Payload = 1480, []byte("later fragment bytes")
	laterFrag := frag.Bytes()

	for _, tc := range []struct {
		name    string
		in      []byte
		action  uint32
		verdict string
		out     []byte // nil: the input, untouched
	}{
		{"ipv4 tcp syn", syn4, xdpTX, "tx", withMACs(syn4, rsMAC[0], eth0MAC)},
		{"ipv4 tcp ack of that flow", tcpFrame(client4, vip4, 40000, 80, packet.ACK).Bytes(), xdpTX, "tx", nil},
		{"ipv4 udp", udp4, xdpTX, "tx", withMACs(udp4, rsMAC[0], eth0MAC)},
		{"ipv6 tcp syn", syn6, xdpTX, "tx", withMACs(syn6, rsMAC[1], eth0MAC)},
		{"ipv6 udp", udp6, xdpTX, "tx", withMACs(udp6, rsMAC[1], eth0MAC)},
		{"ipv6 hop-by-hop then tcp", ipv6WithHopByHop(tcpFrame(client6, vip6, 40009, 80, packet.SYN).Bytes()), xdpTX, "tx", nil},
		{"real server behind another interface", tcpFrame(client4, netip.MustParseAddr("10.0.0.5"), 40000, 80, packet.SYN).Bytes(), xdpRedirect, "redirect", nil},
		{"service disabled (not master)", tcpFrame(client4, netip.MustParseAddr("10.0.0.4"), 40000, 80, packet.SYN).Bytes(), xdpPass, "pass_disabled", nil},
		{"arp", arpRequest(), xdpPass, "pass_not_ip", nil},
		{"icmp echo to the vip", icmpEcho, xdpPass, "pass_not_service", nil},
		{"vrrp advert", vrrp, xdpPass, "pass_not_service", nil},
		{"other port of the vip", tcpFrame(client4, vip4, 40000, 22, packet.SYN).Bytes(), xdpPass, "pass_not_service", nil},
		{"other address", tcpFrame(client4, netip.MustParseAddr("10.0.0.99"), 40000, 80, packet.SYN).Bytes(), xdpPass, "pass_not_service", nil},
		{"non-first fragment", laterFrag, xdpPass, "pass_frag_miss", nil},
		{"truncated vlan tag", truncate(vlanSyn, 15), xdpDrop, "drop_malformed", nil},
		{"truncated ipv4 header", truncate(syn4, 14+15), xdpDrop, "drop_malformed", nil},
		{"ipv4 ihl 4", patch(syn4, 14, 0x44), xdpDrop, "drop_malformed", nil},
		{"ipv4 version 6 in ipv4 frame", patch(syn4, 14, 0x65), xdpDrop, "drop_malformed", nil},
		{"ipv4 total length beyond frame", patch(syn4, 16, 0x05, 0xdc), xdpDrop, "drop_malformed", nil},
		{"truncated tcp header", truncate(patch(syn4, 16, 0, 30), 14+30), xdpDrop, "drop_malformed", nil},
		{"tcp data offset 2", patch(syn4, 14+20+12, 0x20), xdpDrop, "drop_malformed", nil},
		{"truncated udp header", truncate(patch(udp4, 16, 0, 24), 14+24), xdpDrop, "drop_malformed", nil},
		{"truncated ipv6 header", truncate(syn6, 14+39), xdpDrop, "drop_malformed", nil},
		{"ipv6 payload beyond frame", patch(syn6, 14+4, 0x05, 0xdc), xdpDrop, "drop_malformed", nil},
		// Ethernet padding after a datagram is kept (and not parsed)...
		{"ipv4 tcp syn padded to 60 bytes", paddedSyn4, xdpTX, "tx", withMACs(paddedSyn4, rsMAC[0], eth0MAC)},
		{"ipv4 udp padded to 60 bytes", paddedUDP4, xdpTX, "tx", withMACs(paddedUDP4, rsMAC[0], eth0MAC)},
		// ...but a transport header that lies beyond the IP length, in
		// the padding, is not a transport header.
		{"ipv4 total length short of the tcp header, padded", withIPLength(paddedSyn4, 20+4), xdpDrop, "drop_malformed", nil},
		{"ipv4 total length short of the tcp header by one byte", withIPLength(paddedSyn4, 20+19), xdpDrop, "drop_malformed", nil},
		{"ipv4 total length short of the udp header, padded", withIPLength(paddedUDP4, 20+4), xdpDrop, "drop_malformed", nil},
		{"ipv4 total length short of the icmp header, padded", withIPLength(icmpEchoPadded, 20+4), xdpDrop, "drop_malformed", nil},
		{"ipv6 payload length short of the tcp header", withIPLength(bareSyn6.Bytes(), 4), xdpDrop, "drop_malformed", nil},
		{"ipv6 payload length short of the tcp header after hop-by-hop", withIPLength(ipv6WithHopByHop(bareSyn6.Bytes()), 8+19), xdpDrop, "drop_malformed", nil},
		{"ipv6 payload length short of the hop-by-hop header", withIPLength(ipv6WithHopByHop(bareSyn6.Bytes()), 4), xdpDrop, "drop_malformed", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			before := e.verdicts()
			ret, out := e.run(tc.in)
			if ret != tc.action {
				t.Fatalf("action %s, want %s (verdicts %v)", actionNames[ret], actionNames[tc.action], e.verdicts())
			}
			after := e.verdicts()
			if after[tc.verdict] != before[tc.verdict]+1 {
				t.Errorf("verdict %s not counted: before %v after %v", tc.verdict, before, after)
			}
			want := tc.out
			if want == nil && tc.action == xdpPass {
				want = tc.in
			}
			if want != nil && !bytes.Equal(out, want) {
				t.Errorf("output\n got %x\nwant %x", out, want)
			}
			if tc.action == xdpTX || tc.action == xdpRedirect {
				// Only the MACs change: the rest is byte-identical.
				if !bytes.Equal(out[12:], tc.in[12:]) {
					t.Errorf("bytes after the MACs changed")
				}
				if err := packet.VerifyChecksums(out); err != nil {
					t.Error(err)
				}
			}
			if tc.action == xdpRedirect && !bytes.Equal(out[0:12], append(append([]byte{}, rsMAC[2]...), eth1MAC...)) {
				t.Errorf("redirected frame MACs %x, want dst %s src %s", out[0:12], rsMAC[2], eth1MAC)
			}
		})
	}
}
