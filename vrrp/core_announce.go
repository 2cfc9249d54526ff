package vrrp

import (
	"slices"
	"time"
)

// Announcements of a master's VIPs: gratuitous ARP / unsolicited NA
// bursts, their delayed repeat and the periodic refresh.

// scheduleBurst queues a burst of n announcements starting at start,
// spaced by garp_interval (gna_interval for IPv6).
func (in *instance) scheduleBurst(start time.Time, n int) {
	iv := in.cfg.GARP.Interval
	if in.cfg.is6() {
		iv = in.cfg.GARP.NAInterval
	}
	if n <= 0 {
		return
	}
	if iv <= 0 {
		in.announces = insertAnnounce(in.announces, announceItem{start, n})
		return
	}
	for k := range n {
		in.announces = insertAnnounce(in.announces, announceItem{start.Add(time.Duration(k) * iv), 1})
	}
}

// dueAnnounces pops the announcements due at now (bursts and refresh) into
// one action.
func (in *instance) dueAnnounces(now time.Time) []action {
	n := 0
	for len(in.announces) > 0 && !now.Before(in.announces[0].at) {
		n += in.announces[0].count
		in.announces = in.announces[1:]
	}
	if !in.refreshAt.IsZero() && !now.Before(in.refreshAt) {
		n += in.cfg.GARP.MasterRefreshRepeat
		in.refreshAt = now.Add(in.cfg.GARP.MasterRefresh)
	}
	if n == 0 {
		return nil
	}
	return []action{{kind: actAnnounce, inst: in.name(), count: n}}
}

func insertAnnounce(q []announceItem, it announceItem) []announceItem {
	i, _ := slices.BinarySearchFunc(q, it, func(a, b announceItem) int { return a.at.Compare(b.at) })
	return slices.Insert(q, i, it)
}
