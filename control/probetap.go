package control

import (
	"net/netip"
	"sync"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
)

// probeTap gives the health checks' probers the dataplane's answers to
// their SYNs (dataplane.ProbeTaker: the XDP program takes them off the
// wire, health.ProbeTap).
type probeTap struct {
	dp  dataplane.ProbeTaker
	mu  sync.Mutex
	buf []dataplane.ProbeAnswer
}

func (t *probeTap) WatchProbes(src netip.Addr, port uint16) error {
	return t.dp.WatchProbes(src, port)
}

func (t *probeTap) UnwatchProbes(src netip.Addr, port uint16) error {
	return t.dp.UnwatchProbes(src, port)
}

func (t *probeTap) ReadProbeAnswers(out []health.ProbeAnswer) ([]health.ProbeAnswer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var err error
	t.buf, err = t.dp.ProbeAnswers(t.buf[:0])
	for _, a := range t.buf {
		out = append(out, health.ProbeAnswer(a))
	}
	return out, err
}

// ProbeLinks returns the interfaces the dataplane takes the answers on,
// none when it does not say (health.ProbeLinker).
func (t *probeTap) ProbeLinks() ([]int, error) {
	if pl, ok := t.dp.(dataplane.ProbeLinker); ok {
		return pl.ProbeLinks()
	}
	return nil, nil
}

// startProbeTap has the dataplane take the answers to the tcp checks'
// probes when it can (XDP); otherwise the kernel does, and the probers
// read them from their raw sockets.
func (d *Daemon) startProbeTap() {
	pt, ok := d.dp.(dataplane.ProbeTaker)
	if !ok {
		return
	}
	if err := health.SetProbeTap(&probeTap{dp: pt}); err != nil {
		d.log.Warn("tcp checks: the dataplane cannot take their answers, the kernel does", "error", err)
	}
}

// stopProbeTap gives the answers back to the kernel before the dataplane
// closes: the probers of the tap close (their ports are released after).
func (d *Daemon) stopProbeTap() {
	if _, ok := d.dp.(dataplane.ProbeTaker); ok {
		_ = health.SetProbeTap(nil)
	}
}
