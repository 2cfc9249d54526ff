package control

import (
	"bufio"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The series of the services and their real servers, written in the text
// exposition format as they are produced: a scrape of 65,536 real servers
// costs one status (its counters read in batches) and a pass over it per
// family, and holds no more than that status in memory. Label names are in
// order, as client_golang writes them.

// family is one metric family of writeStatusMetrics.
type family struct {
	name, help, typ string
}

var (
	famDPInfo    = family{"xlb_dataplane_info", "The dataplane in use.", "gauge"}
	famFallback  = family{"xlb_dataplane_fallback", "1 if mode = \"auto\" fell back to IPVS because XDP could not run.", "gauge"}
	famPackets   = family{"xlb_packets_total", "Packets seen by the XDP program, by verdict.", "counter"}
	famEvents    = family{"xlb_events_total", "What the XDP program did besides its verdicts (fragments followed, ICMP errors relayed, NAT replies adopted...), by event.", "counter"}
	famSvcPkts   = family{"xlb_service_packets_total", "Packets of a virtual service.", "counter"}
	famSvcBytes  = family{"xlb_service_bytes_total", "Bytes of a virtual service.", "counter"}
	famSvcConns  = family{"xlb_service_connections_total", "Connections of a virtual service.", "counter"}
	famSvcUp     = family{"xlb_service_up", "1 if the healthy weight of the service reaches its quorum.", "gauge"}
	famSvcFwd    = family{"xlb_service_forwarding", "1 if this director forwards the service (its VRRP instance is MASTER, or it has none).", "gauge"}
	famBePkts    = family{"xlb_backend_packets_total", "Packets forwarded to (in) and, for NAT, from (out) a real server.", "counter"}
	famBeBytes   = family{"xlb_backend_bytes_total", "Bytes forwarded to (in) and, for NAT, from (out) a real server.", "counter"}
	famBeConns   = family{"xlb_backend_connections_total", "Connections scheduled to a real server.", "counter"}
	famBeActive  = family{"xlb_backend_active_connections", "Established TCP connections of a real server (ipvsadm ActiveConn).", "gauge"}
	famBeInact   = family{"xlb_backend_inactive_connections", "Other tracked connections of a real server (ipvsadm InActConn).", "gauge"}
	famBeUp      = family{"xlb_backend_up", "1 if the real server passes its health check.", "gauge"}
	famBeWeight  = family{"xlb_backend_weight", "Weight installed for new flows (0 while unhealthy).", "gauge"}
	famBeNoMAC   = family{"xlb_backend_next_hop_unresolved", "1 while a direct-routing real server's MAC is unknown (it gets no new flows).", "gauge"}
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// seriesWriter appends samples to a buffered writer.
type seriesWriter struct {
	w   *bufio.Writer
	num []byte
}

func (sw *seriesWriter) head(f family) {
	sw.w.WriteString("# HELP ")
	sw.w.WriteString(f.name)
	sw.w.WriteByte(' ')
	sw.w.WriteString(helpEscaper.Replace(f.help))
	sw.w.WriteString("\n# TYPE ")
	sw.w.WriteString(f.name)
	sw.w.WriteByte(' ')
	sw.w.WriteString(f.typ)
	sw.w.WriteByte('\n')
}

// sample writes name{k1="v1",...} value; labels are name, value pairs,
// names in order, values escaped already.
func (sw *seriesWriter) sample(name string, v float64, labels ...string) {
	sw.w.WriteString(name)
	if len(labels) > 0 {
		sw.w.WriteByte('{')
		for i := 0; i < len(labels); i += 2 {
			if i > 0 {
				sw.w.WriteByte(',')
			}
			sw.w.WriteString(labels[i])
			sw.w.WriteString(`="`)
			sw.w.WriteString(labels[i+1])
			sw.w.WriteByte('"')
		}
		sw.w.WriteByte('}')
	}
	sw.w.WriteByte(' ')
	switch {
	case v == 0:
		sw.w.WriteByte('0')
	case v == 1:
		sw.w.WriteByte('1')
	case math.IsNaN(v):
		sw.w.WriteString("NaN")
	case math.IsInf(v, 1):
		sw.w.WriteString("+Inf")
	case math.IsInf(v, -1):
		sw.w.WriteString("-Inf")
	default:
		sw.num = strconv.AppendFloat(sw.num[:0], v, 'g', -1, 64)
		sw.w.Write(sw.num)
	}
	sw.w.WriteByte('\n')
}

// writeStatusMetrics writes the families of the dataplane, the services
// and the real servers.
func writeStatusMetrics(w *bufio.Writer, st *Status) {
	sw := &seriesWriter{w: w}
	sw.head(famDPInfo)
	sw.sample(famDPInfo.name, 1, "attach", labelEscaper.Replace(st.Dataplane.Attach), "mode", labelEscaper.Replace(st.Dataplane.Mode))
	sw.head(famFallback)
	sw.sample(famFallback.name, boolf(st.Dataplane.Fallback))
	writeCounts(sw, famPackets, "verdict", st.Verdicts)
	writeCounts(sw, famEvents, "event", st.Events)

	if len(st.Services) == 0 {
		return
	}
	names := make([]string, len(st.Services))
	for i, s := range st.Services {
		names[i] = labelEscaper.Replace(s.Name)
	}
	svc := func(f family, v func(s *ServiceInfo) float64, extra ...string) {
		for i := range st.Services {
			sw.sample(f.name, v(&st.Services[i]), append(extra, "service", names[i])...)
		}
	}
	sw.head(famSvcPkts)
	svc(famSvcPkts, func(s *ServiceInfo) float64 { return float64(s.Counters.PacketsIn) }, "direction", "in")
	svc(famSvcPkts, func(s *ServiceInfo) float64 { return float64(s.Counters.PacketsOut) }, "direction", "out")
	sw.head(famSvcBytes)
	svc(famSvcBytes, func(s *ServiceInfo) float64 { return float64(s.Counters.BytesIn) }, "direction", "in")
	svc(famSvcBytes, func(s *ServiceInfo) float64 { return float64(s.Counters.BytesOut) }, "direction", "out")
	sw.head(famSvcConns)
	svc(famSvcConns, func(s *ServiceInfo) float64 { return float64(s.Counters.Connections) })
	sw.head(famSvcUp)
	svc(famSvcUp, func(s *ServiceInfo) float64 { return boolf(s.Up) })
	sw.head(famSvcFwd)
	svc(famSvcFwd, func(s *ServiceInfo) float64 { return boolf(s.Forwarding) })

	// Real servers: backend, [direction,] service.
	be := func(f family, v func(r *RealInfo) float64, direction string) {
		for i := range st.Services {
			s := &st.Services[i]
			for j := range s.Reals {
				r := &s.Reals[j]
				if direction == "" {
					sw.sample(f.name, v(r), "backend", r.Address, "service", names[i])
				} else {
					sw.sample(f.name, v(r), "backend", r.Address, "direction", direction, "service", names[i])
				}
			}
		}
	}
	sw.head(famBePkts)
	be(famBePkts, func(r *RealInfo) float64 { return float64(r.Counters.PacketsIn) }, "in")
	be(famBePkts, func(r *RealInfo) float64 { return float64(r.Counters.PacketsOut) }, "out")
	sw.head(famBeBytes)
	be(famBeBytes, func(r *RealInfo) float64 { return float64(r.Counters.BytesIn) }, "in")
	be(famBeBytes, func(r *RealInfo) float64 { return float64(r.Counters.BytesOut) }, "out")
	sw.head(famBeConns)
	be(famBeConns, func(r *RealInfo) float64 { return float64(r.Counters.Connections) }, "")
	sw.head(famBeActive)
	be(famBeActive, func(r *RealInfo) float64 { return float64(r.ActiveConns) }, "")
	sw.head(famBeInact)
	be(famBeInact, func(r *RealInfo) float64 { return float64(r.InactiveConns) }, "")
	sw.head(famBeUp)
	be(famBeUp, func(r *RealInfo) float64 { return boolf(r.Health == "up") }, "")
	sw.head(famBeWeight)
	be(famBeWeight, func(r *RealInfo) float64 { return float64(r.Effective) }, "")
	sw.head(famBeNoMAC)
	be(famBeNoMAC, func(r *RealInfo) float64 { return boolf(r.Unresolved) }, "")
}

// writeCounts writes a counter family of named counts, by name.
func writeCounts(sw *seriesWriter, f family, label string, counts map[string]uint64) {
	if len(counts) == 0 {
		return
	}
	sw.head(f)
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sw.sample(f.name, float64(counts[n]), label, labelEscaper.Replace(n))
	}
}
