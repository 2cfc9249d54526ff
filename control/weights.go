package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
	"github.com/xlb-dev/xlb/dataplane"
)

// Weight overrides: `xlb set-weight SERVICE ADDR[:PORT] N` (ipvsadm -e)
// sets a real server's weight until `xlb reset-weight`, or until the
// configuration changes that real server (its address, port or weight).
// An override is an input of Desired; the daemon keeps them in a state
// file next to the control socket (SOCKET.weights), so that they survive
// a restart of the daemon, as the pinned dataplane does, and go with it
// at a reboot (/run is a tmpfs).

// OverrideKey names a real server of a [[virtual_server]]: its name and
// the real server as configured (RealSpec.id).
type OverrideKey struct {
	Server string
	Real   dataplane.BackendKey
}

// weight is the weight a healthy real server gets: the operator's
// override, else what its check says of the configured weight
// (misc_dynamic, file). An override wins over the check's weight: the
// operator's word stands until reset.
func (in Inputs) weight(s ServiceSpec, rs RealSpec) uint32 {
	if len(in.Overrides) > 0 {
		if w, ok := in.Overrides[OverrideKey{s.server(), rs.ident()}]; ok {
			return w
		}
	}
	if len(in.Weights) == 0 || rs.checkType() == checktype.None {
		// No check's weight to find: no key made for each of 65,536
		// real servers at each round.
		return health.Weight{}.Apply(rs.Weight)
	}
	return in.Weights[s.checkKey(rs)].Apply(rs.Weight)
}

// SetOverrides replaces the weight overrides.
func (r *Reconciler) SetOverrides(o map[OverrideKey]uint32) {
	r.mu.Lock()
	r.overrides = o
	r.overridesGen++
	r.mu.Unlock()
	r.Poke()
}

// Override is an operator's weight for a real server, as the state file
// keeps it.
type Override struct {
	Service string `json:"service"`     // the [[virtual_server]]'s name
	Real    string `json:"real_server"` // ADDR:PORT, as configured
	Weight  uint32 `json:"weight"`
	// Configured is the configured weight when it was set: a
	// configuration with another drops the override.
	Configured uint32    `json:"configured"`
	Set        time.Time `json:"set"`
	By         string    `json:"by"`
}

// stateFileVersion is the layout of the state file.
const stateFileVersion = 1

type stateFile struct {
	Version   int        `json:"version"`
	Overrides []Override `json:"weight_overrides"`
}

// overrides holds the daemon's weight overrides and their state file.
type overrides struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	m       map[OverrideKey]Override
	changes map[string]uint64 // set, reset, dropped
}

// overridesPath is the state file of the daemon serving socket.
func overridesPath(socket string) string { return socket + ".weights" }

func newOverrides(path string, log *slog.Logger) *overrides {
	return &overrides{path: path, log: log, m: map[OverrideKey]Override{}, changes: map[string]uint64{}}
}

// load reads the state file. A missing file is no override; a broken one
// is logged and left for the operator to look at (the configured weights
// apply).
func (o *overrides) load() {
	data, err := os.ReadFile(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var sf stateFile
	if err == nil {
		err = json.Unmarshal(data, &sf)
	}
	if err == nil && sf.Version != stateFileVersion {
		err = fmt.Errorf("version %d, want %d", sf.Version, stateFileVersion)
	}
	if err != nil {
		o.log.Error("weight overrides: state file ignored: the configured weights apply", "file", o.path, "error", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ov := range sf.Overrides {
		ap, err := netip.ParseAddrPort(ov.Real)
		if err != nil {
			o.log.Error("weight overrides: entry ignored", "file", o.path, "service", ov.Service, "real_server", ov.Real, "error", err)
			continue
		}
		o.m[OverrideKey{ov.Service, dataplane.BackendKey{Addr: ap.Addr(), Port: ap.Port()}}] = ov
	}
}

// save writes the state file atomically (a new file renamed over the
// old, both synced). Called with o.mu held.
func (o *overrides) save(m map[OverrideKey]Override) error {
	if len(m) == 0 {
		if err := os.Remove(o.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("weight overrides: %w", err)
		}
		return nil
	}
	sf := stateFile{Version: stateFileVersion}
	for _, ov := range m {
		sf.Overrides = append(sf.Overrides, ov)
	}
	sort.Slice(sf.Overrides, func(i, j int) bool {
		a, b := sf.Overrides[i], sf.Overrides[j]
		return a.Service < b.Service || a.Service == b.Service && a.Real < b.Real
	})
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(o.path)
	f, err := os.CreateTemp(dir, filepath.Base(o.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("weight overrides: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, o.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("weight overrides: write %s: %w", o.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// weights are the overrides as Desired takes them.
func (o *overrides) weights() map[OverrideKey]uint32 {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	w := make(map[OverrideKey]uint32, len(o.m))
	for k, ov := range o.m {
		w[k] = ov.Weight
	}
	return w
}

// get returns the override of a real server, if any.
func (o *overrides) get(k OverrideKey) (Override, bool) {
	if o == nil {
		return Override{}, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ov, ok := o.m[k]
	return ov, ok
}

// update applies a change to a copy, saves it, and only then makes it
// the overrides: a change that cannot be saved is not made.
func (o *overrides) update(change string, fn func(m map[OverrideKey]Override) int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[OverrideKey]Override, len(o.m)+1)
	for k, v := range o.m {
		m[k] = v
	}
	n := fn(m)
	if n == 0 {
		return nil
	}
	if err := o.save(m); err != nil {
		return err
	}
	o.m = m
	o.changes[change] += uint64(n)
	return nil
}

// prune drops the overrides of real servers the model no longer has, or
// has with another configured weight; it returns them.
func (o *overrides) prune(m Model) ([]Override, error) {
	// Only the [[virtual_server]]s with an override are looked at: a
	// reload of 65,536 real servers and a handful of overrides makes no
	// map of them all.
	o.mu.Lock()
	servers := make(map[string]bool, len(o.m))
	for k := range o.m {
		servers[k.Server] = true
	}
	o.mu.Unlock()
	configured := map[OverrideKey]uint32{}
	for _, s := range m.Services {
		if !servers[s.server()] {
			continue
		}
		for _, rs := range s.Reals {
			configured[OverrideKey{s.server(), rs.ident()}] = rs.Weight
		}
	}
	var dropped []Override
	err := o.update("dropped", func(cur map[OverrideKey]Override) int {
		for k, ov := range cur {
			if w, ok := configured[k]; !ok || w != ov.Configured {
				delete(cur, k)
				dropped = append(dropped, ov)
			}
		}
		return len(dropped)
	})
	if err != nil {
		return nil, err
	}
	return dropped, nil
}

// findReal finds the real server ADDR[:PORT] of the [[virtual_server]]
// server in m: its key and configured weight.
func findReal(m Model, server, real string) (OverrideKey, uint32, error) {
	var names []string
	found := false
	type match struct {
		id     dataplane.BackendKey
		weight uint32
	}
	var matches []match
	ap, errAP := netip.ParseAddrPort(real)
	addr, errA := netip.ParseAddr(real)
	if errAP != nil && errA != nil {
		return OverrideKey{}, 0, fmt.Errorf("%q is not ADDR or ADDR:PORT", real)
	}
	for _, s := range m.Services {
		if !slices.Contains(names, s.server()) {
			names = append(names, s.server())
		}
		if s.server() != server {
			continue
		}
		found = true
		for _, rs := range s.Reals {
			id := rs.ident()
			if (errAP == nil && id.Addr == ap.Addr() && id.Port == ap.Port()) || (errAP != nil && id.Addr == addr) {
				if !slices.ContainsFunc(matches, func(x match) bool { return x.id == id }) {
					matches = append(matches, match{id, rs.Weight})
				}
			}
		}
	}
	switch {
	case !found:
		if len(names) > 20 {
			names = append(names[:20], "...")
		}
		return OverrideKey{}, 0, fmt.Errorf("no virtual server %q (virtual servers: %s)", server, strings.Join(names, ", "))
	case len(matches) == 0:
		return OverrideKey{}, 0, fmt.Errorf("virtual server %q has no real server %s", server, real)
	case len(matches) > 1:
		var ids []string
		for _, x := range matches {
			ids = append(ids, x.id.String())
		}
		return OverrideKey{}, 0, fmt.Errorf("%s is %s in virtual server %q: give the port", real, strings.Join(ids, " and "), server)
	}
	return OverrideKey{server, matches[0].id}, matches[0].weight, nil
}

// WeightSetter is implemented by handlers that serve `xlb set-weight` and
// `xlb reset-weight`.
type WeightSetter interface {
	// SetWeight sets the weight of a real server (ADDR or ADDR:PORT) of
	// a [[virtual_server]]; by says who asked. It returns what was done.
	SetWeight(service, real string, weight int, by string) (string, error)
	ResetWeight(service, real, by string) (string, error)
}

var _ WeightSetter = (*Daemon)(nil)

// weightCommand serves "set-weight" and "reset-weight".
func weightCommand(h Handler, req Request) Response {
	ws, ok := h.(WeightSetter)
	if !ok {
		return Response{Error: req.Command + " is not supported here"}
	}
	var msg string
	var err error
	if req.Command == "set-weight" {
		msg, err = ws.SetWeight(req.Service, req.Real, req.Weight, req.peer)
	} else {
		msg, err = ws.ResetWeight(req.Service, req.Real, req.peer)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{OK: true, Message: msg}
}

// SetWeight implements WeightSetter.
func (d *Daemon) SetWeight(service, real string, weight int, by string) (string, error) {
	if weight < 0 || weight > 65535 {
		return "", fmt.Errorf("weight %d is out of range (0..65535)", weight)
	}
	d.mu.Lock()
	model := d.model
	d.mu.Unlock()
	key, configured, err := findReal(model, service, real)
	if err != nil {
		return "", err
	}
	ov := Override{Service: key.Server, Real: key.Real.String(), Weight: uint32(weight), Configured: configured, Set: time.Now().UTC(), By: by}
	if err := d.overrides.update("set", func(m map[OverrideKey]Override) int { m[key] = ov; return 1 }); err != nil {
		return "", err
	}
	d.rec.SetOverrides(d.overrides.weights())
	d.log.Info("weight override set", "service", key.Server, "real_server", ov.Real, "weight", weight, "configured", configured, "by", by)
	return fmt.Sprintf("%s %s: weight %d (configured %d) until xlb reset-weight, or a configuration that changes this real server",
		key.Server, ov.Real, weight, configured), nil
}

// ResetWeight implements WeightSetter.
func (d *Daemon) ResetWeight(service, real, by string) (string, error) {
	d.mu.Lock()
	model := d.model
	d.mu.Unlock()
	key, configured, err := findReal(model, service, real)
	if err != nil {
		return "", err
	}
	old, ok := d.overrides.get(key)
	if !ok {
		return fmt.Sprintf("%s %s: no weight override (weight %d as configured)", key.Server, key.Real, configured), nil
	}
	if err := d.overrides.update("reset", func(m map[OverrideKey]Override) int { delete(m, key); return 1 }); err != nil {
		return "", err
	}
	d.rec.SetOverrides(d.overrides.weights())
	d.log.Info("weight override reset", "service", key.Server, "real_server", old.Real, "weight", old.Weight, "configured", configured, "by", by)
	return fmt.Sprintf("%s %s: weight %d as configured (override %d removed)", key.Server, old.Real, configured, old.Weight), nil
}

// startOverrides reads the state file and hands the overrides to the
// reconciler before its first round: a restart applies them at once.
func (d *Daemon) startOverrides(cfg *config.Config) {
	d.overrides = newOverrides(overridesPath(cfg.Control.Socket), d.log)
	d.overrides.load()
	d.applyOverrides(d.model)
	d.metrics.Registry.MustRegister(overridesCollector{o: d.overrides, model: func() Model {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.model
	}})
}

// applyOverrides drops the overrides model's configuration changed and
// hands the others to the reconciler (at start, before the first round,
// and after each reload).
func (d *Daemon) applyOverrides(model Model) {
	dropped, err := d.overrides.prune(model)
	if err != nil {
		d.log.Error("weight overrides", "error", err)
	}
	for _, ov := range dropped {
		d.log.Warn("weight override dropped: the configuration changed or removed the real server",
			"service", ov.Service, "real_server", ov.Real, "weight", ov.Weight, "was_configured", ov.Configured)
	}
	d.rec.SetOverrides(d.overrides.weights())
}

// backendLabels are the labels of a real server's series.
var backendLabels = []string{"service", "backend"}

var (
	overrideDesc        = prometheus.NewDesc("xlb_backend_weight_override", "The weight an operator set (xlb set-weight) for a real server; absent without an override.", backendLabels, nil)
	overrideChangesDesc = prometheus.NewDesc("xlb_weight_override_changes_total", "Weight overrides set and reset (xlb set-weight, reset-weight), and dropped by a configuration that changed their real server.", []string{"change"}, nil)
)

// overridesCollector exports the overrides of the model's real servers.
type overridesCollector struct {
	o     *overrides
	model func() Model
}

func (c overridesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- overrideDesc
	ch <- overrideChangesDesc
}

func (c overridesCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.o.weights()
	if len(w) > 0 {
		for _, s := range c.model().Services {
			for _, rs := range s.Reals {
				if v, ok := w[OverrideKey{s.server(), rs.ident()}]; ok {
					ch <- prometheus.MustNewConstMetric(overrideDesc, prometheus.GaugeValue, float64(v), s.Name, rs.Key().String())
				}
			}
		}
	}
	c.o.mu.Lock()
	changes := map[string]uint64{"set": c.o.changes["set"], "reset": c.o.changes["reset"], "dropped": c.o.changes["dropped"]}
	c.o.mu.Unlock()
	for k, n := range changes {
		ch <- prometheus.MustNewConstMetric(overrideChangesDesc, prometheus.CounterValue, float64(n), k)
	}
}
