package control

import (
	"context"

	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

func (d *Daemon) sample(ctx context.Context) (*dataplane.Stats, error) {
	return d.dp.Stats(ctx)
}

func counters(c dataplane.Counters) Counters {
	return Counters{Connections: c.Connections, PacketsIn: c.Packets, PacketsOut: c.PacketsOut, BytesIn: c.Bytes, BytesOut: c.BytesOut}
}

// Status implements Handler: the daemon's view of every service, real
// server and VRRP instance, with the dataplane's counters.
func (d *Daemon) Status(rates bool) *Status {
	d.mu.Lock()
	model, reloads := d.model, d.reloads
	d.mu.Unlock()
	st := &Status{
		Version: d.opts.Version,
		Config:  d.opts.ConfigPath,
		Started: d.started,
		Reloads: reloads,
	}
	if d.dp == nil || d.rec == nil || d.checks == nil {
		return st
	}
	info, caps := d.dp.Info(), d.dp.Capabilities()
	st.Dataplane = DataplaneInfo{Mode: info.Mode, Attach: info.Attach}
	if err := d.rec.LastError(); err != nil {
		st.Dataplane.Error = err.Error()
	}
	stats, _ := d.dp.Stats(context.Background())
	if stats == nil {
		stats = &dataplane.Stats{}
	}
	st.Verdicts = stats.Verdicts
	st.Events = stats.Events
	if rates {
		st.RateInterval = d.rates.interval
	}
	states := d.rec.States()
	applied := map[dataplane.ServiceKey]dataplane.Service{}
	for _, s := range d.rec.Applied() {
		applied[s.Key] = s
	}
	checks := d.checks.Status()
	for _, s := range model.Services {
		ss := stats.Services[s.Key]
		state := states[s.Key]
		si := ServiceInfo{
			Name:        s.Name,
			Protocol:    s.Key.Proto.String(),
			Address:     s.Key.String()[len(s.Key.Proto.String())+1:],
			Scheduler:   string(s.Scheduler),
			Forward:     string(s.Forward),
			Persistence: int64(s.Persistence.Seconds()),
			Instance:    s.Instance,
			Up:          state.Up,
			Forwarding:  state.Forwarding,
			SorryActive: state.SorryActive,
			Counters:    counters(ss.Counters),
		}
		if rates {
			si.Rates = d.rates.service(s.Key)
		}
		effective := map[dataplane.BackendKey]uint32{}
		unresolved := map[dataplane.BackendKey]bool{}
		for _, b := range applied[s.Key].Backends {
			effective[b.Key()] = b.Weight
			unresolved[b.Key()] = s.Forward == dataplane.DirectRouting && caps.NextHops && len(b.MAC) == 0
		}
		reals := s.reals()
		for i, r := range reals {
			bs := ss.Backends[r.Key()]
			check := checks[s.checkKey(r)]
			ri := RealInfo{
				Address:       r.Key().String(),
				Weight:        r.Weight,
				Effective:     effective[r.Key()],
				Health:        check.State.String(),
				ActiveConns:   bs.ActiveConns,
				InactiveConns: bs.InactiveConns,
				Counters:      counters(bs.Counters),
				Sorry:         s.Sorry != nil && i == len(reals)-1,
				Unresolved:    unresolved[r.Key()],
			}
			if ri.Sorry {
				ri.Health = "none"
			} else if r.Check.Type == checktype.None {
				ri.Health = "up"
			}
			if ov, ok := d.overrides.get(OverrideKey{s.server(), r.id()}); ok && !ri.Sorry {
				w := ov.Weight
				ri.Override = &w
			}
			if check.LastError != nil {
				ri.HealthError = check.LastError.Error()
			}
			if rates {
				ri.Rates = d.rates.backend(s.Key, r.Key())
			}
			si.Reals = append(si.Reals, ri)
		}
		st.Services = append(st.Services, si)
	}
	for _, in := range d.vrrpStatus() {
		ii := InstanceInfo{
			Name: in.Name, Interface: in.Interface, VRID: in.VRID, Version: in.Version,
			State: in.State.String(), Since: in.Since, Priority: in.Priority, EffectivePriority: in.EffectivePriority,
			VIPs: prefixStrings(in.VIPs), Faults: in.Faults, SplitBrain: in.SplitBrain,
		}
		if in.MasterAddr.IsValid() {
			ii.Master = in.MasterAddr.String()
		}
		st.VRRP = append(st.VRRP, ii)
	}
	st.BGP = d.bgpStatus()
	st.Sync = d.syncStatus()
	if d.mail.sender != nil && d.mail.sender.Enabled() {
		ms := d.mail.sender.Stats()
		st.Mail = &ms
	}
	return st
}
