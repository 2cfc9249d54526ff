package vrrp

import "time"

// Tracking: track scripts with fall and rise, tracked interfaces, and the
// effective priority and own fault they give an instance.

// scriptState follows a track script's results with fall and rise.
type scriptState struct {
	cfg    ScriptConfig
	known  bool
	good   bool
	streak int // consecutive results contradicting good
}

// observe records one run and reports whether the tracked state changed.
func (s *scriptState) observe(ok bool) bool {
	if !s.known {
		s.known, s.good, s.streak = true, ok, 0
		return true
	}
	if ok == s.good {
		s.streak = 0
		return false
	}
	s.streak++
	need := s.cfg.Fall
	if ok {
		need = s.cfg.Rise
	}
	if s.streak < need {
		return false
	}
	s.good, s.streak = ok, 0
	return true
}

func (c *core) setScripts(scs []ScriptConfig) {
	old := c.scripts
	c.scripts = map[string]*scriptState{}
	for _, sc := range scs {
		if s, ok := old[sc.Name]; ok && s.cfg.Script == sc.Script {
			s.cfg = sc // keep the result across a reload
			c.scripts[sc.Name] = s
			continue
		}
		c.scripts[sc.Name] = &scriptState{cfg: sc}
	}
}

func (c *core) trackingKnown(in *instance) bool {
	for _, ts := range in.cfg.TrackScripts {
		if s := c.scripts[ts.Name]; s != nil && !s.known {
			return false
		}
	}
	return true
}

// evalTracking recomputes in's own fault and effective priority.
func (c *core) evalTracking(in *instance) {
	var faults []string
	weight := 0
	if up, ok := c.links[in.cfg.Interface]; ok && !up {
		faults = append(faults, "interface "+in.cfg.Interface+" down")
	}
	for _, ti := range in.cfg.TrackInterfaces {
		up, ok := c.links[ti.Name]
		up = up || !ok
		switch {
		case ti.Weight == 0 && !up:
			faults = append(faults, "tracked interface "+ti.Name+" down")
		case ti.Weight > 0 && up, ti.Weight < 0 && !up:
			weight += ti.Weight
		}
	}
	for _, ts := range in.cfg.TrackScripts {
		s := c.scripts[ts.Name]
		if s == nil || !s.known {
			continue
		}
		w := s.cfg.Weight
		if ts.Weight != nil {
			w = *ts.Weight
		}
		switch {
		case w == 0 && !s.good:
			faults = append(faults, "script "+ts.Name+" failed")
		case w > 0 && s.good, w < 0 && !s.good:
			weight += w
		}
	}
	in.faults, in.ownFault = faults, len(faults) > 0
	if in.cfg.Priority == priorityOwner {
		in.effPrio = priorityOwner
		if in.ownerConflict {
			in.effPrio = priorityOwner - 1
		}
		return
	}
	in.effPrio = uint8(min(max(int(in.cfg.Priority)+weight, 1), 254))
}

// retrack re-evaluates tracking for every instance and applies changes.
func (c *core) retrack(now time.Time) []action {
	for _, in := range c.insts {
		if in.state != Init {
			c.evalTracking(in)
		}
	}
	var acts []action
	for _, in := range c.insts {
		switch {
		case in.state == Init:
			if !in.since.IsZero() {
				acts = append(acts, c.startInstance(now, in)...)
			}
		case in.ownFault && in.state != Fault:
			acts = append(acts, c.enterFault(now, in, ReasonTracking)...)
		case !in.ownFault && in.state == Fault && !c.groupHasFault(in):
			acts = append(acts, c.leaveFault(now, in, ReasonTracking)...)
		}
	}
	return acts
}

// scriptResult records one run of a track script; a result of a command
// that a reload replaced is ignored.
func (c *core) scriptResult(now time.Time, r scriptRan) []action {
	s := c.scripts[r.name]
	if s == nil || s.cfg.Script != r.script || !s.observe(r.ok) {
		return nil
	}
	return c.retrack(now)
}

// linkState records whether an interface is up (IFF_UP and IFF_RUNNING).
func (c *core) linkState(now time.Time, ifname string, up bool) []action {
	if old, ok := c.links[ifname]; ok && old == up {
		return nil
	}
	c.links[ifname] = up
	return c.retrack(now)
}
