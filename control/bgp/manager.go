package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Timer is what AfterFunc returns (time.Timer's Stop).
type Timer interface{ Stop() bool }

// Options configure a Manager.
type Options struct {
	Logger  *slog.Logger
	Speaker SpeakerOptions
	Settings
	// Services returns the services' state now; ok is false until the
	// dataplane has been reconciled once (nothing is known before: no
	// session is opened, so that a restarted director does not tell its
	// routers it has nothing).
	Services func() (services []Service, ok bool)
	// AfterFunc is the clock of the drain; nil: time.AfterFunc.
	AfterFunc func(time.Duration, func()) Timer
}

// Settings are what a reload may change.
type Settings struct {
	Mode      Mode
	DrainTime time.Duration
	VIPs      map[netip.Addr]Attrs
	Peers     []PeerConfig
}

// Manager announces the VIPs: it computes the decision whenever poked
// (the reconciler applied something, a drain moved on) and has the
// speaker apply the difference.
type Manager struct {
	log      *slog.Logger
	sp       *Speaker
	services func() ([]Service, bool)
	after    func(time.Duration, func()) Timer
	poke     chan struct{}
	opts     SpeakerOptions

	mu       sync.Mutex
	set      Settings
	drain    Drain
	timer    Timer
	drained  chan struct{} // closed once a drain has withdrawn and closed the sessions
	shut     bool          // the speaker's sessions are shut down
	started  bool          // peers configured
	peersSet bool          // the peers of set are configured
	last     Decision
	lastErr  error
	applied  int
}

// New starts the speaker; Run opens the sessions once the services are
// known.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Speaker.Logger = opts.Logger
	sp, err := NewSpeaker(opts.Speaker)
	if err != nil {
		return nil, err
	}
	m := &Manager{log: opts.Logger, sp: sp, services: opts.Services, after: opts.AfterFunc, poke: make(chan struct{}, 1),
		set: opts.Settings, opts: opts.Speaker}
	if m.after == nil {
		m.after = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	return m, nil
}

// Poke asks for a new decision soon.
func (m *Manager) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Run applies decisions until ctx is done; failures are retried a second
// later.
func (m *Manager) Run(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if err := m.step(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("BGP: applying the announcements failed, will retry", "error", err)
			retry.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.poke:
		case <-retry.C:
		}
	}
}

// step computes the decision and applies it.
func (m *Manager) step(ctx context.Context) error {
	svcs, ok := m.services()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		return nil
	}
	var errs []error
	if !m.peersSet {
		if err := m.sp.SetPeers(ctx, m.set.Peers); err != nil {
			errs = append(errs, err)
		} else {
			m.peersSet = true
		}
		m.started = true
	}
	d := Decide(Inputs{Mode: m.set.Mode, Drain: m.drain, Services: svcs, VIPs: m.set.VIPs})
	if !equalDecision(d, m.last) {
		for _, v := range d.VIPs {
			m.log.Debug("BGP decision", "vip", v.VIP, "announced", v.Announced, "reason", v.Reason)
		}
	}
	m.last = d
	if err := m.sp.Announce(d.Routes); err != nil {
		errs = append(errs, err)
	}
	if m.drain == Drained && !m.shut {
		if err := m.sp.Shutdown(ctx, "xlb drain: this director is going out of service"); err != nil {
			errs = append(errs, err)
		}
		m.shut = true
		m.log.Info("BGP drained: routes withdrawn, sessions closed (Administrative Shutdown)")
		if m.drained != nil {
			close(m.drained)
			m.drained = nil
		}
	}
	m.applied++
	m.lastErr = errors.Join(errs...)
	return m.lastErr
}

func equalDecision(a, b Decision) bool {
	return slices.EqualFunc(a.VIPs, b.VIPs, func(x, y VIPState) bool { return x == y })
}

// Drain starts a drain: the VIPs are announced with GRACEFUL_SHUTDOWN for
// the drain time, then withdrawn and the sessions closed. The channel is
// closed when that is done (or the drain is cancelled by Undrain).
func (m *Manager) Drain() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	done := make(chan struct{})
	switch m.drain {
	case Drained:
		if m.shut {
			close(done)
			return done
		}
	case Serving:
		m.drain = Draining
		m.log.Info("BGP draining: GRACEFUL_SHUTDOWN announced", "withdrawal_in", m.set.DrainTime)
		m.timer = m.after(m.set.DrainTime, func() {
			m.mu.Lock()
			if m.drain == Draining {
				m.drain = Drained
			}
			m.mu.Unlock()
			m.Poke()
		})
	}
	if m.drained != nil {
		close(m.drained)
	}
	m.drained = done
	m.Poke()
	return done
}

// Undrain ends a drain: the sessions open again and the VIPs are
// announced by the rules.
func (m *Manager) Undrain(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.drain = Serving
	if m.drained != nil {
		close(m.drained)
		m.drained = nil
	}
	var err error
	if m.shut {
		err = m.sp.Resume(ctx)
		m.shut = false
	}
	m.log.Info("BGP undrained: announcing again")
	m.Poke()
	return err
}

// DrainState is where the manager is in a drain.
func (m *Manager) DrainState() Drain {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drain
}

// Reconfigure applies new settings (a reload): peers added, removed or
// changed one by one.
func (m *Manager) Reconfigure(ctx context.Context, s Settings) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set = s
	var err error
	if m.started {
		err = m.sp.SetPeers(ctx, s.Peers)
		m.peersSet = err == nil
	}
	m.Poke()
	return err
}

// Close stops the speaker: with restart, without a NOTIFICATION (graceful
// restart: routers keep the routes while the daemon restarts).
func (m *Manager) Close(ctx context.Context, restart bool) error {
	m.mu.Lock()
	if m.timer != nil {
		m.timer.Stop()
	}
	m.mu.Unlock()
	return m.sp.Stop(ctx, restart)
}

// Status is the BGP section of `xlb status`.
type Status struct {
	ASN      uint32       `json:"asn"`
	RouterID string       `json:"router_id"`
	Announce string       `json:"announce"`
	Drain    string       `json:"drain"`
	Peers    []PeerStatus `json:"peers"`
	VIPs     []VIPState   `json:"vips"`
	Error    string       `json:"error,omitempty"`
}

// Status returns the sessions and the last decision.
func (m *Manager) Status(ctx context.Context) *Status {
	peers := m.sp.Peers(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &Status{ASN: m.opts.ASN, RouterID: m.opts.RouterID.String(), Announce: string(m.set.Mode), Drain: m.drain.String(),
		Peers: peers, VIPs: slices.Clone(m.last.VIPs)}
	if !m.started {
		st.Error = "waiting for the first reconciliation of the dataplane"
	}
	if m.lastErr != nil {
		st.Error = fmt.Sprint(m.lastErr)
	}
	return st
}
