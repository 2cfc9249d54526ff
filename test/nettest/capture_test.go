package nettest

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestCaptureDirections: Capture gets the frames an interface receives,
// CaptureSent those it sends.
func TestCaptureDirections(t *testing.T) {
	a, b := NewNS(t, "a"), NewNS(t, "b")
	Veth(t, a, "eth0", b, "eth0")
	Addr(t, a, "eth0", "192.0.2.1/24")
	Addr(t, b, "eth0", "192.0.2.2/24")
	sent, got := a.CaptureSent(t, "eth0", 0x0800), a.Capture(t, "eth0", 0x0800)
	peerGot := b.Capture(t, "eth0", 0x0800)
	var conn net.Conn
	if err := a.Do(func() (err error) { conn, err = net.Dial("udp", "192.0.2.2:9"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := []byte("captured both ways")
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Capture{"sent by a": sent, "received by b": peerGot} {
		select {
		case f := <-c.Frames():
			if !bytes.HasSuffix(f.Data, payload) {
				t.Errorf("%s: frame %x does not end with the datagram", name, f.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing captured", name)
		}
	}
	// b has no listener on port 9: its ICMP port unreachable is the first
	// IPv4 frame a receives; a's own datagram is not among its received.
	select {
	case f := <-got.Frames():
		if len(f.Data) < 14+20 || f.Data[14+9] != 1 {
			t.Errorf("a received %x, want b's ICMP error", f.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a received nothing")
	}
}
