package control

import (
	"fmt"
	"strings"

	"github.com/xlb-dev/xlb/dataplane"
)

// dumpServices renders a desired dataplane state as stable text, one line
// per service and per real server, for golden files.
func dumpServices(svcs []dataplane.Service) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "%s %s sched=%s fwd=%s", s.Name, s.Key, s.Scheduler, s.Forward)
		if s.Persistence > 0 {
			fmt.Fprintf(&b, " persist=%s", s.Persistence)
		}
		if s.Forward == dataplane.Tunnel {
			fmt.Fprintf(&b, " encap=%s", s.Tunnel.Encap)
			if s.Tunnel.Encap == dataplane.EncapGUE {
				fmt.Fprintf(&b, " gue_port=%d", s.Tunnel.GUEPort)
			}
			if s.Tunnel.Source.IsValid() {
				fmt.Fprintf(&b, " src=%s", s.Tunnel.Source)
			}
		}
		if !s.Enabled {
			b.WriteString(" disabled")
		}
		b.WriteByte('\n')
		for _, be := range s.Backends {
			fmt.Fprintf(&b, "  -> %s weight=%d", be.Key(), be.Weight)
			if be.MAC.Valid() {
				fmt.Fprintf(&b, " mac=%s ifindex=%d", be.MAC, be.Ifindex)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}
