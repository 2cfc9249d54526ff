// Package prometheus runs Debian's Prometheus server against a lab
// director and reads what it stored through its HTTP API: what operators'
// dashboards and alerts see of xlb.
package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control"
	"github.com/xlb-dev/xlb/test/lab"
	"github.com/xlb-dev/xlb/test/nettest"
)

// server is a Prometheus server running in a director's namespace.
type server struct {
	t  *testing.T
	ns *nettest.NS
}

// startPrometheus runs prometheus in ns, scraping the director's /metrics
// every second (job "xlb") and evaluating xlb's alerting rules, with its
// storage in a temporary directory.
func startPrometheus(t *testing.T, ns *nettest.NS) *server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus (Debian's package) is not installed: run .ci/deps")
	}
	_, self, _, _ := runtime.Caller(0)
	rules, err := filepath.Abs(filepath.Join(filepath.Dir(self), "../../control/alerts/xlb.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: xlb
    static_configs:
      - targets: ["127.0.0.1:9477"]
`, rules)), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Start(t, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090", "--log.level=warn")
	return &server{t: t, ns: ns}
}

// get fetches a path of the Prometheus API, from inside its namespace.
func (s *server) get(path string, out any) error {
	var conn net.Conn
	if err := s.ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9090", time.Second)
		return err
	}); err != nil {
		return err
	}
	defer conn.Close()
	c := http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:9090" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) float() float64 {
	v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
	return v
}

// query evaluates an instant query.
func (s *server) query(q string) ([]sample, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := s.get("/api/v1/query?query="+url.QueryEscape(q), &r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: status %s", q, r.Status)
	}
	return r.Data.Result, nil
}

// value waits until q has exactly one sample equal to want.
func (s *server) value(q string, want float64) {
	s.t.Helper()
	nettest.WaitFor(s.t, 30*time.Second, q, func() error {
		res, err := s.query(q)
		switch {
		case err != nil:
			return err
		case len(res) != 1:
			return fmt.Errorf("%d samples: %v", len(res), res)
		case res[0].float() != want:
			return fmt.Errorf("%v, want %v", res[0].float(), want)
		}
		return nil
	})
}

// Prometheus scrapes a master director after real traffic and stores
// what its status says: the per-backend connection and packet counters,
// xlb_backend_up, the VRRP state of both directors' instance (the VRRP
// instance's label arrives as exported_instance) and the verdict
// counters; the alerting rules load and evaluate against the scraped
// series, and a real server that stops serving makes XlbRealServerDown
// pending.
func TestPrometheusScrapesDirector(t *testing.T) {
	l := lab.New(t, lab.Spec{Directors: 2, Reals: 2, Scheduler: "rr"})
	defer func() {
		if t.Failed() {
			t.Log(l.Logs())
		}
	}()
	for _, d := range l.Directors {
		d.Start()
	}
	master := l.Directors[0]
	l.WaitMaster(master, 30*time.Second)
	nettest.WaitFor(t, 30*time.Second, "a request through the VIP", func() error {
		_, err := l.Get(time.Second)
		return err
	})
	const n = 20
	for range n {
		if _, err := l.Get(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	prom := startPrometheus(t, master.NS)

	var web *control.ServiceInfo
	var st *control.Status
	nettest.WaitFor(t, 20*time.Second, "the status after the traffic", func() error {
		var err error
		if st, err = master.Status(); err != nil {
			return err
		}
		for i := range st.Services {
			if st.Services[i].Name == "web" {
				web = &st.Services[i]
			}
		}
		if web == nil || web.Counters.Connections < n {
			return fmt.Errorf("web: %+v", web)
		}
		return nil
	})
	for _, r := range web.Reals {
		sel := fmt.Sprintf(`{job="xlb",service="web",backend=%q}`, r.Address)
		prom.value("xlb_backend_connections_total"+sel, float64(r.Counters.Connections))
		prom.value(`xlb_backend_packets_total{job="xlb",service="web",backend=`+strconv.Quote(r.Address)+`,direction="in"}`, float64(r.Counters.PacketsIn))
		prom.value("xlb_backend_up"+sel, 1)
		prom.value("xlb_backend_weight"+sel, 1)
	}
	prom.value(`xlb_service_connections_total{service="web"}`, float64(web.Counters.Connections))
	prom.value(`sum(xlb_backend_connections_total{service="web"})`, float64(web.Counters.Connections))
	prom.value(`xlb_packets_total{verdict="tx"}`, float64(st.Verdicts["tx"]))
	prom.value(`xlb_vrrp_state{exported_instance="VI_1",state="master"}`, 1)
	prom.value(`xlb_vrrp_state{exported_instance="VI_1",state="backup"}`, 0)
	prom.value(`xlb_config_last_reload_successful`, 1)
	prom.value(`xlb_dataplane_fallback`, 0)
	prom.value(`up{job="xlb"}`, 1)

	// The rules load, and evaluate against these series without error.
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name   string `json:"name"`
					Health string `json:"health"`
					Error  string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	nettest.WaitFor(t, 20*time.Second, "the rules evaluated", func() error {
		if err := prom.get("/api/v1/rules", &rules); err != nil {
			return err
		}
		if len(rules.Data.Groups) != 1 || len(rules.Data.Groups[0].Rules) < 8 {
			return fmt.Errorf("rules: %+v", rules.Data)
		}
		for _, r := range rules.Data.Groups[0].Rules {
			if r.Health != "ok" {
				return fmt.Errorf("rule %s: health %q %s", r.Name, r.Health, r.Error)
			}
		}
		return nil
	})

	// A real server stops serving: its check fails, the series follows,
	// the alert is pending (it fires after its minute).
	down := l.Reals[1]
	down.StopWeb()
	addr := ""
	for _, r := range web.Reals {
		if r.Address == fmt.Sprintf("%s:%d", down.Addr, lab.WebPort) {
			addr = r.Address
		}
	}
	if addr == "" {
		t.Fatalf("no real server %s in %+v", down.Addr, web.Reals)
	}
	prom.value(fmt.Sprintf(`xlb_backend_up{service="web",backend=%q}`, addr), 0)
	prom.value(fmt.Sprintf(`ALERTS{alertname="XlbRealServerDown",alertstate="pending",service="web",backend=%q}`, addr), 1)
}
