package control

import (
	"errors"
	"fmt"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/dataplane"
)

// CheckConfig checks what config.Load cannot: the VRRP configuration as a
// whole, and the limits of a dataplane (zero Limits: none). `xlb check`,
// the daemon's start and every reload call it before anything is applied.
func CheckConfig(path string, cfg *config.Config, lim dataplane.Limits) error {
	return checkModel(path, cfg, ModelFromConfig(cfg), lim)
}

// checkModel is CheckConfig with the configuration's model made already.
func checkModel(path string, cfg *config.Config, m Model, lim dataplane.Limits) error {
	vc := VRRPFromConfig(cfg)
	if err := vc.Validate(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return checkLimits(path, cfg, m, lim)
}

// CheckLimits returns every limit of a dataplane that the configuration
// exceeds, one error per line, each naming the limit, the count configured
// and the maximum: "FILE: 1102 virtual servers, the XDP dataplane holds at
// most 1024", or "FILE:LINE: virtual server ..." for a limit of one
// virtual server.
func CheckLimits(path string, cfg *config.Config, lim dataplane.Limits) error {
	return checkLimits(path, cfg, ModelFromConfig(cfg), lim)
}

func checkLimits(path string, cfg *config.Config, m Model, lim dataplane.Limits) error {
	if lim.Services == 0 && lim.BackendsPerService == 0 && lim.Backends == 0 && lim.NATBackends == 0 && lim.Interfaces == 0 {
		// No limit (the daemon's start, before its dataplane is open):
		// not 65,536 Backends made to be counted against none.
		return nil
	}
	err := lim.Check(m.dataplaneServices(), len(cfg.Dataplane.Interfaces))
	if err == nil {
		return nil
	}
	line := map[string]int{}
	for _, s := range m.Services {
		line[s.Name] = s.Line
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap() // Check joins them
	}
	var errs []error
	for _, e := range all {
		if le, ok := e.(*dataplane.LimitError); ok && le.Service != "" {
			errs = append(errs, fmt.Errorf("%s:%d: %w", path, line[le.Service], e))
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", path, e))
		}
	}
	return errors.Join(errs...)
}
