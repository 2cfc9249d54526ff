package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Sync is [sync]: connection sync with the other directors, so that the
// flows of every scheduler survive a failover. Nil when the file has no
// [sync].
type Sync struct {
	// Protocol is SyncXLB or SyncIPVS.
	Protocol  string
	Interface string
	// SyncID is resolved: the VRID of VRRPInstance when not set (0
	// without an instance: IPVS's "any").
	SyncID int
	// VRRPInstance is the instance whose role decides who sends; "":
	// send and receive always.
	VRRPInstance string
	// Peers are xlb's unicast peers; empty: multicast.
	Peers []netip.Addr
	// KeyFile holds xlb's HMAC key (the daemon reads it).
	KeyFile         string
	Port            uint16
	ReadyTimeout    time.Duration
	RefreshInterval time.Duration
	Line            int
}

// The values of [sync] protocol.
const (
	SyncXLB  = "xlb"
	SyncIPVS = "ipvs"
)

// syncSections is [sync] (sync.go decodes it).
var syncSections = []*section{
	{name: "sync", head: "[sync]", keys: []key{
		{name: "protocol", kind: kEnum, field: "Protocol", enum: []string{SyncXLB, SyncIPVS}, def: `"xlb"`,
			doc: "`xlb`: xlb's own, authenticated (HMAC), sequenced (replays dropped), with a bulk sync of the whole table when a director starts; `ipvs`: the kernel's IPVS sync protocol, version 1, to run with a kernel IPVS director (`ipvsadm --start-daemon`, keepalived's `lvs_sync_daemon`)"},
		{name: "interface", kind: kIfName, field: "Interface", req: "required", ka: "lvs_sync_daemon IF",
			doc: "where the sync's datagrams go and come from (UDP, IPv4)"},
		{name: "sync_id", kind: kInt, field: "SyncID", lo: 0, hi: 255, note: "the `virtual_router_id` of `vrrp_instance`; 0 without", ka: "lvs_sync_daemon ... id N",
			doc: "carried in every message; a message with another id is dropped (unless this one's is 0, which takes any)"},
		{name: "vrrp_instance", kind: kName, field: "VRRPInstance", note: "none: send and receive always", ka: "lvs_sync_daemon IF VI_x",
			doc: "send while this instance is MASTER (and 2s after it leaves MASTER); receive always. A restarted director holds back every VRRP instance's preemption, and its BGP announcements, until it is `sync_ready`"},
		{name: "peers", kind: kAddr, list: true, note: "none: multicast to 224.0.0.81", doc: "`xlb` only: send to these directors by unicast and accept only theirs; IPv4"},
		{name: "key_file", kind: kPath, field: "KeyFile", note: "required for `xlb`",
			doc: "`xlb` only: a file holding the HMAC-SHA256 key the directors share (at least 16 bytes; a trailing new line is ignored), owned by root and of mode 0600 or stricter; e.g. `head -c 32 /dev/urandom > /etc/xlb/sync.key`"},
		{name: "port", kind: kInt, field: "Port", lo: 1, hi: 65535, def: "8848", ka: "lvs_sync_daemon ... port N",
			doc: "the UDP port (IPVS's 8848)"},
		{name: "ready_timeout", kind: kDuration, field: "ReadyTimeout", lo: sec, hi: 3600 * sec, def: `"30s"`,
			doc: "`xlb`: the longest a starting director waits for its peers' tables before it is `sync_ready` anyway (a peer that answers makes it sooner); `ipvs`, which has no bulk sync: the wait"},
		{name: "refresh_interval", kind: kDuration, field: "RefreshInterval", hi: 3600 * sec, def: `"60s"`,
			doc: "a sending director sends its whole table this often (the flows whose records were lost, long-lived ones); `\"0s\"` never"},
	}},
}

// sync decodes [sync].
func (d *decoder) sync(t *table) *Sync {
	s := &Sync{Line: d.idx.line(t.p)}
	t.fill(s)
	if s.Protocol == SyncIPVS {
		if t.has("peers") {
			t.errorf("peers", "peers: only with protocol = \"xlb\" (IPVS sync is multicast)")
		}
		if t.has("key_file") {
			t.errorf("key_file", "key_file: only with protocol = \"xlb\" (IPVS sync has no authentication)")
		}
	} else if t.valid("protocol") && !t.has("key_file") {
		t.errorf("", "key_file: required with protocol = \"xlb\" (the directors' shared HMAC key)")
	}
	seen := map[netip.Addr]bool{}
	t.each("peers", func(_ int, p keyPath, v any) {
		a := v.(netip.Addr)
		switch {
		case !a.Is4():
			t.errorAt(p, "peers: %s: the sync runs over IPv4", a)
		case seen[a]:
			t.errorAt(p, "peers: %s is listed twice", a)
		default:
			seen[a] = true
			s.Peers = append(s.Peers, a)
		}
	})
	t.finish()
	return s
}

// checkSync checks what [sync] says about the rest of the file: its
// vrrp_instance exists (its VRID is the default sync id), and its
// interface, with an environment.
func (d *decoder) checkSync(c *Config, p keyPath) {
	s := c.Sync
	if s == nil {
		return
	}
	if s.VRRPInstance != "" {
		found := false
		for _, in := range c.VRRPInstances {
			if in.Name == s.VRRPInstance {
				found = true
				if !d.idx.has(p.key("sync_id")) {
					s.SyncID = int(in.VirtualRouterID)
				}
			}
		}
		if !found {
			d.errorf(p.key("vrrp_instance"), "[sync]: vrrp_instance: unknown vrrp_instance %q", s.VRRPInstance)
		}
	}
	if d.env != nil && s.Interface != "" {
		if _, err := d.env.InterfaceSubnets(s.Interface); err != nil {
			if errors.Is(err, ErrUnknownInterface) {
				d.errorf(p.key("interface"), "[sync]: interface: unknown interface %q", s.Interface)
			} else {
				d.errorf(p.key("interface"), "[sync]: interface: interface %q: %v", s.Interface, err)
			}
		}
	}
}

// SyncKey reads the key of [sync] key_file: owned by root (the daemon's
// user), not readable or writable by others.
func SyncKey(path string) ([]byte, error) {
	return readSecret(path, 16, "sync key_file")
}

// readSecret reads a secret file that only its owner, root or the
// daemon's user, may read; a trailing new line is not part of it.
func readSecret(path string, minLen int, what string) ([]byte, error) {
	b, st, err := readOwned(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if st&0o077 != 0 {
		return nil, fmt.Errorf("%s %s: mode %04o lets others read it: chmod 600", what, path, st&0o777)
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	if len(b) < minLen {
		return nil, fmt.Errorf("%s %s: %d bytes, at least %d", what, path, len(b), minLen)
	}
	return b, nil
}

// readOwned reads a regular file of at most 4 KiB owned by root or the
// daemon's user, and returns its permission bits.
func readOwned(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, errors.New("not a regular file")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return nil, 0, fmt.Errorf("owned by uid %d, not root: chown root", st.Uid)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, 0, err
	}
	if len(b) > 4096 {
		return nil, 0, errors.New("longer than 4 KiB")
	}
	return b, fi.Mode().Perm(), nil
}
