package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// statusHandler serves a fixed status.
type statusHandler struct{ st *Status }

func (h statusHandler) Status(bool) *Status { return h.st }
func (statusHandler) Reload() error         { return nil }

// manyServices is testStatus with n copies of its service.
func manyServices(n int) *Status {
	st := testStatus()
	svc := st.Services[0]
	st.Services = nil
	for range n {
		st.Services = append(st.Services, svc)
	}
	return st
}

// `xlb status` prints what the daemon writes: the JSON of the Status
// exactly as json.Encoder with two-space indentation prints it (what the
// client printed before), and the ipvsadm-like tables of FormatStatus.
func TestStatusOutputStreamed(t *testing.T) {
	for _, st := range []*Status{manyServices(3), manyServices(1), {Version: "v1"}} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := writeStatusJSON(&got, st); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("writeStatusJSON:\n%s\nwant (json.Encoder):\n%s", got.String(), want.String())
		}
	}

	st := manyServices(2)
	_, path := serveSocket(t, statusHandler{st}, SocketOptions{})
	for output, f := range map[string]Format{"text": FormatConns, "stats": FormatStats, "rate": FormatRate} {
		var got, want bytes.Buffer
		if err := CallOutput(path, Request{Command: "status", Output: output}, &got); err != nil {
			t.Fatalf("%s: %v", output, err)
		}
		if err := FormatStatus(&want, st, f); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("status %s:\n%s\nwant\n%s", output, got.String(), want.String())
		}
	}
	var got bytes.Buffer
	if err := CallOutput(path, Request{Command: "status", Output: "json"}, &got); err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(got.Bytes(), &back); err != nil || len(back.Services) != 2 || back.Services[1].Reals[0].Counters.BytesOut != 50000 {
		t.Errorf("status json: %v\n%s", err, got.String())
	}
	if err := CallOutput(path, Request{Command: "status", Output: "yaml"}, &got); err == nil || !strings.Contains(err.Error(), `unknown status output "yaml"`) {
		t.Errorf("unknown output: %v", err)
	}
	// The Response of a plain status request is unchanged.
	resp, err := Call(path, Request{Command: "status"})
	if err != nil || resp.Stream || len(resp.Status.Services) != 2 {
		t.Errorf("status: %+v, %v", resp, err)
	}
}

// /metrics is valid text exposition (each family once, its samples
// together), with every family of the services and real servers.
func TestMetricsExpositionParses(t *testing.T) {
	m := NewMetrics(func() *Status { return manyServices(3) }, nil)
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b.String())
	}
	for name, n := range map[string]int{
		"xlb_backend_packets_total": 3 * 2 * 2, "xlb_backend_up": 6, "xlb_backend_weight": 6, "xlb_backend_next_hop_unresolved": 6,
		"xlb_service_up": 3, "xlb_service_packets_total": 6, "xlb_dataplane_info": 1, "xlb_dataplane_fallback": 1,
		"xlb_packets_total": 2, "xlb_events_total": 2, "xlb_config_last_reload_successful": 1,
		"xlb_healthcheck_syns_deferred_total": 1,
	} {
		if f := fams[name]; f == nil || len(f.Metric) != n {
			t.Errorf("%s: %v, want %d samples", name, f, n)
		}
	}
	if v := fams["xlb_config_last_reload_successful"].Metric[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("last reload successful before any reload: %v", v)
	}
	m.Reload(errors.New("bad"))
	b.Reset()
	if _, err := m.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\nxlb_config_last_reload_successful 0\n") {
		t.Errorf("a failed reload: %s", b.String())
	}
}
