package sync

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
)

// Status is the sync's part of `xlb status` and the metrics.
type Status struct {
	Protocol  string `json:"protocol"`
	Interface string `json:"interface"`
	SyncID    uint8  `json:"sync_id"`
	// Role is "master" or "backup" (following a VRRP instance), or
	// "always" (none followed).
	Role    string `json:"role"`
	Sending bool   `json:"sending"`
	// Ready is sync_ready; ReadyHow says how it came: "bulk" (the peers'
	// tables arrived) or "timeout".
	Ready      bool      `json:"sync_ready"`
	ReadySince time.Time `json:"ready_since,omitzero"`
	ReadyHow   string    `json:"ready_how,omitempty"`

	SentDatagrams     uint64 `json:"sent_datagrams"`
	SentRecords       uint64 `json:"sent_records"`
	SentBytes         uint64 `json:"sent_bytes"`
	SendErrors        uint64 `json:"send_errors"`
	ReceivedDatagrams uint64 `json:"received_datagrams"`
	ReceivedRecords   uint64 `json:"received_records"`
	// Applied are the records imported; Local those not, because this
	// director forwards the flow itself.
	Applied uint64            `json:"applied"`
	Local   uint64            `json:"kept_local"`
	Dropped map[string]uint64 `json:"dropped"`
	// NewestApplied is when the last record was applied (zero: never).
	NewestApplied time.Time `json:"newest_applied,omitzero"`
	BulkRequests  uint64    `json:"bulk_requests"`
	Dumps         uint64    `json:"dumps"`
	Peers         []Peer    `json:"peers,omitempty"`
	// Dataplane are the fast path's counts.
	Dataplane dataplane.SyncStats `json:"dataplane"`
}

// Peer is a director heard from (xlb).
type Peer struct {
	Address  netip.Addr `json:"address"`
	Epoch    uint64     `json:"epoch"`
	LastSeen time.Time  `json:"last_seen"`
	Records  uint64     `json:"records"`
}

// Status returns the node's status.
func (n *Node) Status() Status {
	n.mu.Lock()
	c := n.core
	st := Status{
		Protocol: string(n.cfg.Protocol), Interface: n.cfg.Interface, SyncID: n.cfg.SyncID,
		Role: "always", Sending: c.sending, Ready: c.ready, ReadySince: c.readyAt, ReadyHow: c.readyHow,
		ReceivedDatagrams: c.stats.datagrams, ReceivedRecords: c.stats.records,
		Applied: c.stats.applied, Local: c.stats.local, NewestApplied: c.stats.lastApplied,
		BulkRequests: c.stats.bulkRequests, Dumps: c.stats.dumps, Dropped: map[string]uint64{},
	}
	if n.cfg.FollowRole {
		st.Role = "backup"
		if c.master {
			st.Role = "master"
		}
	}
	for _, r := range Reasons() {
		st.Dropped[r.String()] = c.stats.dropped[r]
	}
	for _, a := range slices.SortedFunc(maps.Keys(c.peers), netip.Addr.Compare) {
		w := c.peers[a]
		st.Peers = append(st.Peers, Peer{Address: a, Epoch: w.epoch, LastSeen: w.lastSeen, Records: w.records})
	}
	n.mu.Unlock()
	st.SentDatagrams, st.SentRecords = n.sent.datagrams.Load(), n.sent.records.Load()
	st.SentBytes, st.SendErrors = n.sent.bytes.Load(), n.sent.errors.Load()
	st.Dataplane = n.dp.SyncStats()
	return st
}

// FormatStatus writes the Sync section of `xlb status`.
func FormatStatus(w io.Writer, st *Status, now time.Time) error {
	ready := "no (waiting for the peers' tables)"
	if st.Ready {
		ready = fmt.Sprintf("yes (%s, %s ago)", st.ReadyHow, now.Sub(st.ReadySince).Round(time.Second))
	}
	newest := "never"
	if !st.NewestApplied.IsZero() {
		newest = now.Sub(st.NewestApplied).Round(time.Millisecond).String() + " ago"
	}
	fmt.Fprintf(w, "Sync %s on %s, sync id %d, role %s, sending %v, sync_ready %s\n", st.Protocol, st.Interface, st.SyncID,
		st.Role, st.Sending, ready)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Sent\tReceived\tApplied\tKept local\tNewest applied\tReported\tLost\tTaken over\tImported now\t")
	fmt.Fprintf(tw, "%d (%d B)\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t\n", st.SentRecords, st.SentBytes, st.ReceivedRecords,
		st.Applied, st.Local, newest, st.Dataplane.Reported, st.Dataplane.Lost, st.Dataplane.Promoted, st.Dataplane.Imported)
	if err := tw.Flush(); err != nil {
		return err
	}
	var drops []string
	for _, r := range Reasons() {
		if n := st.Dropped[r.String()]; n > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", r, n))
		}
	}
	if len(drops) > 0 {
		fmt.Fprintf(w, "Dropped: %s\n", strings.Join(drops, ", "))
	}
	for _, p := range st.Peers {
		fmt.Fprintf(w, "Peer %s: %d records, last heard %s ago\n", p.Address, p.Records, now.Sub(p.LastSeen).Round(time.Millisecond))
	}
	return nil
}
