package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	mRecords = prometheus.NewDesc("xlb_sync_records_total",
		"Connection sync records: sent, received, applied, kept_local (this director forwards the flow itself).", []string{"what"}, nil)
	mDatagrams = prometheus.NewDesc("xlb_sync_datagrams_total", "Connection sync datagrams sent and received.", []string{"direction"}, nil)
	mBytes     = prometheus.NewDesc("xlb_sync_sent_bytes_total", "Bytes of connection sync datagrams sent.", nil, nil)
	mDropped   = prometheus.NewDesc("xlb_sync_dropped_total",
		"Connection sync datagrams (size, syncid, version, malformed, hmac, replay, peer) and records (the others) dropped, by reason.", []string{"reason"}, nil)
	mReady   = prometheus.NewDesc("xlb_sync_ready", "1 once this director has its peers' connections (sync_ready).", nil, nil)
	mSending = prometheus.NewDesc("xlb_sync_sending", "1 while this director sends its connections.", nil, nil)
	mAge     = prometheus.NewDesc("xlb_sync_newest_applied_age_seconds", "Age of the newest record applied (absent: none yet).", nil, nil)
	mFast    = prometheus.NewDesc("xlb_sync_dataplane_total",
		"The fast path's part: flows reported, reports lost (overwritten in a CPU's report ring before they were read), imported flows taken over on their first packet here.", []string{"what"}, nil)
	mImported = prometheus.NewDesc("xlb_sync_imported_connections", "Connections imported from peers and held now.", nil, nil)
)

// Describe implements prometheus.Collector.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mRecords, mDatagrams, mBytes, mDropped, mReady, mSending, mAge, mFast, mImported} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	st := n.Status()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	counter(mRecords, st.SentRecords, "sent")
	counter(mRecords, st.ReceivedRecords, "received")
	counter(mRecords, st.Applied, "applied")
	counter(mRecords, st.Local, "kept_local")
	counter(mDatagrams, st.SentDatagrams, "sent")
	counter(mDatagrams, st.ReceivedDatagrams, "received")
	counter(mBytes, st.SentBytes)
	for reason, v := range st.Dropped {
		counter(mDropped, v, reason)
	}
	gauge(mReady, b(st.Ready))
	gauge(mSending, b(st.Sending))
	if !st.NewestApplied.IsZero() {
		gauge(mAge, time.Since(st.NewestApplied).Seconds())
	}
	counter(mFast, st.Dataplane.Reported, "reported")
	counter(mFast, st.Dataplane.Lost, "lost")
	counter(mFast, st.Dataplane.Promoted, "taken_over")
	gauge(mImported, float64(st.Dataplane.Imported))
}
