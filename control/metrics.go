package control

import (
	"bufio"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/vrrp"
)

// Metrics is xlb's Prometheus metrics. The series of the services and
// real servers (65,536 real servers make 650,000 series, 50 MB of text)
// are written as they are produced, from one status per scrape, never
// built whole in memory; the rest (reloads, health-check durations, the
// control socket, VRRP, Go and the process) are a Prometheus registry.
// Dataplane counters are read from the (per-CPU, summed) BPF maps or IPVS
// at scrape time: no polling loop.
type Metrics struct {
	Registry       *prometheus.Registry
	reloads        *prometheus.CounterVec
	lastReload     prometheus.Gauge
	healthDuration *prometheus.HistogramVec
	status         func() *Status

	// durations are healthDuration's series by check type, ok and fail,
	// each made at its first observation: 12,800 checks a second looked
	// their labels up (hashed and validated them) at every run.
	durMu     sync.RWMutex
	durations map[string]*[2]prometheus.Observer
}

// NewMetrics registers the collectors. status returns the daemon's status
// (counters included); instances the VRRP instances' statuses.
func NewMetrics(status func() *Status, instances func() []vrrp.InstanceStatus) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_config_reloads_total", Help: "Configuration reloads by result (ok, error).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xlb_config_last_reload_successful", Help: "1 if the last configuration reload succeeded (or none failed since the start), 0 if it failed and the previous configuration still serves.",
		}),
		healthDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xlb_healthcheck_duration_seconds",
			Help:    "Duration of health checks by type and result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type", "result"}),
		status: status,
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	m.lastReload.Set(1)
	deferred := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xlb_healthcheck_syns_deferred_total",
		Help: "Times a tcp check's SYN found no room on its interface (ENOBUFS: a veth's ring or a queue full) and was sent again a little later (1 ms, doubling).",
	}, func() float64 { return float64(health.SYNsDeferred()) })
	m.Registry.MustRegister(m.reloads, m.lastReload, m.healthDuration, deferred, &vrrpCollector{instances: instances},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Reload counts a reload.
func (m *Metrics) Reload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		m.lastReload.Set(0)
	} else {
		m.reloads.WithLabelValues("ok").Inc()
		m.lastReload.Set(1)
	}
}

// ObserveCheck records a health check's duration.
func (m *Metrics) ObserveCheck(typ string, d time.Duration, err error) {
	i := 0
	if err != nil {
		i = 1
	}
	m.durMu.RLock()
	var o prometheus.Observer
	if s := m.durations[typ]; s != nil {
		o = s[i]
	}
	m.durMu.RUnlock()
	if o == nil {
		o = m.durationSeries(typ, i)
	}
	o.Observe(d.Seconds())
}

// durationSeries makes the series ObserveCheck had not made yet.
func (m *Metrics) durationSeries(typ string, i int) prometheus.Observer {
	m.durMu.Lock()
	defer m.durMu.Unlock()
	if m.durations == nil {
		m.durations = map[string]*[2]prometheus.Observer{}
	}
	s := m.durations[typ]
	if s == nil {
		s = new([2]prometheus.Observer)
		m.durations[typ] = s
	}
	if s[i] == nil {
		s[i] = m.healthDuration.WithLabelValues(typ, [2]string{"ok", "fail"}[i])
	}
	return s[i]
}

// Handler serves /metrics in the text exposition format, compressed (gzip,
// fastest level) when the scraper accepts it, as Prometheus does.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		h.Set("Vary", "Accept-Encoding")
		var out io.Writer = w
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer gz.Close()
			out = gz
		}
		if _, err := m.WriteTo(out); err != nil {
			// Headers are out: the scraper sees a truncated body.
			return
		}
	})
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && !strings.Contains(strings.ReplaceAll(q, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// WriteTo writes every metric in the text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	mfs, err := m.Registry.Gather()
	if err != nil {
		return cw.n, err
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(bw, mf); err != nil {
			return cw.n, err
		}
	}
	if st := m.status(); st != nil {
		writeStatusMetrics(bw, st)
	}
	err = bw.Flush()
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var descs = struct {
	vrrpState, vrrpPrio, vrrpTrans, vrrpSent, vrrpRecv, vrrpRxErr, vrrpSplit, vrrpSplitTotal *prometheus.Desc
}{
	vrrpState:      prometheus.NewDesc("xlb_vrrp_state", "1 for the current state of a VRRP instance.", []string{"instance", "state"}, nil),
	vrrpPrio:       prometheus.NewDesc("xlb_vrrp_priority", "Effective priority of a VRRP instance.", []string{"instance"}, nil),
	vrrpTrans:      prometheus.NewDesc("xlb_vrrp_transitions_total", "State transitions of a VRRP instance.", []string{"instance"}, nil),
	vrrpSent:       prometheus.NewDesc("xlb_vrrp_adverts_sent_total", "Advertisements sent.", []string{"instance"}, nil),
	vrrpRecv:       prometheus.NewDesc("xlb_vrrp_adverts_received_total", "Advertisements received and accepted.", []string{"instance"}, nil),
	vrrpRxErr:      prometheus.NewDesc("xlb_vrrp_rx_errors_total", "Advertisements rejected, by reason (interval_limit: accepted, its VRRPv3 interval bounded).", []string{"instance", "reason"}, nil),
	vrrpSplit:      prometheus.NewDesc("xlb_vrrp_split_brain", "1 while another station answers for this master's addresses.", []string{"instance"}, nil),
	vrrpSplitTotal: prometheus.NewDesc("xlb_vrrp_split_brain_total", "Split-brain episodes detected.", []string{"instance"}, nil),
}

// vrrpCollector collects the VRRP instances' series.
type vrrpCollector struct {
	instances func() []vrrp.InstanceStatus
}

func (c *vrrpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descs.vrrpState, descs.vrrpPrio, descs.vrrpTrans, descs.vrrpSent, descs.vrrpRecv, descs.vrrpRxErr,
		descs.vrrpSplit, descs.vrrpSplitTotal,
	} {
		ch <- d
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *vrrpCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.instances == nil {
		return
	}
	for _, in := range c.instances() {
		for _, s := range []vrrp.State{vrrp.Init, vrrp.Backup, vrrp.Master, vrrp.Fault} {
			gauge(descs.vrrpState, boolf(in.State == s), in.Name, strings.ToLower(s.String()))
		}
		gauge(descs.vrrpPrio, float64(in.EffectivePriority), in.Name)
		counter(descs.vrrpTrans, in.Transitions, in.Name)
		counter(descs.vrrpSent, in.AdvertsSent, in.Name)
		counter(descs.vrrpRecv, in.AdvertsReceived, in.Name)
		for reason, n := range in.RxErrors {
			counter(descs.vrrpRxErr, n, in.Name, reason)
		}
		gauge(descs.vrrpSplit, boolf(in.SplitBrain), in.Name)
		counter(descs.vrrpSplitTotal, in.SplitBrainCount, in.Name)
	}
}
