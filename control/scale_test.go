package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

// scaleConfig is services x reals NAT virtual servers (test/scale measures
// the same shape end to end); the last real server's port is port.
func scaleConfig(sock, metrics string, services, reals int, check string, port int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[dataplane]\ninterfaces = [\"eth0\"]\n[metrics]\nlisten = %q\n[control]\nsocket = %q\n", metrics, sock)
	for i := range services {
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"s%d\"\naddress = \"10.200.%d.%d\"\nport = 80\nforward = \"nat\"\n"+
			"[virtual_server.health_check]\ntype = %q\n", i, (i+1)/256, (i+1)%256, check)
		for j := range reals {
			n := i*reals + j
			p := 8080
			if i == services-1 && j == reals-1 {
				p = port
			}
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.201.%d.%d\"\nport = %d\n", n/256%256, n%256, p)
		}
	}
	return b.String()
}

// discardWriter is a ResponseWriter that counts and drops the body.
type discardWriter struct {
	h http.Header
	n int64
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// scaleDaemon runs a daemon with 1,000 services x 64 real servers on a
// fake dataplane whose every counter is set.
func scaleDaemon(b *testing.B) *runningDaemon {
	dp := dataplanetest.NewFake()
	r := startDaemonOn(b, dp, func(sock string) string { return scaleConfig(sock, "", 1000, 64, "none", 8080) }, nil)
	st := dataplane.Stats{Services: map[dataplane.ServiceKey]dataplane.ServiceStats{}, Verdicts: map[string]uint64{"tx": 1}}
	for _, s := range r.d.model.Services {
		ss := dataplane.ServiceStats{Counters: dataplane.Counters{Packets: 1 << 40}, Backends: make([]dataplane.BackendStats, 0, len(s.Reals))}
		for _, rs := range s.Reals {
			ss.Backends = append(ss.Backends, dataplane.BackendStats{Key: rs.Key(), Counters: dataplane.Counters{Packets: 1 << 30, Bytes: 1 << 40, Connections: 12345}, ActiveConns: 3})
		}
		st.Services[s.Key] = ss
	}
	dp.SetStats(st)
	deadline := time.Now().Add(time.Minute)
	for dp.Applies() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

func BenchmarkScaleStatus(b *testing.B) {
	r := scaleDaemon(b)
	b.ReportAllocs()
	for b.Loop() {
		st := r.d.Status(false)
		if err := json.NewEncoder(io.Discard).Encode(&Response{OK: true, Status: st}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScaleMetrics(b *testing.B) {
	r := scaleDaemon(b)
	h := r.d.metrics.Handler()
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		b.SetBytes(w.n)
	}
}

func BenchmarkScaleReload(b *testing.B) {
	r := scaleDaemon(b)
	b.ReportAllocs()
	port := 8080
	for b.Loop() {
		port ^= 1
		b.StopTimer()
		writeFile(b, r.path, scaleConfig(r.sock, "", 1000, 64, "none", port))
		b.StartTimer()
		if err := r.d.Reload(); err != nil {
			b.Fatal(err)
		}
		if err := r.d.rec.Reconcile(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	_ = filepath.Join
	_ = netip.Addr{}
}

// BenchmarkScaleStatusText is `xlb status` (its text) at 64,000 real
// servers, as the socket writes it.
func BenchmarkScaleStatusText(b *testing.B) {
	r := scaleDaemon(b)
	b.ReportAllocs()
	for b.Loop() {
		st, services := r.d.StatusServices(false)
		w := &discardWriter{h: http.Header{}}
		if err := streamStatus(w, st, services, "text"); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(w.n))
	}
}

// BenchmarkRoundOneCheck: a reconciler's round after one check of 64,000
// (1,000 services x 64 real servers) changed state, on a fake dataplane:
// incremental (that service computed alone), and whole (every service
// computed, as every round was before incremental rounds: here because
// the overrides are set again before each round). The dataplane applies
// nothing (the fake's Apply copies and compares every service).
func BenchmarkRoundOneCheck(b *testing.B) {
	cfg, err := config.Parse("scale.toml", []byte(scaleConfig("/run/x.sock", "", 1000, 64, "tcp", 8080)), nil)
	if err != nil {
		b.Fatal(err)
	}
	m := ModelFromConfig(cfg)
	n := 0
	for _, s := range m.Services {
		for _, rs := range s.Reals {
			n = max(n, int(rs.checkIdx))
		}
	}
	states := make([]health.State, n)
	for i := range states {
		states[i] = health.StateUp
	}
	for _, mode := range []string{"incremental", "whole"} {
		b.Run(mode, func(b *testing.B) {
			r := NewReconciler(applyNothing{dataplanetest.NewFake()}, ReconcilerOptions{
				HealthOrdered: func(order uint64, dst []health.State) ([]health.State, bool) {
					return append(dst[:0], states...), order == m.checkOrder
				}})
			r.SetModel(m)
			if err := r.Reconcile(b.Context()); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i = (i + 4099) % len(states) // one check, another service each time
				if states[i] == health.StateUp {
					states[i] = health.StateDown
				} else {
					states[i] = health.StateUp
				}
				if mode == "whole" {
					r.SetOverrides(nil)
				}
				if err := r.Reconcile(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.computed), "services/round")
		})
	}
}

// applyNothing is a dataplane whose Apply does nothing.
type applyNothing struct{ *dataplanetest.Fake }

func (applyNothing) Apply(context.Context, []dataplane.Service) error { return nil }
