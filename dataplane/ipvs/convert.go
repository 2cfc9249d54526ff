package ipvs

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

const (
	flagPersistent = 0x0001 // IP_VS_SVC_F_PERSISTENT
	// flagsManaged are the service flags Apply sets (none of the others:
	// one-packet, scheduler flags); the kernel adds IP_VS_SVC_F_HASHED.
	flagsManaged = flagPersistent | 0x0004 | 0x0008 | 0x0010 | 0x0020

	// MaxWeight is the largest real server weight (ipvsadm's limit).
	MaxWeight = 65535
)

// check rejects what IPVS cannot do, before anything is changed.
func check(services []dataplane.Service) error {
	var errs []error
	for _, s := range services {
		if spec, _ := s.Scheduler.Spec(); spec.IPVS == "" {
			errs = append(errs, fmt.Errorf("ipvs: service %s: scheduler %s: %w (IPVS has no such scheduler)",
				s.Name, s.Scheduler, dataplane.ErrNotSupported))
		}
		if s.Forward == dataplane.Tunnel && s.Tunnel.Encap == dataplane.EncapGUE {
			errs = append(errs, fmt.Errorf("ipvs: service %s: GUE tunnels: %w (the netlink library sets no tunnel type: use encap ipip or the xdp dataplane)",
				s.Name, dataplane.ErrNotSupported))
		}
		for _, b := range s.Backends {
			if b.Weight > MaxWeight {
				errs = append(errs, fmt.Errorf("ipvs: service %s: backend %s: weight %d above %d: %w",
					s.Name, b.Key(), b.Weight, MaxWeight, dataplane.ErrNotSupported))
			}
			if b.Addr.Unmap().Is4() != s.Key.Addr.Unmap().Is4() {
				errs = append(errs, fmt.Errorf("ipvs: service %s: backend %s: a real server of the other address family: %w",
					s.Name, b.Key(), dataplane.ErrNotSupported))
			}
		}
	}
	return errors.Join(errs...)
}

func family(a netip.Addr) uint16 {
	if a.Unmap().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func ipOf(a netip.Addr) net.IP {
	a = a.Unmap()
	return net.IP(a.AsSlice())
}

// toService is the IPVS service for s.
func toService(s dataplane.Service) *ipvs.Service {
	svc := &ipvs.Service{
		Address:       ipOf(s.Key.Addr),
		Protocol:      uint16(s.Key.Proto),
		Port:          s.Key.Port,
		SchedName:     ipvsScheduler(s.Scheduler),
		AddressFamily: family(s.Key.Addr),
		Netmask:       0xffffffff,
	}
	if svc.AddressFamily == unix.AF_INET6 {
		svc.Netmask = 128 // a prefix length for IPv6
	}
	if s.Persistence > 0 {
		svc.Flags = flagPersistent
		svc.Timeout = uint32((s.Persistence + time.Second - 1) / time.Second)
	}
	return svc
}

// serviceDiff describes how the installed service cur differs from want;
// "" if it does not.
func serviceDiff(cur, want *ipvs.Service) string {
	var d []string
	if cur.SchedName != want.SchedName {
		d = append(d, fmt.Sprintf("scheduler %s -> %s", cur.SchedName, want.SchedName))
	}
	if cur.Flags&flagsManaged != want.Flags {
		d = append(d, fmt.Sprintf("flags %#x -> %#x", cur.Flags&flagsManaged, want.Flags))
	}
	if cur.Timeout != want.Timeout {
		d = append(d, fmt.Sprintf("persistence %ds -> %ds", cur.Timeout, want.Timeout))
	}
	if cur.Netmask != want.Netmask {
		d = append(d, fmt.Sprintf("netmask %#x -> %#x", cur.Netmask, want.Netmask))
	}
	return strings.Join(d, ", ")
}

// ipvsScheduler is IPVS's name of a scheduler (check refused those it has
// not).
func ipvsScheduler(s dataplane.Scheduler) string {
	spec, _ := s.Spec()
	return spec.IPVS
}

// forwardFlag is IPVS's forwarding method of a mode.
func forwardFlag(m dataplane.ForwardMode) uint32 {
	f, _ := m.Spec()
	return f.IPVS
}

// toDestination is the IPVS real server for b in s.
func toDestination(s dataplane.Service, b dataplane.Backend) *ipvs.Destination {
	return &ipvs.Destination{
		Address:         ipOf(b.Addr),
		Port:            b.Port,
		Weight:          int(b.Weight),
		ConnectionFlags: forwardFlag(s.Forward),
		AddressFamily:   family(b.Addr),
		UpperThreshold:  b.UpperThreshold,
		LowerThreshold:  b.LowerThreshold,
	}
}

// destDiff describes how the installed real server cur differs from
// want; "" if it does not.
func destDiff(cur, want *ipvs.Destination) string {
	var d []string
	if cur.Weight != want.Weight {
		d = append(d, fmt.Sprintf("weight %d -> %d", cur.Weight, want.Weight))
	}
	if cur.ConnectionFlags&ipvs.ConnFwdMask != want.ConnectionFlags {
		d = append(d, fmt.Sprintf("forwarding %#x -> %#x", cur.ConnectionFlags&ipvs.ConnFwdMask, want.ConnectionFlags))
	}
	if cur.UpperThreshold != want.UpperThreshold || cur.LowerThreshold != want.LowerThreshold {
		d = append(d, fmt.Sprintf("thresholds %d/%d -> %d/%d", cur.UpperThreshold, cur.LowerThreshold, want.UpperThreshold, want.LowerThreshold))
	}
	return strings.Join(d, ", ")
}

// serviceKey is the key of an installed service; firewall-mark services
// have none.
func serviceKey(s *ipvs.Service) (dataplane.ServiceKey, bool) {
	if s.FWMark != 0 {
		return dataplane.ServiceKey{}, false
	}
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return dataplane.ServiceKey{}, false
	}
	if s.AddressFamily == unix.AF_INET {
		a = a.Unmap()
	}
	return dataplane.ServiceKey{Addr: a, Port: s.Port, Proto: dataplane.Proto(s.Protocol)}, true
}

func destKey(d *ipvs.Destination) (dataplane.BackendKey, bool) {
	a, ok := netip.AddrFromSlice(d.Address)
	if !ok {
		return dataplane.BackendKey{}, false
	}
	if d.AddressFamily == unix.AF_INET {
		a = a.Unmap()
	}
	return dataplane.BackendKey{Addr: a, Port: d.Port}, true
}

func sortedKeys[V any](m map[dataplane.ServiceKey]V) []dataplane.ServiceKey {
	return slices.SortedFunc(maps.Keys(m), dataplane.ServiceKey.Compare)
}
