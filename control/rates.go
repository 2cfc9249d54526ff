package control

import (
	"context"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// rateTracker samples the dataplane counters every interval and keeps the
// per-second rates over the last interval (as IPVS's estimators, which
// sample every 2 s), while rates are asked for: a sample of 65,536 real
// servers' counters costs milliseconds, so an idle director takes none.
// The first request after rateIdle without one takes two samples
// rateFirst apart, and sampling goes on until rateIdle passes again.
type rateTracker struct {
	interval time.Duration
	sample   func(context.Context) (*dataplane.Stats, error)

	mu     sync.Mutex
	last   *dataplane.Stats
	at     time.Time
	over   time.Duration // of the rates below
	wanted time.Time     // when rates were last asked for
	svc    map[dataplane.ServiceKey]Rates
	backs  map[dataplane.ServiceKey]map[dataplane.BackendKey]Rates
}

const (
	// rateIdle is how long rates are sampled after they were last asked.
	rateIdle = 10 * time.Minute
	// rateFirst is the interval of the rates of a first request.
	rateFirst = 500 * time.Millisecond
)

func newRateTracker(interval time.Duration, sample func(context.Context) (*dataplane.Stats, error)) *rateTracker {
	return &rateTracker{interval: interval, sample: sample}
}

func (t *rateTracker) run(ctx context.Context) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.mu.Lock()
			idle := time.Since(t.wanted) > rateIdle
			if idle {
				// Nobody looks: forget the samples (their memory too).
				t.last, t.svc, t.backs = nil, nil, nil
			}
			t.mu.Unlock()
			if idle {
				continue
			}
			st, err := t.sample(ctx)
			if err != nil {
				continue
			}
			t.observe(st, time.Now())
		}
	}
}

// want records that rates are asked for, and makes sure there are some:
// after an idle spell it samples twice, rateFirst apart.
func (t *rateTracker) want(ctx context.Context) {
	now := time.Now()
	t.mu.Lock()
	t.wanted = now
	fresh := t.svc != nil && now.Sub(t.at) < 2*t.interval
	t.mu.Unlock()
	if fresh {
		return
	}
	for i := range 2 {
		st, err := t.sample(ctx)
		if err != nil {
			return
		}
		t.observe(st, time.Now())
		if i == 0 {
			select {
			case <-time.After(rateFirst):
			case <-ctx.Done():
				return
			}
		}
	}
}

// rateInterval is the interval of the current rates.
func (t *rateTracker) rateInterval() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over > 0 {
		return t.over.Round(time.Millisecond)
	}
	return t.interval
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
	if t.last != nil && now.After(t.at) {
		secs := now.Sub(t.at).Seconds()
		t.over = now.Sub(t.at)
		t.svc = map[dataplane.ServiceKey]Rates{}
		t.backs = map[dataplane.ServiceKey]map[dataplane.BackendKey]Rates{}
		for k, s := range st.Services {
			prev := t.last.Services[k]
			t.svc[k] = rate(prev.Counters, s.Counters, secs)
			m := map[dataplane.BackendKey]Rates{}
			for i, b := range s.Backends {
				p, _ := prev.Find(b.Key, i)
				m[b.Key] = rate(p.Counters, b.Counters, secs)
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
