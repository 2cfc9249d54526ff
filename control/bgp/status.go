package bgp

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FormatStatus writes the BGP section of `xlb status`: the sessions, then
// each VIP and why it is or is not announced.
func FormatStatus(w io.Writer, st *Status, now time.Time) error {
	fmt.Fprintf(w, "BGP AS %d, router id %s, announce %s, %s\n", st.ASN, st.RouterID, st.Announce, st.Drain)
	if st.Error != "" {
		fmt.Fprintf(w, "BGP error: %s\n", st.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Peer\tAS\tState\tFor\tBFD\tSent\tLast error\t")
	for _, p := range st.Peers {
		state := p.State
		if p.AdminDown {
			state += " (shut down)"
		}
		since := "-"
		if !p.Since.IsZero() {
			since = now.Sub(p.Since).Round(time.Second).String()
		}
		bfd := p.BFD
		if bfd == "" {
			bfd = "off"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t\n", p.Address, p.ASN, state, since, bfd, p.Advertised, p.LastError)
	}
	fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
	fmt.Fprintln(tw, "VIP\tAnnounced\tWhy\t\t\t\t\t")
	for _, v := range st.VIPs {
		yes := "no"
		if v.Announced {
			yes = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t\n", v.VIP, yes, v.Reason)
	}
	return tw.Flush()
}

var (
	peerUpDesc    = prometheus.NewDesc("xlb_bgp_peer_up", "1 while the BGP session with the peer is established.", []string{"peer"}, nil)
	bfdUpDesc     = prometheus.NewDesc("xlb_bgp_bfd_up", "1 while the BFD session with the peer is up (peers with BFD only).", []string{"peer"}, nil)
	announcedDesc = prometheus.NewDesc("xlb_bgp_announced", "1 while the VIP is announced.", []string{"vip"}, nil)
	drainDesc     = prometheus.NewDesc("xlb_bgp_drain", "1 for the drain state (serving, draining, drained).", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peerUpDesc, bfdUpDesc, announcedDesc, drainDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := m.Status(ctx)
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, b(p.State == "established"), p.Address)
		if p.BFD != "" {
			ch <- prometheus.MustNewConstMetric(bfdUpDesc, prometheus.GaugeValue, b(p.BFD == "up"), p.Address)
		}
	}
	for _, v := range st.VIPs {
		ch <- prometheus.MustNewConstMetric(announcedDesc, prometheus.GaugeValue, b(v.Announced), v.VIP.String())
	}
	for _, d := range []Drain{Serving, Draining, Drained} {
		ch <- prometheus.MustNewConstMetric(drainDesc, prometheus.GaugeValue, b(st.Drain == d.String()), d.String())
	}
}
