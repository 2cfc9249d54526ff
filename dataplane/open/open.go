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

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/ipvs"
	"github.com/xlb-dev/xlb/dataplane/xdp"
)

// Dataplane opens the dataplane c.Mode asks for. With mode = "auto" a
// failure of XDP (no BPF permission, an old kernel, a verifier rejection)
// is logged and IPVS is used instead; a pin path in use by another daemon
// is not a failure to fall back from.
func Dataplane(c config.Dataplane, log *slog.Logger) (dataplane.Dataplane, error) {
	openXDP := func() (dataplane.Dataplane, error) {
		return xdp.Open(xdp.Options{
			Interfaces: c.Interfaces, Mode: c.XDPMode, PinPath: c.PinPath, MountBPFFS: true, Logger: log,
			TCPTimeout: c.TCPTimeout, TCPFinTimeout: c.TCPFinTimeout, UDPTimeout: c.UDPTimeout,
		})
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
