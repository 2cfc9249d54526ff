package control

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xlb-dev/xlb/vrrp"
)

// Metrics is xlb's Prometheus registry. Dataplane counters are read from
// the (per-CPU, summed) BPF maps or IPVS at scrape time: no polling loop.
type Metrics struct {
	Registry       *prometheus.Registry
	reloads        *prometheus.CounterVec
	healthDuration *prometheus.HistogramVec
}

// NewMetrics registers the collectors. status returns the daemon's status
// (counters included); instances the VRRP instances' statuses.
func NewMetrics(status func() *Status, instances func() []vrrp.InstanceStatus) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xlb_config_reloads_total", Help: "Configuration reloads by result (ok, error).",
		}, []string{"result"}),
		healthDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xlb_healthcheck_duration_seconds",
			Help:    "Duration of health checks by type and result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type", "result"}),
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	m.Registry.MustRegister(m.reloads, m.healthDuration, &collector{status: status, instances: instances},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Reload counts a reload.
func (m *Metrics) Reload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
	} else {
		m.reloads.WithLabelValues("ok").Inc()
	}
}

// ObserveCheck records a health check's duration.
func (m *Metrics) ObserveCheck(typ string, d time.Duration, err error) {
	res := "ok"
	if err != nil {
		res = "fail"
	}
	m.healthDuration.WithLabelValues(typ, res).Observe(d.Seconds())
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

var (
	backendLabels = []string{"service", "backend"}
	descs         = struct {
		bePackets, beBytes, beConns, beActive, beInactive, beUp, beWeight, beNoMAC *prometheus.Desc
		svcPackets, svcBytes, svcConns, svcUp, svcForwarding                       *prometheus.Desc
		vrrpState, vrrpPrio, vrrpTrans, vrrpSent, vrrpRecv, vrrpRxErr              *prometheus.Desc
		vrrpSplit, vrrpSplitTotal, dpInfo, packets, events                         *prometheus.Desc
	}{
		bePackets:      prometheus.NewDesc("xlb_backend_packets_total", "Packets forwarded to (in) and, for NAT, from (out) a real server.", append(backendLabels, "direction"), nil),
		beBytes:        prometheus.NewDesc("xlb_backend_bytes_total", "Bytes forwarded to (in) and, for NAT, from (out) a real server.", append(backendLabels, "direction"), nil),
		beConns:        prometheus.NewDesc("xlb_backend_connections_total", "Connections scheduled to a real server.", backendLabels, nil),
		beActive:       prometheus.NewDesc("xlb_backend_active_connections", "Established TCP connections of a real server (ipvsadm ActiveConn).", backendLabels, nil),
		beInactive:     prometheus.NewDesc("xlb_backend_inactive_connections", "Other tracked connections of a real server (ipvsadm InActConn).", backendLabels, nil),
		beUp:           prometheus.NewDesc("xlb_backend_up", "1 if the real server passes its health check.", backendLabels, nil),
		beWeight:       prometheus.NewDesc("xlb_backend_weight", "Weight installed for new flows (0 while unhealthy).", backendLabels, nil),
		beNoMAC:        prometheus.NewDesc("xlb_backend_next_hop_unresolved", "1 while a direct-routing real server's MAC is unknown (it gets no new flows).", backendLabels, nil),
		svcPackets:     prometheus.NewDesc("xlb_service_packets_total", "Packets of a virtual service.", []string{"service", "direction"}, nil),
		svcBytes:       prometheus.NewDesc("xlb_service_bytes_total", "Bytes of a virtual service.", []string{"service", "direction"}, nil),
		svcConns:       prometheus.NewDesc("xlb_service_connections_total", "Connections of a virtual service.", []string{"service"}, nil),
		svcUp:          prometheus.NewDesc("xlb_service_up", "1 if the healthy weight of the service reaches its quorum.", []string{"service"}, nil),
		svcForwarding:  prometheus.NewDesc("xlb_service_forwarding", "1 if this director forwards the service (its VRRP instance is MASTER, or it has none).", []string{"service"}, nil),
		vrrpState:      prometheus.NewDesc("xlb_vrrp_state", "1 for the current state of a VRRP instance.", []string{"instance", "state"}, nil),
		vrrpPrio:       prometheus.NewDesc("xlb_vrrp_priority", "Effective priority of a VRRP instance.", []string{"instance"}, nil),
		vrrpTrans:      prometheus.NewDesc("xlb_vrrp_transitions_total", "State transitions of a VRRP instance.", []string{"instance"}, nil),
		vrrpSent:       prometheus.NewDesc("xlb_vrrp_adverts_sent_total", "Advertisements sent.", []string{"instance"}, nil),
		vrrpRecv:       prometheus.NewDesc("xlb_vrrp_adverts_received_total", "Advertisements received and accepted.", []string{"instance"}, nil),
		vrrpRxErr:      prometheus.NewDesc("xlb_vrrp_rx_errors_total", "Advertisements rejected, by reason (interval_limit: accepted, its VRRPv3 interval bounded).", []string{"instance", "reason"}, nil),
		vrrpSplit:      prometheus.NewDesc("xlb_vrrp_split_brain", "1 while another station answers for this master's addresses.", []string{"instance"}, nil),
		vrrpSplitTotal: prometheus.NewDesc("xlb_vrrp_split_brain_total", "Split-brain episodes detected.", []string{"instance"}, nil),
		dpInfo:         prometheus.NewDesc("xlb_dataplane_info", "The dataplane in use.", []string{"mode", "attach"}, nil),
		packets:        prometheus.NewDesc("xlb_packets_total", "Packets seen by the XDP program, by verdict.", []string{"verdict"}, nil),
		events:         prometheus.NewDesc("xlb_events_total", "What the XDP program did besides its verdicts (fragments followed, ICMP errors relayed, NAT replies adopted...), by event.", []string{"event"}, nil),
	}
)

type collector struct {
	status    func() *Status
	instances func() []vrrp.InstanceStatus
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descs.bePackets, descs.beBytes, descs.beConns, descs.beActive, descs.beInactive, descs.beUp, descs.beWeight, descs.beNoMAC,
		descs.svcPackets, descs.svcBytes, descs.svcConns, descs.svcUp, descs.svcForwarding,
		descs.vrrpState, descs.vrrpPrio, descs.vrrpTrans, descs.vrrpSent, descs.vrrpRecv, descs.vrrpRxErr,
		descs.vrrpSplit, descs.vrrpSplitTotal, descs.dpInfo, descs.packets, descs.events,
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

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if st := c.status(); st != nil {
		gauge(descs.dpInfo, 1, st.Dataplane.Mode, st.Dataplane.Attach)
		for v, n := range st.Verdicts {
			counter(descs.packets, n, v)
		}
		for e, n := range st.Events {
			counter(descs.events, n, e)
		}
		for _, s := range st.Services {
			counter(descs.svcPackets, s.Counters.PacketsIn, s.Name, "in")
			counter(descs.svcPackets, s.Counters.PacketsOut, s.Name, "out")
			counter(descs.svcBytes, s.Counters.BytesIn, s.Name, "in")
			counter(descs.svcBytes, s.Counters.BytesOut, s.Name, "out")
			counter(descs.svcConns, s.Counters.Connections, s.Name)
			gauge(descs.svcUp, boolf(s.Up), s.Name)
			gauge(descs.svcForwarding, boolf(s.Forwarding), s.Name)
			for _, r := range s.Reals {
				counter(descs.bePackets, r.Counters.PacketsIn, s.Name, r.Address, "in")
				counter(descs.bePackets, r.Counters.PacketsOut, s.Name, r.Address, "out")
				counter(descs.beBytes, r.Counters.BytesIn, s.Name, r.Address, "in")
				counter(descs.beBytes, r.Counters.BytesOut, s.Name, r.Address, "out")
				counter(descs.beConns, r.Counters.Connections, s.Name, r.Address)
				gauge(descs.beActive, float64(r.ActiveConns), s.Name, r.Address)
				gauge(descs.beInactive, float64(r.InactiveConns), s.Name, r.Address)
				gauge(descs.beUp, boolf(r.Health == "up"), s.Name, r.Address)
				gauge(descs.beWeight, float64(r.Effective), s.Name, r.Address)
				gauge(descs.beNoMAC, boolf(r.Unresolved), s.Name, r.Address)
			}
		}
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
