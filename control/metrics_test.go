package control

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/vrrp"
)

// testStatus is a master's status: a NAT service with one real server
// down, and one VRRP instance in a split brain.
func testStatus() *Status {
	return &Status{
		Version:   "v1",
		Config:    "/etc/xlb/xlb.toml",
		Dataplane: DataplaneInfo{Mode: "xdp", Attach: "native"},
		Verdicts:  map[string]uint64{"tx": 70, "pass": 3},
		Events:    map[string]uint64{"frag_first": 2, "nat_reply": 40},
		Services: []ServiceInfo{{
			Name: "web", Protocol: "tcp", Address: "10.77.0.100:80", Scheduler: "wrr", Forward: "nat",
			Persistence: 300, Instance: "VI_1", Up: true, Forwarding: true,
			Counters: Counters{Connections: 9, PacketsIn: 70, PacketsOut: 40, BytesIn: 7000, BytesOut: 52000},
			Rates:    &Rates{CPS: 4.5, InPPS: 35, OutPPS: 20, InBPS: 3500, OutBPS: 26000},
			Reals: []RealInfo{
				{Address: "10.78.0.11:8080", Weight: 2, Effective: 2, Health: "up", ActiveConns: 3, InactiveConns: 4,
					Counters: Counters{Connections: 7, PacketsIn: 60, PacketsOut: 35, BytesIn: 6000, BytesOut: 50000},
					Rates:    &Rates{CPS: 3.5, InPPS: 30, OutPPS: 17.5, InBPS: 3000, OutBPS: 25000}},
				{Address: "10.78.0.12:8080", Weight: 1, Effective: 0, Health: "down", HealthError: "connection refused",
					Counters: Counters{Connections: 2, PacketsIn: 10, PacketsOut: 5, BytesIn: 1000, BytesOut: 2000}},
			},
		}},
		VRRP: []InstanceInfo{{Name: "VI_1", Interface: "eth0", VRID: 77, Version: 3, State: "MASTER", Priority: 150,
			EffectivePriority: 130, Master: "10.77.0.2", VIPs: []string{"10.77.0.100/24"}, SplitBrain: true}},
	}
}

// Every metric the operators' dashboards use, with the values of the
// status and VRRP counters it comes from.
func TestMetricsFromStatus(t *testing.T) {
	instances := []vrrp.InstanceStatus{{
		Name: "VI_1", State: vrrp.Master, EffectivePriority: 130, Transitions: 3, AdvertsSent: 1000, AdvertsReceived: 20,
		RxErrors: map[string]uint64{"ttl": 2, "auth": 1}, SplitBrain: true, SplitBrainCount: 1,
		VIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.100/24")},
	}}
	m := NewMetrics(testStatus, func() []vrrp.InstanceStatus { return instances })
	m.Reload(nil)
	m.Reload(nil)
	m.Reload(errors.New("bad file"))
	m.ObserveCheck("http", 0, nil)

	want := `
xlb_backend_packets_total{backend="10.78.0.11:8080",direction="in",service="web"} 60
xlb_backend_packets_total{backend="10.78.0.11:8080",direction="out",service="web"} 35
xlb_backend_bytes_total{backend="10.78.0.12:8080",direction="out",service="web"} 2000
xlb_backend_connections_total{backend="10.78.0.11:8080",service="web"} 7
xlb_backend_active_connections{backend="10.78.0.11:8080",service="web"} 3
xlb_backend_inactive_connections{backend="10.78.0.11:8080",service="web"} 4
xlb_backend_up{backend="10.78.0.11:8080",service="web"} 1
xlb_backend_up{backend="10.78.0.12:8080",service="web"} 0
xlb_backend_weight{backend="10.78.0.12:8080",service="web"} 0
xlb_service_packets_total{direction="in",service="web"} 70
xlb_service_bytes_total{direction="out",service="web"} 52000
xlb_service_connections_total{service="web"} 9
xlb_service_up{service="web"} 1
xlb_service_forwarding{service="web"} 1
xlb_vrrp_state{instance="VI_1",state="master"} 1
xlb_vrrp_state{instance="VI_1",state="backup"} 0
xlb_vrrp_priority{instance="VI_1"} 130
xlb_vrrp_transitions_total{instance="VI_1"} 3
xlb_vrrp_adverts_sent_total{instance="VI_1"} 1000
xlb_vrrp_adverts_received_total{instance="VI_1"} 20
xlb_vrrp_rx_errors_total{instance="VI_1",reason="ttl"} 2
xlb_vrrp_split_brain{instance="VI_1"} 1
xlb_vrrp_split_brain_total{instance="VI_1"} 1
xlb_dataplane_info{attach="native",mode="xdp"} 1
xlb_packets_total{verdict="tx"} 70
xlb_events_total{event="nat_reply"} 40
xlb_config_reloads_total{result="ok"} 2
xlb_config_reloads_total{result="error"} 1
xlb_healthcheck_duration_seconds_count{result="ok",type="http"} 1
`
	var exposition bytes.Buffer
	if _, err := m.WriteTo(&exposition); err != nil {
		t.Fatal(err)
	}
	got := exposition.String()
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("missing: %s", line)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", got)
	}
}

// xlb status prints what ipvsadm -ln, --stats and --rate print, then the
// VRRP instances.
func TestFormatStatusGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Format
	}{{"status.golden", FormatConns}, {"status-stats.golden", FormatStats}, {"status-rate.golden", FormatRate}} {
		var b bytes.Buffer
		if err := FormatStatus(&b, testStatus(), tc.f); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.name, b.String())
	}
}

// ObserveCheck counts each check type's runs by result, making a series
// only for what was observed.
func TestObserveCheck(t *testing.T) {
	m := NewMetrics(testStatus, func() []vrrp.InstanceStatus { return nil })
	for range 3 {
		m.ObserveCheck("tcp", 2*time.Millisecond, nil)
	}
	m.ObserveCheck("tcp", time.Second, errors.New("refused"))
	m.ObserveCheck("tcp", time.Second, errors.New("refused"))
	m.ObserveCheck("http", 30*time.Millisecond, nil)
	var b strings.Builder
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`xlb_healthcheck_duration_seconds_count{result="ok",type="tcp"} 3`,
		`xlb_healthcheck_duration_seconds_count{result="fail",type="tcp"} 2`,
		`xlb_healthcheck_duration_seconds_bucket{result="ok",type="tcp",le="0.0025"} 3`,
		`xlb_healthcheck_duration_seconds_count{result="ok",type="http"} 1`,
	} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("no %s", line)
		}
	}
	if strings.Contains(b.String(), `result="fail",type="http"`) {
		t.Error("a series of http failures, none observed")
	}
}
