package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// The IPVS generic netlink messages the counters are read with
// (include/uapi/linux/ip_vs.h). github.com/moby/ipvs reads only the 32-bit
// IPVS_*_ATTR_STATS (connection and packet counts wrap at 2^32), so Stats
// dumps the 64-bit ones itself.
const (
	cmdGetService = 4 // IPVS_CMD_GET_SERVICE
	cmdGetDest    = 8 // IPVS_CMD_GET_DEST

	cmdAttrService = 1 // IPVS_CMD_ATTR_SERVICE
	cmdAttrDest    = 2 // IPVS_CMD_ATTR_DEST

	svcAttrAF       = 1  // IPVS_SVC_ATTR_AF
	svcAttrProtocol = 2  // IPVS_SVC_ATTR_PROTOCOL
	svcAttrAddr     = 3  // IPVS_SVC_ATTR_ADDR
	svcAttrPort     = 4  // IPVS_SVC_ATTR_PORT
	svcAttrFWMark   = 5  // IPVS_SVC_ATTR_FWMARK
	svcAttrStats64  = 12 // IPVS_SVC_ATTR_STATS64

	destAttrAddr        = 1  // IPVS_DEST_ATTR_ADDR
	destAttrPort        = 2  // IPVS_DEST_ATTR_PORT
	destAttrActiveConns = 7  // IPVS_DEST_ATTR_ACTIVE_CONNS
	destAttrInactConns  = 8  // IPVS_DEST_ATTR_INACT_CONNS
	destAttrAF          = 11 // IPVS_DEST_ATTR_ADDR_FAMILY
	destAttrStats64     = 12 // IPVS_DEST_ATTR_STATS64

	statsConns    = 1 // IPVS_STATS_ATTR_CONNS
	statsInPkts   = 2 // IPVS_STATS_ATTR_INPKTS
	statsOutPkts  = 3 // IPVS_STATS_ATTR_OUTPKTS
	statsInBytes  = 4 // IPVS_STATS_ATTR_INBYTES
	statsOutBytes = 5 // IPVS_STATS_ATTR_OUTBYTES

	nlaTypeMask = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// statsConn is a generic netlink socket for the counter dumps.
type statsConn struct {
	sock   *nl.NetlinkSocket
	family uint16
}

func newStatsConn(ns netns.NsHandle, family uint16) (*statsConn, error) {
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("generic netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	if err := sock.SetReceiveTimeout(&tv); err != nil {
		sock.Close()
		return nil, fmt.Errorf("netlink receive timeout: %w", err)
	}
	if err := sock.SetSendTimeout(&tv); err != nil {
		sock.Close()
		return nil, fmt.Errorf("netlink send timeout: %w", err)
	}
	return &statsConn{sock: sock, family: family}, nil
}

func (c *statsConn) close() { c.sock.Close() }

// dump sends a dump request and returns the attributes of each answer,
// past the generic netlink header.
func (c *statsConn) dump(cmd uint8, attrs ...*nl.RtAttr) ([][]syscall.NetlinkRouteAttr, error) {
	req := nl.NewNetlinkRequest(int(c.family), unix.NLM_F_DUMP)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: 1})
	for _, a := range attrs {
		req.AddData(a)
	}
	if err := c.sock.Send(req); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	pid, err := c.sock.GetPid()
	if err != nil {
		return nil, fmt.Errorf("netlink pid: %w", err)
	}
	var out [][]syscall.NetlinkRouteAttr
	for {
		msgs, _, err := c.sock.Receive()
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Pid != pid {
				continue // a late answer to an earlier, failed request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short netlink error message")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return nil, syscall.Errno(-e)
				}
				return out, nil
			}
			if len(m.Data) < 4 {
				continue
			}
			a, err := nl.ParseRouteAttr(m.Data[4:])
			if err != nil {
				return nil, fmt.Errorf("parse answer: %w", err)
			}
			out = append(out, a)
		}
	}
}

// nested returns the attributes nested in the first top-level attribute
// of type t.
func nested(attrs []syscall.NetlinkRouteAttr, t uint16) ([]syscall.NetlinkRouteAttr, bool) {
	for _, a := range attrs {
		if a.Attr.Type&nlaTypeMask == t {
			inner, err := nl.ParseRouteAttr(a.Value)
			return inner, err == nil
		}
	}
	return nil, false
}

func u16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.NativeEndian.Uint16(b)
}

func u32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func u64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(b)
}

// addr decodes an IPVS address attribute (union nf_inet_addr: IPv4 in the
// first 4 of 16 bytes).
func addr(af uint16, b []byte) (netip.Addr, bool) {
	switch {
	case af == unix.AF_INET && len(b) >= 4:
		return netip.AddrFrom4([4]byte(b[:4])), true
	case af == unix.AF_INET6 && len(b) >= 16:
		return netip.AddrFrom16([16]byte(b[:16])), true
	}
	return netip.Addr{}, false
}

func counters(attrs []syscall.NetlinkRouteAttr) dataplane.Counters {
	var c dataplane.Counters
	for _, a := range attrs {
		switch a.Attr.Type & nlaTypeMask {
		case statsConns:
			c.Connections = u64(a.Value)
		case statsInPkts:
			c.Packets = u64(a.Value)
		case statsOutPkts:
			c.PacketsOut = u64(a.Value)
		case statsInBytes:
			c.Bytes = u64(a.Value)
		case statsOutBytes:
			c.BytesOut = u64(a.Value)
		}
	}
	return c
}

// serviceCounters dumps every service's 64-bit counters.
func (c *statsConn) serviceCounters() (map[dataplane.ServiceKey]dataplane.Counters, error) {
	answers, err := c.dump(cmdGetService, nl.NewRtAttr(cmdAttrService, nil))
	if err != nil {
		return nil, fmt.Errorf("dump services: %w", err)
	}
	out := map[dataplane.ServiceKey]dataplane.Counters{}
	for _, ans := range answers {
		svc, ok := nested(ans, cmdAttrService)
		if !ok {
			continue
		}
		var af, proto, port uint16
		var raw []byte
		var fwmark bool
		var cnt dataplane.Counters
		for _, a := range svc {
			switch a.Attr.Type & nlaTypeMask {
			case svcAttrAF:
				af = u16(a.Value)
			case svcAttrProtocol:
				proto = u16(a.Value)
			case svcAttrAddr:
				raw = a.Value
			case svcAttrPort:
				if len(a.Value) >= 2 {
					port = binary.BigEndian.Uint16(a.Value)
				}
			case svcAttrFWMark:
				fwmark = u32(a.Value) != 0
			case svcAttrStats64:
				if inner, err := nl.ParseRouteAttr(a.Value); err == nil {
					cnt = counters(inner)
				}
			}
		}
		ip, ok := addr(af, raw)
		if fwmark || !ok {
			continue // not a service of ours
		}
		out[dataplane.ServiceKey{Addr: ip, Port: port, Proto: dataplane.Proto(proto)}] = cnt
	}
	return out, nil
}

// backendStats dumps the real servers of one service with their 64-bit
// counters and connection counts.
func (c *statsConn) backendStats(k dataplane.ServiceKey) ([]dataplane.BackendStats, error) {
	af := uint16(unix.AF_INET)
	if k.Addr.Is6() {
		af = unix.AF_INET6
	}
	svc := nl.NewRtAttr(cmdAttrService, nil)
	svc.AddRtAttr(svcAttrAF, nl.Uint16Attr(af))
	svc.AddRtAttr(svcAttrProtocol, nl.Uint16Attr(uint16(k.Proto)))
	svc.AddRtAttr(svcAttrAddr, k.Addr.AsSlice())
	svc.AddRtAttr(svcAttrPort, nl.BEUint16Attr(k.Port))
	answers, err := c.dump(cmdGetDest, svc)
	if err != nil {
		return nil, fmt.Errorf("dump real servers of %s: %w", k, err)
	}
	out := make([]dataplane.BackendStats, 0, len(answers))
	for _, ans := range answers {
		dst, ok := nested(ans, cmdAttrDest)
		if !ok {
			continue
		}
		dAF := af // kernels before 3.18 send no family: the service's
		var raw []byte
		var port uint16
		var st dataplane.BackendStats
		for _, a := range dst {
			switch a.Attr.Type & nlaTypeMask {
			case destAttrAF:
				dAF = u16(a.Value)
			case destAttrAddr:
				raw = a.Value
			case destAttrPort:
				if len(a.Value) >= 2 {
					port = binary.BigEndian.Uint16(a.Value)
				}
			case destAttrActiveConns:
				st.ActiveConns = uint64(u32(a.Value))
			case destAttrInactConns:
				st.InactiveConns = uint64(u32(a.Value))
			case destAttrStats64:
				if inner, err := nl.ParseRouteAttr(a.Value); err == nil {
					st.Counters = counters(inner)
				}
			}
		}
		ip, ok := addr(dAF, raw)
		if !ok {
			continue
		}
		st.Key = dataplane.BackendKey{Addr: ip, Port: port}
		out = append(out, st)
	}
	return out, nil
}
