package control

import (
	"context"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// rateTracker samples the dataplane counters every interval and keeps the
// per-second rates over the last interval (as IPVS's estimators, which
// sample every 2 s).
type rateTracker struct {
	interval time.Duration

	mu    sync.Mutex
	last  *dataplane.Stats
	at    time.Time
	svc   map[dataplane.ServiceKey]Rates
	backs map[dataplane.ServiceKey]map[dataplane.BackendKey]Rates
}

func newRateTracker(interval time.Duration) *rateTracker {
	return &rateTracker{interval: interval}
}

func (t *rateTracker) run(ctx context.Context, sample func(context.Context) (*dataplane.Stats, error)) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			st, err := sample(ctx)
			if err != nil {
				continue
			}
			t.observe(st, time.Now())
		}
	}
}

func rate(a, b dataplane.Counters, secs float64) Rates {
	d := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return float64(y-x) / secs
	}
	return Rates{
		CPS:    d(a.Connections, b.Connections),
		InPPS:  d(a.Packets, b.Packets),
		OutPPS: d(a.PacketsOut, b.PacketsOut),
		InBPS:  d(a.Bytes, b.Bytes),
		OutBPS: d(a.BytesOut, b.BytesOut),
	}
}

func (t *rateTracker) observe(st *dataplane.Stats, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last != nil {
		secs := now.Sub(t.at).Seconds()
		t.svc = map[dataplane.ServiceKey]Rates{}
		t.backs = map[dataplane.ServiceKey]map[dataplane.BackendKey]Rates{}
		for k, s := range st.Services {
			prev := t.last.Services[k]
			t.svc[k] = rate(prev.Counters, s.Counters, secs)
			m := map[dataplane.BackendKey]Rates{}
			for bk, b := range s.Backends {
				m[bk] = rate(prev.Backends[bk].Counters, b.Counters, secs)
			}
			t.backs[k] = m
		}
	}
	t.last, t.at = st, now
}

func (t *rateTracker) service(k dataplane.ServiceKey) *Rates {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.svc[k]; ok {
		return &r
	}
	return &Rates{}
}

func (t *rateTracker) backend(k dataplane.ServiceKey, b dataplane.BackendKey) *Rates {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.backs[k][b]; ok {
		return &r
	}
	return &Rates{}
}
