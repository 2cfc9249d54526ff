package control

import (
	"context"
	"slices"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
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
// server and VRRP instance, with the dataplane's counters (StatusServices,
// whole).
func (d *Daemon) Status(rates bool) *Status {
	st, services := d.StatusServices(rates)
	if services == nil {
		return st
	}
	st.Services = make([]ServiceInfo, 0, len(d.modelNow().Services))
	_ = services(func(si *ServiceInfo) error {
		c := *si
		c.Reals = slices.Clone(si.Reals)
		st.Services = append(st.Services, c)
		return nil
	})
	return st
}

func (d *Daemon) modelNow() Model {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.model
}

// StatusServices implements StatusStreamer: the status without its
// services, and its services a service at a time, from one reading of
// the dataplane's counters, the reconciler's and the checks' states
// (nil: no services, before the daemon runs). Nothing it reads is held
// behind a long lock: the dataplane's counters are read in batches without
// its lock, the reconciler's and the checks' states are copied.
func (d *Daemon) StatusServices(rates bool) (*Status, Services) {
	d.mu.Lock()
	model, reloads := d.model, d.reloads
	auto := d.cfg.Dataplane.Mode == config.ModeAuto
	d.mu.Unlock()
	st := &Status{
		Version: d.opts.Version,
		Config:  d.opts.ConfigPath,
		Started: d.started,
		Reloads: reloads,
	}
	if d.dp == nil || d.rec == nil || d.checks == nil {
		return st, nil
	}
	info, caps := d.dp.Info(), d.dp.Capabilities()
	st.Dataplane = DataplaneInfo{Mode: info.Mode, Attach: info.Attach, Fallback: auto && info.Mode == "ipvs"}
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
		d.rates.want(context.Background())
		st.RateInterval = d.rates.rateInterval()
	}
	states := d.rec.States()
	applied := map[dataplane.ServiceKey][]dataplane.Backend{}
	for _, s := range d.rec.Applied() {
		applied[s.Key] = s.Backends
	}
	// The checks' states and errors, read at once: by the model's
	// numbers of its checks (checkIdx), or else by key in the model's
	// order of its real servers.
	checks, checkErrs, numbered := d.lookupOrdered(model)
	if !numbered {
		n := 0
		for _, s := range model.Services {
			n += len(s.Reals) + 1 // and its sorry server
		}
		checks, checkErrs = make([]health.State, n), make([]error, n)
		keys := make([]string, 0, n) // "" for a real server without a check
		for _, s := range model.Services {
			for _, r := range s.reals() {
				var key string
				if r.checkType() != checktype.None {
					key = s.checkKey(r)
				}
				keys = append(keys, key)
			}
		}
		d.checks.Lookup(keys, checks, checkErrs)
	}
	overrides := d.overrides.weights()
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
	services := func(fn func(*ServiceInfo) error) error {
		next := 0 // index of the next real server in checks
		var si ServiceInfo
		var buf []RealInfo // reused from service to service
		for _, s := range model.Services {
			ss := stats.Services[s.Key]
			state := states[s.Key]
			si = ServiceInfo{
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
			backends := applied[s.Key]
			reals := s.reals()
			si.Reals = buf[:0]
			for i, r := range reals {
				bk := r.Key()
				bs, _ := ss.Find(bk, i)
				state, checkErr := health.StateUnknown, error(nil)
				if !numbered {
					state, checkErr = checks[next], checkErrs[next]
				} else if j := int(r.checkIdx) - 1; j >= 0 {
					state, checkErr = checks[j], checkErrs[j]
				}
				next++
				var addr string
				if s.Server == "" && r.keyLen > 0 {
					addr = s.checkKey(r)[len(s.Name)+1:] // the key's own: 65,536 strings fewer
				} else {
					addr = bk.String()
				}
				ri := RealInfo{
					Address:       addr,
					Weight:        r.Weight,
					Health:        state.String(),
					ActiveConns:   bs.ActiveConns,
					InactiveConns: bs.InactiveConns,
					Counters:      counters(bs.Counters),
					Sorry:         s.Sorry != nil && i == len(reals)-1,
				}
				// The applied backends are in the model's order.
				b, ok := dataplane.Backend{}, false
				if i < len(backends) && backends[i].Key() == bk {
					b, ok = backends[i], true
				} else if j := slices.IndexFunc(backends, func(b dataplane.Backend) bool { return b.Key() == bk }); j >= 0 {
					b, ok = backends[j], true
				}
				if ok {
					ri.Effective = b.Weight
					ri.Unresolved = s.Forward == dataplane.DirectRouting && caps.NextHops && !b.MAC.Valid()
				}
				if ri.Sorry {
					ri.Health = "none"
				} else if r.checkType() == checktype.None {
					ri.Health = "up"
				}
				if w, ok := overrides[OverrideKey{s.server(), r.ident()}]; ok && !ri.Sorry {
					ri.Override = &w
				}
				if checkErr != nil {
					ri.HealthError = checkErr.Error()
				}
				if rates {
					ri.Rates = d.rates.backend(s.Key, bk)
				}
				si.Reals = append(si.Reals, ri)
			}
			buf = si.Reals
			if err := fn(&si); err != nil {
				return err
			}
		}
		return nil
	}
	return st, services
}

// lookupOrdered returns the states and last errors of the model's
// numbered checks, the check of a real server r at r.checkIdx-1, read in
// their order (health.Manager.LookupOrdered): no lookup by key, and no
// second copy in the order of the real servers (1 MB at 64,000). It
// reports false when the checks are not the model's numbered list (a
// reload between its model and its checks).
func (d *Daemon) lookupOrdered(model Model) ([]health.State, []error, bool) {
	if model.checkOrder == 0 {
		return nil, nil, false
	}
	n := 0
	for _, s := range model.Services {
		for _, r := range s.Reals {
			n = max(n, int(r.checkIdx))
		}
	}
	states, errs := make([]health.State, n), make([]error, n)
	if !d.checks.LookupOrdered(model.checkOrder, states, errs) {
		return nil, nil, false
	}
	return states, errs, true
}
