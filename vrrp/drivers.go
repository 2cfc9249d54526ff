package vrrp

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Clock is the time source of a Node: by default time.Now with timerfd
// timers, a fake in tests.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine d from now, and again d after
	// each Reset. A call may be late, or spurious after a Reset or Stop: f
	// checks the time itself.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer re-arms or stops a Clock's AfterFunc.
type Timer interface {
	Reset(d time.Duration)
	Stop()
}

// realClock uses Go timers (the fallback when timerfd is unavailable).
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }

// Link is what a Node needs to know of a network interface.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	// Up: administratively up and with carrier (IFF_UP and IFF_RUNNING).
	Up bool
	// Addr4 is the primary IPv4 address and Addr6 the link-local IPv6
	// address (not tentative), invalid when there is none. Both skip the
	// addresses Link was asked to exclude (the VIPs).
	Addr4, Addr6 netip.Addr
	// Router: IPv6 forwarding is on (the Router flag of our NAs).
	Router bool
}

// Network is the host networking a Node drives: the default is Linux's
// (raw IP sockets, AF_PACKET, netlink); tests inject fakes.
type Network interface {
	// Link describes interface name; the addresses in exclude are not
	// taken as its primary address.
	Link(name string, exclude []netip.Addr) (Link, error)
	// ListenVRRP opens the VRRP socket of an interface for one family:
	// joined to the VRRP group, TTL / hop limit 255.
	ListenVRRP(ifname string, v6 bool) (PacketConn, error)
	// ListenFrames opens a link-layer socket on an interface for ARP (or
	// for IPv6 neighbour advertisements when v6).
	ListenFrames(ifname string, v6 bool) (FrameConn, error)
	// AddAddr and DelAddr install and remove a virtual address; adding a
	// present one and removing an absent one succeed.
	AddAddr(v VIP) error
	DelAddr(v VIP) error
	// EnsureVMAC creates (or keeps) the macvlan name on parent with mac,
	// up; DeleteVMAC removes it.
	EnsureVMAC(parent, name string, mac net.HardwareAddr) error
	DeleteVMAC(name string) error
	// WatchLinks calls report for every interface change (name, up) until
	// ctx is done. report does not block for long.
	WatchLinks(ctx context.Context, report func(name string, up bool)) error
}

// PacketConn carries VRRP packets of one interface and family.
type PacketConn interface {
	// ReadPacket reads the next VRRP packet (the IP payload) with its
	// addresses and TTL / hop limit.
	ReadPacket(buf []byte) (n int, src, dst netip.Addr, ttl int, err error)
	// WritePacket sends payload from src to dst with TTL / hop limit 255.
	WritePacket(payload []byte, src, dst netip.Addr) error
	Close() error
}

// FrameConn carries Ethernet frames on one interface.
type FrameConn interface {
	// ReadFrame reads the next frame received (never one we sent).
	ReadFrame(buf []byte) (int, error)
	WriteFrame(frame []byte) error
	Close() error
}

// Runner runs the configured commands: notify scripts (with extra
// arguments) and track scripts. How a command line becomes a process is
// the Runner's: the daemon's splits it into words and runs it without a
// shell, as the configuration documents. A nil error means exit status 0;
// the process is killed when ctx is done. vrrp has no Runner of its own: a
// configuration with commands needs Options.Runner (ErrNoRunner).
type Runner interface {
	Run(ctx context.Context, command string, args ...string) error
}
