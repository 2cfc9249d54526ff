// Package dataplanetest has what tests of the control plane drive instead
// of a real dataplane.
package dataplanetest

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/xlb-dev/xlb/dataplane"
)

// Fake is an in-memory Dataplane for control-plane tests. It records every
// Apply and the per-service changes it would have made, and serves the
// counters a test sets. It adopts what it has installed (Adopter), as a
// restarted XDP dataplane adopts its pinned maps.
type Fake struct {
	mu        sync.Mutex
	installed map[dataplane.ServiceKey]dataplane.Service
	applies   int
	changes   []string
	stats     dataplane.Stats
	detached  bool
	closed    bool
	// ApplyErr, when set, is returned by the next Apply, which then
	// changes nothing.
	ApplyErr error
	// Limits are what Capabilities reports; set before the Fake is used.
	Limits dataplane.Limits
}

var (
	_ dataplane.Dataplane = (*Fake)(nil)
	_ dataplane.Adopter   = (*Fake)(nil)
)

// NewFake returns an empty fake dataplane.
func NewFake() *Fake {
	return &Fake{installed: map[dataplane.ServiceKey]dataplane.Service{}}
}

// Apply implements Dataplane.
func (f *Fake) Apply(_ context.Context, desired []dataplane.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ApplyErr; err != nil {
		f.ApplyErr = nil
		return err
	}
	if err := dataplane.Validate(desired); err != nil {
		return err
	}
	f.applies++
	want := make(map[dataplane.ServiceKey]dataplane.Service, len(desired))
	for _, s := range desired {
		want[s.Key] = s.Clone()
	}
	for _, k := range slices.SortedFunc(maps.Keys(f.installed), dataplane.ServiceKey.Compare) {
		if _, ok := want[k]; !ok {
			f.changes = append(f.changes, "delete "+k.String())
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(want), dataplane.ServiceKey.Compare) {
		old, ok := f.installed[k]
		switch {
		case !ok:
			f.changes = append(f.changes, "create "+k.String())
		case !dataplane.ServiceEqual(old, want[k]):
			f.changes = append(f.changes, "update "+k.String())
		}
	}
	f.installed = want
	return nil
}

// Installed returns the services as installed, sorted by key.
func (f *Fake) Installed() []dataplane.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]dataplane.Service, 0, len(f.installed))
	for _, k := range slices.SortedFunc(maps.Keys(f.installed), dataplane.ServiceKey.Compare) {
		out = append(out, f.installed[k].Clone())
	}
	return out
}

// Changes returns and clears the changes made by Apply since the last call,
// e.g. "create tcp/10.0.0.3:80".
func (f *Fake) Changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.changes
	f.changes = nil
	return c
}

// Applies counts successful Apply calls.
func (f *Fake) Applies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// SetStats sets what Stats returns.
func (f *Fake) SetStats(s dataplane.Stats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = s
}

// Stats implements Dataplane.
func (f *Fake) Stats(context.Context) (*dataplane.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := dataplane.Stats{Services: map[dataplane.ServiceKey]dataplane.ServiceStats{}, Verdicts: maps.Clone(f.stats.Verdicts)}
	for k, v := range f.stats.Services {
		v.Backends = slices.Clone(v.Backends)
		s.Services[k] = v
	}
	return &s, nil
}

// Info implements Dataplane.
func (f *Fake) Info() dataplane.Info { return dataplane.Info{Mode: "fake"} }

// Capabilities implements Dataplane: no next hops to resolve, f.Limits.
func (f *Fake) Capabilities() dataplane.Capabilities { return dataplane.Capabilities{Limits: f.Limits} }

// Detach implements Dataplane.
func (f *Fake) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
	f.installed = map[dataplane.ServiceKey]dataplane.Service{}
	return nil
}

// Close implements Dataplane.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Detached and Closed report whether Detach and Close were called.
func (f *Fake) Detached() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.detached }
func (f *Fake) Closed() bool   { f.mu.Lock(); defer f.mu.Unlock(); return f.closed }
