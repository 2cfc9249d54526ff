package dataplane

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// Fake is an in-memory Dataplane for control-plane tests. It records every
// Apply and the per-service changes it would have made, and serves the
// counters a test sets.
type Fake struct {
	mu        sync.Mutex
	installed map[ServiceKey]Service
	applies   int
	changes   []string
	stats     Stats
	detached  bool
	closed    bool
	// ApplyErr, when set, is returned by the next Apply, which then
	// changes nothing.
	ApplyErr error
}

// NewFake returns an empty fake dataplane.
func NewFake() *Fake {
	return &Fake{installed: map[ServiceKey]Service{}}
}

// Apply implements Dataplane.
func (f *Fake) Apply(_ context.Context, desired []Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ApplyErr; err != nil {
		f.ApplyErr = nil
		return err
	}
	if err := Validate(desired); err != nil {
		return err
	}
	f.applies++
	want := make(map[ServiceKey]Service, len(desired))
	for _, s := range desired {
		want[s.Key] = cloneService(s)
	}
	for _, k := range sortedKeys(f.installed) {
		if _, ok := want[k]; !ok {
			f.changes = append(f.changes, "delete "+k.String())
		}
	}
	for _, k := range sortedKeys(want) {
		old, ok := f.installed[k]
		switch {
		case !ok:
			f.changes = append(f.changes, "create "+k.String())
		case !ServiceEqual(old, want[k]):
			f.changes = append(f.changes, "update "+k.String())
		}
	}
	f.installed = want
	return nil
}

// Installed returns the services as installed, sorted by key.
func (f *Fake) Installed() []Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Service, 0, len(f.installed))
	for _, k := range sortedKeys(f.installed) {
		out = append(out, cloneService(f.installed[k]))
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
func (f *Fake) SetStats(s Stats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats = s
}

// Stats implements Dataplane.
func (f *Fake) Stats(context.Context) (*Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Stats{Services: map[ServiceKey]ServiceStats{}, Verdicts: maps.Clone(f.stats.Verdicts)}
	for k, v := range f.stats.Services {
		v.Backends = maps.Clone(v.Backends)
		s.Services[k] = v
	}
	return &s, nil
}

// Info implements Dataplane.
func (f *Fake) Info() Info { return Info{Mode: "fake"} }

// Detach implements Dataplane.
func (f *Fake) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
	f.installed = map[ServiceKey]Service{}
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

// ServiceEqual reports whether two services are configured identically.
func ServiceEqual(a, b Service) bool {
	if a.Name != b.Name || a.Key != b.Key || a.Scheduler != b.Scheduler || a.Forward != b.Forward ||
		a.Persistence != b.Persistence || a.Enabled != b.Enabled || a.Tunnel != b.Tunnel {
		return false
	}
	return slices.EqualFunc(a.Backends, b.Backends, BackendEqual)
}

// BackendEqual reports whether two backends are configured identically.
func BackendEqual(a, b Backend) bool {
	return a.Addr == b.Addr && a.Port == b.Port && a.Weight == b.Weight &&
		string(a.MAC) == string(b.MAC) && a.Ifindex == b.Ifindex
}

func cloneService(s Service) Service {
	s.Backends = slices.Clone(s.Backends)
	for i := range s.Backends {
		s.Backends[i].MAC = slices.Clone(s.Backends[i].MAC)
	}
	return s
}

func sortedKeys[V any](m map[ServiceKey]V) []ServiceKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b ServiceKey) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return keys
}
