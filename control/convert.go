package control

import (
	"cmp"
	"net/netip"
	"sync/atomic"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/vrrp"
)

// ModelFromConfig converts the virtual servers of a configuration.
func ModelFromConfig(c *config.Config) Model {
	var m Model
	first := map[string][]RealSpec{} // a group's first entry's real servers
	for _, vs := range c.VirtualServers {
		s := ServiceSpec{
			Name:        vs.Name,
			Group:       vs.Group,
			SMTPAlert:   vs.SMTPAlert,
			Key:         dataplane.ServiceKey{Addr: vs.Address, Port: vs.Port, Proto: vs.Protocol},
			Scheduler:   vs.Scheduler,
			Forward:     vs.Forward,
			Persistence: vs.PersistenceTimeout,
			Instance:    vs.VRRPInstance,
			Quorum:      uint32(max(vs.Quorum, 0)),
			Hysteresis:  uint32(max(vs.Hysteresis, 0)),
			QuorumUp:    string(vs.QuorumUp),
			QuorumDown:  string(vs.QuorumDown),
			Line:        vs.Line,
		}
		if vs.Forward == dataplane.Tunnel {
			s.Tunnel = dataplane.TunnelOptions{Encap: vs.TunnelType, GUEPort: vs.TunnelPort, Source: vs.TunnelSource}
		}
		if vs.SorryServer.IsValid() {
			s.Sorry = &RealSpec{Addr: vs.SorryServer.Addr(), Port: vs.SorryServer.Port(), Weight: 1, Check: noCheck}
		}
		s.Reals = make([]RealSpec, 0, len(vs.RealServers))
		// The real servers whose check is their neighbour's share its Spec.
		var shared *health.Spec
		for _, rs := range vs.RealServers {
			spec := checkSpec(cmp.Or(vs.Server, vs.Name), rs)
			port := spec.Target.Port()
			spec.Target = netip.AddrPort{}
			if shared == nil || !shared.Equal(spec) {
				// A copy: spec itself stays on the stack (&spec made a
				// heap Spec of ~450 bytes per real server, 28 MB of
				// garbage per load at 64,000).
				c := spec
				shared = &c
			}
			s.Reals = append(s.Reals, RealSpec{
				Addr:      rs.Address,
				Port:      rs.Port,
				Weight:    uint32(max(rs.Weight, 0)),
				Check:     shared,
				CheckPort: port,
				SMTPAlert: rs.SMTPAlert,
				// config refuses negative thresholds.
				UpperThreshold: uint32(max(rs.UpperThreshold, 0)),
				LowerThreshold: uint32(max(rs.LowerThreshold, 0)),
			})
		}
		if vs.Group != "" {
			s.Server = vs.Server
			if f, ok := first[vs.Server]; ok {
				// The group's entries but the first: their real servers
				// as the first entry has them, in one allocation.
				ids := make([]dataplane.BackendKey, len(s.Reals))
				for i := range s.Reals {
					ids[i] = f[i].Key()
					s.Reals[i].id = &ids[i]
				}
			} else {
				first[vs.Server] = s.Reals
			}
		}
		s.makeCheckKeys()
		m.Services = append(m.Services, s)
	}
	m.numberChecks()
	return m
}

// checkOrders names the models' lists of checks (Model.checkOrder).
var checkOrders atomic.Uint64

// numberChecks gives each real server that has a check the position of
// its check in the model's list of checks (checks: one per key, the
// first real server of a key its place), and the list a name of its own:
// a reconciler's round reads the checks' states in that order
// (health.Manager.StatesOrdered) instead of looking 64,000 keys up.
// Called while the model is made, before anything reads it.
func (m *Model) numberChecks() {
	var seen map[string]int32
	n := int32(0)
	for _, s := range m.Services {
		for i := range s.Reals {
			rs := &s.Reals[i]
			if rs.checkType() == checktype.None {
				continue
			}
			if s.Group != "" {
				key := s.checkKey(*rs)
				if idx, ok := seen[key]; ok {
					rs.checkIdx = idx
					continue
				}
				if seen == nil {
					seen = map[string]int32{}
				}
				seen[key] = n + 1
			}
			n++
			rs.checkIdx = n
		}
	}
	m.checkOrder = checkOrders.Add(1)
}

// noCheck is the check of sorry servers.
var noCheck = &health.Spec{Type: checktype.None}

func checkSpec(service string, rs config.RealServer) health.Spec {
	hc := *rs.HealthCheck
	port := hc.Port
	if port == 0 {
		port = rs.Port
	}
	s := health.Spec{
		Type:         hc.Type,
		Target:       netip.AddrPortFrom(rs.Address, port),
		Interval:     hc.Interval,
		Timeout:      hc.Timeout,
		Fall:         hc.Fall,
		Rise:         hc.Rise,
		ConnectIP:    hc.ConnectIP,
		BindTo:       hc.BindTo,
		Path:         hc.Path,
		ExpectStatus: hc.ExpectStatus,
		BodyRegex:    hc.BodyRegex,
		Digest:       hc.Digest,
		Host:         hc.Host,
		HTTPProtocol: hc.HTTPProtocol,
		SNI:          hc.SNI,
		TLSVerify:    hc.TLSVerify,
		CAFile:       hc.CAFile,
		Payload:      hc.Payload,
		RequireReply: hc.RequireReply,
		Reply:        hc.ReplyPattern,
		DNSName:      hc.DNSName,
		DNSType:      hc.DNSType,
		HeloName:     hc.HeloName,
		File:         hc.File,
		FileWeight:   hc.Weight,
		FileReverse:  hc.WeightReverse,
		Script:       string(hc.Script),
		MiscDynamic:  hc.MiscDynamic,
		InitialUp:    hc.InitialState == config.InitialUp,
	}
	for _, u := range hc.URLs {
		s.URLs = append(s.URLs, health.URL{Path: u.Path, ExpectStatus: u.ExpectStatus, BodyRegex: u.BodyRegex, Digest: u.Digest, Host: u.Host})
	}
	if hc.Warmup != nil {
		s.Warmup = *hc.Warmup
		if s.Warmup == 0 {
			s.Warmup = -1 // at once
		}
	}
	if hc.Type == checktype.Script {
		s.Service = service // XLB_VS_NAME
	}
	return s
}

// CheckSpecs returns every health check of a model by CheckKey.
func CheckSpecs(m Model) map[string]health.Spec {
	out := map[string]health.Spec{}
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			out[s.checkKey(rs)] = rs.CheckSpec() // a group's entries: the first entry's
		}
	}
	return out
}

// checks returns the health checks of a model that run, in its order:
// those of type none are not checks (their real servers are always up).
// The entries of a group share their first entry's.
func checks(m Model) []health.Check {
	n := 0
	for _, s := range m.Services {
		n += len(s.Reals)
	}
	// Made once at its largest: appending 64,000 checks (3.6 MB) made
	// as much again in the arrays it outgrew, during every reload.
	out := make([]health.Check, 0, n)
	var seen map[string]bool
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			if rs.checkType() == checktype.None {
				continue
			}
			if m.checkOrder != 0 {
				// Numbered: a key's first real server has its place.
				if int(rs.checkIdx) == len(out)+1 {
					out = append(out, health.Check{Key: s.checkKey(rs), Spec: rs.Check, Target: rs.CheckSpec().Target})
				}
				continue
			}
			key := s.checkKey(rs)
			if s.Group != "" {
				if seen[key] {
					continue
				}
				if seen == nil {
					seen = map[string]bool{}
				}
				seen[key] = true
			}
			out = append(out, health.Check{Key: key, Spec: rs.Check, Target: rs.CheckSpec().Target})
		}
	}
	return out
}

// VRRPFromConfig converts the VRRP part of a configuration.
func VRRPFromConfig(c *config.Config) vrrp.Config {
	var v vrrp.Config
	for _, s := range c.VRRPScripts {
		v.Scripts = append(v.Scripts, vrrp.ScriptConfig{
			Name: s.Name, Script: string(s.Script), Interval: s.Interval, Timeout: s.Timeout,
			Fall: s.Fall, Rise: s.Rise, Weight: s.Weight,
		})
	}
	for _, g := range c.SyncGroups {
		v.SyncGroups = append(v.SyncGroups, vrrp.SyncGroupConfig{Name: g.Name, Instances: g.Group, Notify: vrrp.Notify{
			Master: string(g.NotifyMaster), Backup: string(g.NotifyBackup), Fault: string(g.NotifyFault),
			Stop: string(g.NotifyStop), Generic: string(g.Notify),
		}})
	}
	for _, in := range c.VRRPInstances {
		ic := vrrp.InstanceConfig{
			Name:           in.Name,
			Interface:      in.Interface,
			InitialState:   in.State,
			VRID:           in.VirtualRouterID,
			Priority:       in.Priority,
			AdvertInterval: in.AdvertInt,
			Version:        in.Version,
			NoPreempt:      !in.Preempt,
			PreemptDelay:   in.PreemptDelay,
			AuthType:       in.AuthType,
			AuthPass:       in.AuthPass,
			UnicastSrc:     in.UnicastSrcIP,
			UnicastPeers:   in.UnicastPeers,
			Notify: vrrp.Notify{
				Master: string(in.NotifyMaster), Backup: string(in.NotifyBackup), Fault: string(in.NotifyFault),
				Stop: string(in.NotifyStop), Generic: string(in.Notify), Timeout: in.NotifyTimeout,
			},
			GARP: vrrp.GARPConfig{
				MasterDelay: in.GARPMasterDelay, MasterRepeat: in.GARPMasterRepeat,
				MasterRefresh: in.GARPMasterRefresh, MasterRefreshRepeat: in.GARPMasterRefreshRepeat,
				Interval: in.GARPInterval, NAInterval: in.GNAInterval,
			},
			UseVMAC:                  in.UseVMAC,
			SplitBrainProbeInterval:  in.SplitBrainCheckInterval,
			LearnedIntervalMaxFactor: in.LearnedAdvertIntMaxFactor,
		}
		// The file's 0 means off where vrrp's 0 means its default.
		if in.SplitBrainCheckInterval == 0 {
			ic.SplitBrainProbeInterval = -1 // disabled in the configuration
		}
		if in.GARPMasterDelay == 0 {
			ic.GARP.MasterDelay = -1 // no second burst, as keepalived's 0
		}
		if in.LearnedAdvertIntMaxFactor == 0 {
			ic.LearnedIntervalMaxFactor = -1 // no limit
		}
		for _, vip := range in.VirtualIPAddresses {
			ic.VIPs = append(ic.VIPs, vrrp.VIP{Prefix: vip.Prefix, Dev: vip.Dev, Label: vip.Label})
		}
		for _, ts := range in.TrackScripts {
			w := ts.Weight
			ic.TrackScripts = append(ic.TrackScripts, vrrp.TrackScript{Name: ts.Name, Weight: &w})
		}
		for _, ti := range in.TrackInterfaces {
			ic.TrackInterfaces = append(ic.TrackInterfaces, vrrp.TrackInterface{Name: ti.Name, Weight: ti.Weight})
		}
		v.Instances = append(v.Instances, ic)
	}
	return v
}
