package nettest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Frame is a captured Ethernet frame and the time it was read.
type Frame struct {
	Data []byte
	At   time.Time
}

// Capture receives the frames of one EtherType arriving on an interface
// (an AF_PACKET socket opened in the namespace), e.g. the gratuitous ARPs
// reaching a client. Frames the interface sends are not captured.
type Capture struct {
	f      *os.File
	frames chan Frame
}

// Capture starts capturing frames of ethType (0x0806 for ARP) received on
// dev in ns, until the test ends. Up to 4096 unread frames are kept; more
// are dropped.
func (ns *NS) Capture(t testing.TB, dev string, ethType uint16) *Capture {
	t.Helper()
	return ns.capture(t, dev, ethType, false)
}

// CaptureSent is Capture for the frames dev sends instead of those it
// receives, e.g. a client's packets as they leave it. Checksums offloaded
// to the device may still be partial in the captured bytes.
func (ns *NS) CaptureSent(t testing.TB, dev string, ethType uint16) *Capture {
	t.Helper()
	return ns.capture(t, dev, ethType, true)
}

func (ns *NS) capture(t testing.TB, dev string, ethType uint16, sent bool) *Capture {
	t.Helper()
	// Frames a device sends reach only ETH_P_ALL sockets: those filter
	// the EtherType here.
	bindType := ethType
	if sent {
		bindType = unix.ETH_P_ALL
	}
	proto := int(bindType<<8 | bindType>>8)
	var fd int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind to %s: %w", dev, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", dev, ns.Name, err)
	}
	c := &Capture{f: os.NewFile(uintptr(fd), "capture"), frames: make(chan Frame, 4096)}
	rc, err := c.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			var n int
			var from unix.Sockaddr
			var rerr error
			err := rc.Read(func(fd uintptr) bool {
				n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != syscall.EAGAIN
			})
			if err != nil || rerr != nil {
				return
			}
			at := time.Now()
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && (ll.Pkttype == unix.PACKET_OUTGOING) != sent {
				continue
			}
			if sent && (n < 14 || uint16(buf[12])<<8|uint16(buf[13]) != ethType) {
				continue
			}
			select {
			case c.frames <- Frame{Data: bytes.Clone(buf[:n]), At: at}:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.f.Close(); <-done })
	return c
}

// Frames delivers the captured frames in order.
func (c *Capture) Frames() <-chan Frame { return c.frames }

// Drain discards the frames captured so far.
func (c *Capture) Drain() {
	for {
		select {
		case <-c.frames:
		default:
			return
		}
	}
}
