package dataplanetest

import (
	"fmt"
	"strings"
)

// VirtualServers is configuration text (TOML) that reaches a dataplane's
// limits: n NAT virtual servers "x0", "x1"... on 10.200.0.0/16 port 80,
// each with one real server, then, with reals > 0, the virtual server
// "big" with that many real servers. Health checks are off.
func VirtualServers(n, reals int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "\n[[virtual_server]]\nname = \"x%d\"\naddress = \"10.200.%d.%d\"\nport = 80\nforward = \"nat\"\n"+
			"[virtual_server.health_check]\ntype = \"none\"\n[[virtual_server.real_server]]\naddress = \"10.201.0.1\"\nport = 8080\n",
			i, i/250, i%250+1)
	}
	if reals > 0 {
		b.WriteString("\n[[virtual_server]]\nname = \"big\"\naddress = \"10.202.0.1\"\nport = 80\nforward = \"nat\"\n" +
			"[virtual_server.health_check]\ntype = \"none\"\n")
		for i := range reals {
			fmt.Fprintf(&b, "[[virtual_server.real_server]]\naddress = \"10.203.%d.%d\"\nport = 8080\n", i/250, i%250+1)
		}
	}
	return b.String()
}

// BigLine is the line of big's [[virtual_server]] in cfg, where errors
// about it point.
func BigLine(cfg string) int {
	return strings.Count(cfg[:strings.Index(cfg, `name = "big"`)], "\n")
}
