package control

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/xlb-dev/xlb/control/bgp"
	"github.com/xlb-dev/xlb/control/mail"
	"github.com/xlb-dev/xlb/control/sync"
	"github.com/xlb-dev/xlb/dataplane"
)

// Status is what `xlb status` shows, as served on the control socket.
type Status struct {
	Version   string         `json:"version"`
	Config    string         `json:"config"`
	Started   time.Time      `json:"started"`
	Dataplane DataplaneInfo  `json:"dataplane"`
	Reloads   ReloadStatus   `json:"reloads"`
	Services  []ServiceInfo  `json:"services"`
	VRRP      []InstanceInfo `json:"vrrp"`
	// Verdicts counts packets by what the dataplane did with them.
	Verdicts map[string]uint64 `json:"verdicts,omitempty"`
	// Events counts what the dataplane did besides its verdicts.
	Events map[string]uint64 `json:"events,omitempty"`
	// RateInterval is the sampling interval of the rates, when shown.
	RateInterval time.Duration `json:"rate_interval,omitempty"`
	// BGP is the announcements ([bgp]), nil without.
	BGP *bgp.Status `json:"bgp,omitempty"`
	// Mail counts the mail alerts, nil without mail.
	Mail *mail.Stats `json:"mail,omitempty"`
	// Sync is the connection sync ([sync]), nil without.
	Sync *sync.Status `json:"sync,omitempty"`
}

// Services gives the services of a status a service at a time: it calls
// fn with each, in order, and stops at fn's first error, which it
// returns. It may be called more than once and gives the same services
// each time. fn must not keep the ServiceInfo (it is reused).
type Services func(fn func(*ServiceInfo) error) error

// services gives st.Services; nil when st has none (JSON's null).
func (st *Status) services() Services {
	if st.Services == nil {
		return nil
	}
	return func(fn func(*ServiceInfo) error) error {
		for i := range st.Services {
			if err := fn(&st.Services[i]); err != nil {
				return err
			}
		}
		return nil
	}
}

// DataplaneInfo says which dataplane runs.
type DataplaneInfo struct {
	Mode   string `json:"mode"`
	Attach string `json:"attach,omitempty"`
	// Fallback: mode = "auto" fell back to IPVS (XDP could not run).
	Fallback bool `json:"fallback,omitempty"`
	// Error is the last failure to apply the configuration, if any.
	Error string `json:"error,omitempty"`
}

// ReloadStatus counts configuration reloads.
type ReloadStatus struct {
	OK        uint64    `json:"ok"`
	Failed    uint64    `json:"failed"`
	LastError string    `json:"last_error,omitempty"`
	Last      time.Time `json:"last,omitempty"`
}

// Counters are packet, byte and connection totals.
type Counters struct {
	Connections uint64 `json:"connections"`
	PacketsIn   uint64 `json:"packets_in"`
	PacketsOut  uint64 `json:"packets_out"`
	BytesIn     uint64 `json:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out"`
}

// Rates are per-second rates over the last sampling interval.
type Rates struct {
	CPS    float64 `json:"cps"`
	InPPS  float64 `json:"in_pps"`
	OutPPS float64 `json:"out_pps"`
	InBPS  float64 `json:"in_bps"`
	OutBPS float64 `json:"out_bps"`
}

// ServiceInfo is one virtual service.
type ServiceInfo struct {
	Name        string `json:"name"`
	Protocol    string `json:"protocol"`
	Address     string `json:"address"` // VIP:port
	Scheduler   string `json:"scheduler"`
	Forward     string `json:"forward"`
	Persistence int64  `json:"persistence_seconds,omitempty"`
	Instance    string `json:"vrrp_instance,omitempty"`
	// Up: the healthy weight reaches the quorum. Forwarding: the VRRP
	// instance (if any) is MASTER here.
	Up          bool       `json:"up"`
	Forwarding  bool       `json:"forwarding"`
	SorryActive bool       `json:"sorry_active,omitempty"`
	Counters    Counters   `json:"counters"`
	Rates       *Rates     `json:"rates,omitempty"`
	Reals       []RealInfo `json:"real_servers"`
}

// RealInfo is one real server of a service.
type RealInfo struct {
	Address string `json:"address"` // addr:port
	Weight  uint32 `json:"weight"`  // configured
	// Override is the weight an operator set (xlb set-weight), if any.
	Override *uint32 `json:"weight_override,omitempty"`
	// Effective is the weight installed now (0 while unhealthy).
	Effective uint32 `json:"effective_weight"`
	Health    string `json:"health"` // up, down, unknown
	// Unresolved: a direct-routing real server whose next-hop MAC is not
	// known yet; it gets no new flows until it is.
	Unresolved    bool     `json:"unresolved,omitempty"`
	HealthError   string   `json:"health_error,omitempty"`
	Sorry         bool     `json:"sorry,omitempty"`
	ActiveConns   uint64   `json:"active_conns"`
	InactiveConns uint64   `json:"inactive_conns"`
	Counters      Counters `json:"counters"`
	Rates         *Rates   `json:"rates,omitempty"`
}

// InstanceInfo is one VRRP instance.
type InstanceInfo struct {
	Name              string    `json:"name"`
	Interface         string    `json:"interface"`
	VRID              uint8     `json:"vrid"`
	Version           int       `json:"version"`
	State             string    `json:"state"`
	Since             time.Time `json:"since"`
	Priority          uint8     `json:"priority"`
	EffectivePriority uint8     `json:"effective_priority"`
	Master            string    `json:"master,omitempty"`
	VIPs              []string  `json:"vips"`
	Faults            []string  `json:"faults,omitempty"`
	SplitBrain        bool      `json:"split_brain,omitempty"`
}

// Format selects the columns of FormatStatus, as ipvsadm's options.
type Format int

const (
	FormatConns Format = iota // weight, health, ActiveConn, InActConn
	FormatStats               // --stats: totals
	FormatRate                // --rate: per-second rates
)

// forwardName is ipvsadm -ln's name of a forwarding mode (Route, Masq...).
func forwardName(mode string) string {
	f, _ := dataplane.ForwardMode(mode).Spec()
	return f.Status
}

// FormatStatus writes st as `ipvsadm -ln` would, followed by the VRRP
// instances.
func FormatStatus(w io.Writer, st *Status, f Format) error {
	return formatStatus(w, st, st.services(), f)
}

// formatStatus is FormatStatus of st with the services of services.
func formatStatus(w io.Writer, st *Status, services Services, f Format) error {
	attach := st.Dataplane.Mode
	if st.Dataplane.Attach != "" {
		attach += " " + st.Dataplane.Attach
	}
	fmt.Fprintf(w, "xlb %s, dataplane %s, config %s\n", st.Version, attach, st.Config)
	if st.Dataplane.Error != "" {
		fmt.Fprintf(w, "dataplane error: %s\n", st.Dataplane.Error)
	}
	// The services table, twice through an aligner: once to measure its
	// columns, once to write it. text/tabwriter held the whole table (6 MB
	// of text and 450,000 cells at 64,000 real servers) until its Flush.
	al := &aligner{}
	if err := servicesTable(al, services, f); err != nil {
		return err
	}
	al.measured(w)
	if err := servicesTable(al, services, f); err != nil {
		return err
	}
	if al.err != nil {
		return al.err
	}
	if len(st.VRRP) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VRRP Instance\tInterface\tVRID\tState\tPriority\tMaster\tVIPs\t")
		for _, v := range st.VRRP {
			state := v.State
			if v.SplitBrain {
				state += " SPLIT-BRAIN"
			}
			if len(v.Faults) > 0 {
				state += " (" + strings.Join(v.Faults, ", ") + ")"
			}
			prio := strconv.Itoa(int(v.EffectivePriority))
			if v.EffectivePriority != v.Priority {
				prio = fmt.Sprintf("%d(%d)", v.EffectivePriority, v.Priority)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", v.Name, v.Interface, v.VRID, state, prio, v.Master, strings.Join(v.VIPs, " "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if st.BGP != nil {
		fmt.Fprintln(w)
		if err := bgp.FormatStatus(w, st.BGP, time.Now()); err != nil {
			return err
		}
	}
	if st.Sync != nil {
		fmt.Fprintln(w)
		return sync.FormatStatus(w, st.Sync, time.Now())
	}
	return nil
}

// servicesTable writes the services and their real servers, their cells
// tab-terminated, every line with the same number of cells.
func servicesTable(tw io.Writer, services Services, f Format) error {
	switch f {
	case FormatStats:
		fmt.Fprintln(tw, "Prot LocalAddress:Port\tConns\tInPkts\tOutPkts\tInBytes\tOutBytes\t")
		fmt.Fprintln(tw, "  -> RemoteAddress:Port\t\t\t\t\t\t")
	case FormatRate:
		fmt.Fprintln(tw, "Prot LocalAddress:Port\tCPS\tInPPS\tOutPPS\tInBPS\tOutBPS\t")
		fmt.Fprintln(tw, "  -> RemoteAddress:Port\t\t\t\t\t\t")
	default:
		fmt.Fprintln(tw, "Prot LocalAddress:Port Scheduler Flags\t\t\t\t\t\t")
		fmt.Fprintln(tw, "  -> RemoteAddress:Port\tForward\tWeight\tHealth\tActiveConn\tInActConn\t")
	}
	if services == nil {
		return nil
	}
	var line []byte // a row, built in place: fmt and its boxed arguments were most of the time
	return services(func(s *ServiceInfo) error {
		line = append(append(line[:0], strings.ToUpper(s.Protocol)...), "    "[min(len(s.Protocol), 4):]...)
		line = append(append(line, ' '), s.Address...)
		switch f {
		case FormatStats, FormatRate:
			line = appendFigures(append(line, '\t'), f, s.Counters, s.Rates)
			line = append(line, "\t\n"...)
		default:
			line = append(append(line, ' '), s.Scheduler...)
			if s.Persistence > 0 {
				line = strconv.AppendInt(append(line, " persistent "...), s.Persistence, 10)
			}
			line = append(line, "\t("...)
			sep := ""
			note := func(n string) {
				line = append(append(line, sep...), n...)
				sep = ", "
			}
			if s.Name != "" {
				note(s.Name)
			}
			if !s.Forwarding {
				note("not forwarding: " + s.Instance + " not MASTER")
			}
			if !s.Up {
				note("DOWN: below quorum")
			}
			if s.SorryActive {
				note("sorry server active")
			}
			line = append(line, ")\t\t\t\t\t\n"...)
		}
		if _, err := tw.Write(line); err != nil {
			return err
		}
		forward := forwardName(s.Forward)
		for _, r := range s.Reals {
			line = append(append(line[:0], "  -> "...), r.Address...)
			if r.Sorry {
				line = append(line, " (sorry)"...)
			}
			line = append(line, '\t')
			switch f {
			case FormatStats, FormatRate:
				line = appendFigures(line, f, r.Counters, r.Rates)
			default:
				line = append(append(line, forward...), '\t')
				switch {
				case r.Override != nil: // the configured weight, and the operator's
					line = strconv.AppendUint(line, uint64(r.Effective), 10)
					line = strconv.AppendUint(append(line, '('), uint64(r.Weight), 10)
					line = strconv.AppendUint(append(line, ",set:"...), uint64(*r.Override), 10)
					line = append(line, ')')
				case r.Effective != r.Weight:
					line = strconv.AppendUint(line, uint64(r.Effective), 10)
					line = strconv.AppendUint(append(line, '('), uint64(r.Weight), 10)
					line = append(line, ')')
				default:
					line = strconv.AppendUint(line, uint64(r.Weight), 10)
				}
				line = append(append(line, '\t'), r.Health...)
				if r.Unresolved {
					line = append(line, ",no-mac"...)
				}
				line = strconv.AppendInt(append(line, '\t'), int64(r.ActiveConns), 10)
				line = strconv.AppendInt(append(line, '\t'), int64(r.InactiveConns), 10)
			}
			line = append(line, "\t\n"...)
			if _, err := tw.Write(line); err != nil {
				return err
			}
		}
		return nil
	})
}

// aligner aligns the tab-terminated cells of a table as
// text/tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) does when every line has
// the same number of cells: each cell padded with spaces to its column's
// widest plus two; what follows a line's last tab is written as is. The
// table is written to it twice: first to measure the columns, then, after
// measured, to write it, without holding it.
type aligner struct {
	widths []int
	w      io.Writer // nil while measuring
	col    int       // of the cell being written
	width  int       // of the cell so far, in runes
	pad    []byte
	err    error
}

// measured ends the measuring pass: what is written next goes to w.
func (a *aligner) measured(w io.Writer) {
	a.w, a.col, a.width = w, 0, 0
}

func (a *aligner) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && a.err == nil {
		i := bytes.IndexAny(p, "\t\n")
		text := p
		if i >= 0 {
			text = p[:i]
		}
		a.width += utf8.RuneCount(text)
		if a.w != nil {
			_, a.err = a.w.Write(text)
		}
		if i < 0 {
			break
		}
		switch p[i] {
		case '\t':
			if a.w == nil {
				if a.col == len(a.widths) {
					a.widths = append(a.widths, 0)
				}
				a.widths[a.col] = max(a.widths[a.col], a.width)
			} else if a.err == nil {
				_, a.err = a.w.Write(a.spaces(a.widths[a.col] + 2 - a.width))
			}
			a.col++
		case '\n':
			if a.w != nil && a.err == nil {
				_, a.err = a.w.Write(p[i : i+1])
			}
			a.col = 0
		}
		a.width = 0
		p = p[i+1:]
	}
	return n, a.err
}

// spaces returns n spaces.
func (a *aligner) spaces(n int) []byte {
	for len(a.pad) < n {
		a.pad = append(a.pad, ' ')
	}
	return a.pad[:n]
}

// figures are the --stats totals or the --rate rates, tab-separated.
// appendFigures appends the tab-separated figures of a row of f.
func appendFigures(b []byte, f Format, c Counters, r *Rates) []byte {
	if f == FormatStats {
		for i, v := range [...]uint64{c.Connections, c.PacketsIn, c.PacketsOut, c.BytesIn, c.BytesOut} {
			if i > 0 {
				b = append(b, '\t')
			}
			b = strconv.AppendUint(b, v, 10)
		}
		return b
	}
	var rt Rates
	if r != nil {
		rt = *r
	}
	for i, v := range [...]float64{rt.CPS, rt.InPPS, rt.OutPPS, rt.InBPS, rt.OutBPS} {
		if i > 0 {
			b = append(b, '\t')
		}
		b = strconv.AppendFloat(b, v, 'f', 0, 64)
	}
	return b
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// writeStatusJSON writes st as json.Encoder with SetIndent("", "  ")
// writes it, one service at a time: the status of 65,536 real servers is
// 25 MB of indented JSON, never held whole.
func writeStatusJSON(w io.Writer, st *Status) error {
	return writeStatusJSONServices(w, st, st.services())
}

// writeStatusJSONServices is writeStatusJSON of st with the services of
// services (nil: JSON's null), written as they come.
func writeStatusJSONServices(w io.Writer, st *Status, services Services) error {
	top := *st
	top.Services = nil
	head, err := json.MarshalIndent(&top, "", "  ")
	if err != nil {
		return err
	}
	const marker = "\n  \"services\": null"
	i := bytes.Index(head, []byte(marker))
	if i < 0 {
		return fmt.Errorf("status JSON without services")
	}
	if _, err := w.Write(head[:i+len(marker)-len("null")]); err != nil {
		return err
	}
	var o jsonOut // one service's, its buffers reused
	n := 0
	if services != nil {
		err = services(func(s *ServiceInfo) error {
			o.b = append(o.b[:0], ',')
			if n == 0 {
				o.b[0] = '['
			}
			o.b = append(o.b, "\n    "...)
			o.service(s, "    ")
			n++
			_, err := w.Write(o.b)
			return err
		})
		if err != nil {
			return err
		}
	}
	end := "null"
	switch {
	case services != nil && n == 0:
		end = "[]"
	case n > 0:
		end = "\n  ]"
	}
	io.WriteString(w, end)
	if _, err := w.Write(head[i+len(marker):]); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}
