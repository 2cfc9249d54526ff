// Package open opens the dataplane a configuration asks for: XDP, IPVS, or
// (mode = "auto") XDP falling back to IPVS. It is the one place that knows
// every implementation; the control plane drives whichever it returns
// through the dataplane.Dataplane interface and its Capabilities. A new
// dataplane is added here.
package open

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/ipvs"
	"github.com/xlb-dev/xlb/dataplane/xdp"
)

// Dataplane opens the dataplane c.Mode asks for. With mode = "auto" a
// failure of XDP (no BPF permission, an old kernel, a verifier rejection)
// is logged and IPVS is used instead; a pin path in use by another daemon
// is not a failure to fall back from.
//
// pre, when not nil, is the XDP program and maps Preload loaded: taken when
// they were loaded for c (its pin path), closed otherwise.
func Dataplane(c config.Dataplane, log *slog.Logger, pre *Pending) (dataplane.Dataplane, error) {
	openXDP := func() (dataplane.Dataplane, error) {
		return xdp.Open(xdp.Options{
			Interfaces: c.Interfaces, Mode: c.XDPMode, PinPath: c.PinPath, MountBPFFS: true, Logger: log,
			TCPTimeout: c.TCPTimeout, TCPFinTimeout: c.TCPFinTimeout, UDPTimeout: c.UDPTimeout,
			Preloaded: pre.wait(log),
		})
	}
	if c.Mode == config.ModeIPVS {
		pre.Close()
	}
	switch c.Mode {
	case config.ModeXDP:
		dp, err := openXDP()
		if err != nil {
			return nil, fmt.Errorf("XDP dataplane (mode = \"xdp\"): %w", err)
		}
		return dp, nil
	case config.ModeIPVS:
		dp, err := ipvs.New(ipvs.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("IPVS dataplane (mode = \"ipvs\"): %w", err)
		}
		return dp, nil
	}
	dp, xerr := openXDP()
	if xerr == nil {
		return dp, nil
	}
	if errors.Is(xerr, xdp.ErrPinPathInUse) {
		return nil, xerr // another daemon runs this dataplane: IPVS would compete with it
	}
	log.Warn("XDP dataplane unavailable, falling back to IPVS", "error", xerr)
	dp, ierr := ipvs.New(ipvs.Options{Logger: log})
	if ierr != nil {
		return nil, fmt.Errorf("no dataplane: XDP: %v; IPVS: %w", xerr, ierr)
	}
	return dp, nil
}

// Limits are the limits of the dataplane mode asks for, without opening it
// (`xlb check`). With mode = "auto" they are XDP's, which is tried first
// (IPVS, the fallback, has none), and the message says so.
func Limits(mode config.Mode) dataplane.Limits {
	switch mode {
	case config.ModeIPVS:
		return ipvs.Limits
	case config.ModeXDP:
		return xdp.Limits
	}
	l := xdp.Limits
	l.Dataplane += ` (tried first with mode = "auto")`
	return l
}

// Pending is an XDP program and its maps being loaded (Preload).
type Pending struct {
	done chan struct{}
	pre  *xdp.Preloaded
	err  error
	took time.Duration
}

// Preload starts loading the XDP program and maps that c asks for, while
// the caller does something else (the daemon reads the rest of its
// configuration: 200,000 lines take about as long as the verifier).
// Nothing is attached, and no pinned map is written. Dataplane takes them,
// or Close releases them. It returns nil when c does not use XDP.
func Preload(c config.Dataplane, log *slog.Logger) *Pending {
	if c.Mode == config.ModeIPVS {
		return nil
	}
	p := &Pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		start := time.Now()
		p.pre, p.err = xdp.Preload(xdp.Options{PinPath: c.PinPath, MountBPFFS: true, Logger: log})
		p.took = time.Since(start)
	}()
	return p
}

// wait waits for the load and returns it; nil if it failed (logged: Open
// tries again, and says why).
func (p *Pending) wait(log *slog.Logger) *xdp.Preloaded {
	if p == nil {
		return nil
	}
	<-p.done
	if p.err != nil {
		log.Debug("XDP program not preloaded", "error", p.err)
		return nil
	}
	log.Debug("XDP program preloaded", "took", p.took.Round(time.Millisecond))
	return p.pre
}

// Close releases what was loaded, unless Dataplane took it. A nil Pending
// is none.
func (p *Pending) Close() {
	if p == nil {
		return
	}
	<-p.done
	p.pre.Close()
}
