package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	vrrpnames "github.com/xlb-dev/xlb/vrrp/names"
)

// One case per class of error: the exact messages and their lines.
var errorCases = []struct {
	name string
	src  string
	env  Env
	want []string // "LINE: message", file name added by the test
}{
	{
		name: "toml syntax",
		src:  "[global]\nrouter_id = \"a\"\n[dataplane]\ninterfaces = [\"eth0\",\n",
		want: []string{`4: invalid TOML: unexpected EOF; expected value`},
	},
	{
		name: "toml duplicate key",
		src:  "[global]\nrouter_id = \"a\"\nrouter_id = \"b\"\n",
		want: []string{`3: invalid TOML: Key 'global.router_id' has already been defined.`},
	},
	{
		name: "unknown keys",
		src: base + `[metric]
listen = ""

[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.8"
wieght = 2
`,
		want: []string{
			`5: unknown key "metric" (did you mean "metrics"?)`,
			`16: virtual_server "a": real_server 10.0.0.8:80: unknown key "wieght" (did you mean "weight"?)`,
		},
	},
	{
		name: "table shapes",
		src: `[global]
router_id = "t"
[[dataplane]]
interfaces = ["eth0"]
[virtual_server]
name = "a"
`,
		want: []string{
			`3: dataplane: want a table, got array of tables`,
			`5: virtual_server: want an array of tables (a [[...]] header for each), got a table ([...] header)`,
		},
	},
	{
		name: "wrong types",
		src: base + `[[virtual_server]]
name = "a"
address = 10
port = "80"
[[virtual_server.real_server]]
address = "10.0.0.7"
weight = 1.5
[virtual_server.real_server.health_check]
expect_status = 200
`,
		want: []string{
			`7: virtual_server "a": address: want a string, got integer 10`,
			`8: virtual_server "a": port: want an integer, got string "80"`,
			`11: virtual_server "a": real_server 10.0.0.7: weight: want an integer, got float 1.5`,
			`13: virtual_server "a": real_server 10.0.0.7: health_check: expect_status: want an array, got integer 200`,
			`13: virtual_server "a": real_server 10.0.0.7: health_check: expect_status applies only to http and https checks (type is "tcp")`,
		},
	},
	{
		name: "learned advert interval factor out of range",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
version = 3
virtual_ipaddress = ["10.0.0.3"]
learned_advert_int_max_factor = 4096
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 2
version = 3
virtual_ipaddress = ["10.0.0.4"]
learned_advert_int_max_factor = -1
`,
		want: []string{
			`11: vrrp_instance "VI_1": learned_advert_int_max_factor: 4096 is out of range (0..4095)`,
			`18: vrrp_instance "VI_2": learned_advert_int_max_factor: -1 is out of range (0..4095)`,
		},
	},
	{
		name: "VRID and priority out of range",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 256
priority = 0
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 0
priority = 300
virtual_ipaddress = ["10.0.0.4"]
`,
		want: []string{
			`8: vrrp_instance "VI_1": virtual_router_id: 256 is out of range (1..255)`,
			`9: vrrp_instance "VI_1": priority: 0 is out of range (1..255)`,
			`14: vrrp_instance "VI_2": virtual_router_id: 0 is out of range (1..255)`,
			`15: vrrp_instance "VI_2": priority: 300 is out of range (1..255)`,
		},
	},
	{
		name: "bad durations",
		src: base + `tcp_timeout = "1 minute"
udp_timeout = 300
tcp_fin_timeout = "1500ms"
[[vrrp_script]]
name = "s"
script = "/bin/true"
interval = "-1s"
`,
		want: []string{
			`5: [dataplane]: tcp_timeout: invalid duration "1 minute" (use Go syntax: "1s", "50ms", "1m30s")`,
			`6: [dataplane]: udp_timeout: want a duration string such as "300s", got integer 300`,
			`7: [dataplane]: tcp_fin_timeout: 1.5s is not a multiple of 1s`,
			`11: vrrp_script "s": interval: -1s is out of range (at least 1ms)`,
		},
	},
	{
		name: "ports and weights out of range",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 0
[[virtual_server.real_server]]
address = "10.0.0.7"
port = 70000
weight = 65536
`,
		want: []string{
			`8: virtual_server "a": port: 0 is out of range (1..65535)`,
			`11: virtual_server "a": real_server 10.0.0.7: port: 70000 is out of range (1..65535)`,
			`12: virtual_server "a": real_server 10.0.0.7: weight: 65536 is out of range (0..65535)`,
		},
	},
	{
		name: "unknown enumerations",
		src: `[global]
router_id = "t"
[dataplane]
mode = "dpdk"
interfaces = ["eth0"]
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
protocol = "sctp"
scheduler = "random"
forward = "masq"
[virtual_server.health_check]
type = "icmp"
`,
		want: []string{
			`4: [dataplane]: mode: unknown value "dpdk" (want "auto", "xdp" or "ipvs")`,
			`10: virtual_server "a": protocol: unknown value "sctp" (want "tcp" or "udp")`,
			`11: virtual_server "a": scheduler: unknown value "random" (want "rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "fo", "ovf", "twos", "dh", "lblc" or "lblcr")`,
			`12: virtual_server "a": forward: unknown value "masq" (want "dr", "nat" or "tunnel")`,
			`14: virtual_server "a": health_check: type: unknown value "icmp" (want "tcp", "http", "https", "udp", "dns", "smtp", "ping", "file", "script" or "none")`,
		},
	},
	{
		// dh, lblc and lblcr choose by destination, the VIP: IPVS only.
		name: "an IPVS-only scheduler with XDP",
		src: `[global]
router_id = "t"
[dataplane]
mode = "xdp"
interfaces = ["eth0"]
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
scheduler = "dh"
`,
		want: []string{
			`10: virtual_server "a": scheduler "dh" is not supported by the XDP dataplane (mode = "xdp"): it picks by the destination address, which is the VIP for every flow of a virtual server (IPVS's schedulers for cache clusters): use mode = "ipvs" for IPVS's own, or scheduler sh (by client) or mh (by connection)`,
		},
	},
	{
		name: "connection thresholds",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.7"
upper_threshold = 10
lower_threshold = 11
[[virtual_server.real_server]]
address = "10.0.0.8"
lower_threshold = 1
[[virtual_server.real_server]]
address = "10.0.0.9"
upper_threshold = -1
`,
		want: []string{
			`12: virtual_server "a": real_server 10.0.0.7:80: lower_threshold 11 is above upper_threshold 10 (IPVS refuses it; 0 is 3/4 of upper_threshold)`,
			`15: virtual_server "a": real_server 10.0.0.8:80: lower_threshold 1 is above upper_threshold 0 (IPVS refuses it; 0 is 3/4 of upper_threshold)`,
			`18: virtual_server "a": real_server 10.0.0.9:80: upper_threshold: -1 is out of range (at least 0)`,
		},
	},
	{
		name: "duplicate services and real servers",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.7"
[[virtual_server.real_server]]
address = "10.0.0.7"
port = 80
[[virtual_server]]
name = "b"
address = "10.0.0.3"
port = 80
[[virtual_server]]
name = "c"
address = "10.0.0.3"
port = 80
protocol = "udp"
`,
		want: []string{
			`12: virtual_server "a": real_server 10.0.0.7:80: duplicate real server 10.0.0.7:80 (first on line 9)`,
			`16: virtual_server "b": duplicate virtual server tcp/10.0.0.3:80 (also virtual_server "a" on line 5)`,
		},
	},
	{
		name: "duplicate names",
		src: base + `[[vrrp_script]]
name = "s"
script = "/bin/true"
[[vrrp_script]]
name = "s"
script = "/bin/false"
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 81
`,
		want: []string{
			`9: duplicate vrrp_script name "s" (first on line 5)`,
			`16: duplicate virtual_server name "a" (first on line 11)`,
		},
	},
	{
		name: "unknown references",
		src: base + `[[vrrp_sync_group]]
name = "G"
group = ["VI_1", "VI_9"]
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
track_script = ["nope weight 10"]
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
vrrp_instance = "VI_2"
`,
		want: []string{
			`7: vrrp_sync_group "G": unknown vrrp_instance "VI_9"`,
			`13: vrrp_instance "VI_1": track_script: unknown vrrp_script "nope"`,
			`18: virtual_server "a": unknown vrrp_instance "VI_2"`,
		},
	},
	{
		name: "instance in two sync groups",
		src: base + `[[vrrp_sync_group]]
name = "G1"
group = ["VI_1"]
[[vrrp_sync_group]]
name = "G2"
group = ["VI_1", "VI_1"]
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
`,
		want: []string{
			`10: vrrp_sync_group "G2": vrrp_instance "VI_1" is already in vrrp_sync_group "G1" (line 5)`,
			`10: vrrp_sync_group "G2": vrrp_instance "VI_1" is listed twice`,
		},
	},
	{
		name: "VIP not covered by the instance",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3/24"]
[[virtual_server]]
name = "a"
address = "10.0.0.4"
port = 80
vrrp_instance = "VI_1"
`,
		want: []string{
			`14: virtual_server "a": address 10.0.0.4 is not among the virtual_ipaddress of vrrp_instance "VI_1" (line 5)`,
		},
	},
	{
		name: "mixed families",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
version = 3
virtual_ipaddress = ["10.0.0.3", "2001:db8::3"]
unicast_peers = ["2001:db8::6"]
[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
virtual_router_id = 2
virtual_ipaddress = ["2001:db8::4"]
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[[virtual_server.real_server]]
address = "2001:db8::7"
`,
		want: []string{
			`10: vrrp_instance "VI_1": virtual_ipaddress: 2001:db8::3 is IPv6 but 10.0.0.3 is IPv4: one instance serves one address family`,
			`11: vrrp_instance "VI_1": unicast_peers: 2001:db8::6 is not IPv4 like the virtual addresses`,
			`16: vrrp_instance "VI_6": IPv6 virtual addresses need version = 3 (VRRP version 2 is IPv4 only)`,
			`22: virtual_server "a": real_server [2001:db8::7]:80: real server 2001:db8::7 is IPv6 but the virtual server 10.0.0.3 is IPv4: forward = "dr" needs one family`,
		},
	},
	{
		name: "tunnel keys",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
tunnel_type = "gue"
[[virtual_server]]
name = "b"
address = "10.0.0.3"
port = 81
forward = "tunnel"
tunnel_type = "gue"
tunnel_source = "10.0.0.5/24"
[[virtual_server]]
name = "c"
address = "10.0.0.3"
port = 82
forward = "tunnel"
tunnel_port = 6080
`,
		want: []string{
			`9: virtual_server "a": tunnel_type applies only with forward = "tunnel" (forward is "dr")`,
			`15: virtual_server "b": tunnel_type = "gue" needs tunnel_port (the real servers' GUE UDP port)`,
			`16: virtual_server "b": tunnel_source: 10.0.0.5/24 has host bits set (did you mean 10.0.0.0/24?)`,
			`22: virtual_server "c": tunnel_port applies only with tunnel_type = "gue"`,
		},
	},
	{
		name: "port mapping without nat",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
sorry_server = "10.0.0.9:8080"
[[virtual_server.real_server]]
address = "10.0.0.7"
port = 8080
`,
		want: []string{
			`9: virtual_server "a": sorry_server port 8080 differs from the service port 80: only forward = "nat" maps ports`,
			`12: virtual_server "a": real_server 10.0.0.7:8080: port 8080 differs from the service port 80: only forward = "nat" maps ports`,
		},
	},
	{
		name: "port mapping in tunnel mode",
		src: base + `[[virtual_server]]
name = "t"
address = "10.0.0.3"
port = 80
forward = "tunnel"
[[virtual_server.real_server]]
address = "192.0.2.10"
port = 8080
`,
		want: []string{
			`12: virtual_server "t": real_server 192.0.2.10:8080: port 8080 differs from the service port 80: only forward = "nat" maps ports`,
		},
	},
	{
		name: "missing required keys",
		src: `[global]
router_id = "t"
[dataplane]
mode = "xdp"
[[vrrp_instance]]
state = "MASTER"
[[virtual_server]]
port = 80
[[virtual_server.real_server]]
weight = 1
`,
		want: []string{
			`3: [dataplane]: interfaces: required with mode = "xdp" (where the XDP program is attached)`,
			`5: vrrp_instance #1: name: required`,
			`5: vrrp_instance #1: interface: required`,
			`5: vrrp_instance #1: virtual_router_id: required (1..255)`,
			`5: vrrp_instance #1: virtual_ipaddress: required`,
			`7: virtual_server #1: name: required`,
			`7: virtual_server #1: address: required`,
			`9: virtual_server #1: real_server #1: address: required`,
		},
	},
	{
		name: "advert_int per version",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
advert_int = "500ms"
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 2
version = 3
advert_int = "41s"
virtual_ipaddress = ["10.0.0.4"]
[[vrrp_instance]]
name = "VI_3"
interface = "eth0"
virtual_router_id = 3
version = 3
advert_int = "15ms"
virtual_ipaddress = ["10.0.0.5"]
`,
		want: []string{
			`9: vrrp_instance "VI_1": advert_int: 500ms is out of range (1s..4m15s)`,
			`16: vrrp_instance "VI_2": advert_int: 41s is out of range (10ms..40.95s)`,
			`23: vrrp_instance "VI_3": advert_int: 15ms is not a multiple of 10ms`,
		},
	},
	{
		name: "authentication",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
auth_type = "AH"
auth_pass = "1111"
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 2
version = 3
auth_pass = "1111"
virtual_ipaddress = ["10.0.0.4"]
[[vrrp_instance]]
name = "VI_3"
interface = "eth0"
virtual_router_id = 3
auth_type = "PASS"
virtual_ipaddress = ["10.0.0.5"]
`,
		want: []string{
			`9: vrrp_instance "VI_1": auth_type: "AH" (IPsec authentication header) is not supported; use "PASS" or none`,
			`17: vrrp_instance "VI_2": auth_pass: VRRP version 3 has no authentication (RFC 5798); remove it or use version = 2`,
			`23: vrrp_instance "VI_3": auth_type = "PASS" needs auth_pass`,
		},
	},
	{
		name: "address owner and preemption",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
priority = 255
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 2
state = "MASTER"
preempt = false
virtual_ipaddress = ["10.0.0.4"]
`,
		want: []string{
			`9: vrrp_instance "VI_1": priority 255 means the address owner, which is always master: set state = "MASTER" or a lower priority`,
			`16: vrrp_instance "VI_2": preempt = false needs state = "BACKUP" (a MASTER at start preempts anyway)`,
		},
	},
	{
		name: "VRID and VIP reuse",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 7
virtual_ipaddress = ["10.0.0.3"]
[[vrrp_instance]]
name = "VI_2"
interface = "eth0"
virtual_router_id = 7
virtual_ipaddress = ["10.0.0.3/24"]
[[vrrp_instance]]
name = "VI_3"
interface = "eth1"
virtual_router_id = 7
virtual_ipaddress = ["10.0.1.3"]
[[vrrp_instance]]
name = "VI_6"
interface = "eth0"
version = 3
virtual_router_id = 7
virtual_ipaddress = ["2001:db8::3"]
`,
		want: []string{
			`13: vrrp_instance "VI_2": virtual_router_id 7 is already used on eth0 for IPv4 by vrrp_instance "VI_1" (line 5)`,
			`14: vrrp_instance "VI_2": virtual_ipaddress 10.0.0.3 is also in vrrp_instance "VI_1" (line 5)`,
		},
	},
	{
		name: "virtual_ipaddress syntax",
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = [
  "10.0.0.3/24 dev eth1 label eth0:1",
  "10.0.0.4/33",
  "10.0.0.5 scope global",
  "10.0.0.6 dev",
  "224.0.0.18",
]
`,
		want: []string{
			`10: vrrp_instance "VI_1": virtual_ipaddress: label "eth0:1" must be "eth1" or start with "eth1:"`,
			`11: vrrp_instance "VI_1": virtual_ipaddress: invalid address/length "10.0.0.4/33"`,
			`12: vrrp_instance "VI_1": virtual_ipaddress: unknown word "scope" in "10.0.0.5 scope global" (want ADDR[/LEN] [dev IF] [label LABEL])`,
			`13: vrrp_instance "VI_1": virtual_ipaddress: "dev" needs a value in "10.0.0.6 dev"`,
			`14: vrrp_instance "VI_1": virtual_ipaddress: address 224.0.0.18 is multicast`,
		},
	},
	{
		name: "track entries",
		src: base + `[[vrrp_script]]
name = "s"
script = "/bin/true"
weight = 254
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
track_script = ["s weight -254", "s weight x", "s reverse"]
track_interface = ["eth1 weight 300", "a/b"]
`,
		want: []string{
			`8: vrrp_script "s": weight: 254 is out of range (-253..253)`,
			`14: vrrp_instance "VI_1": track_script: weight -254 in "s weight -254" is out of range (-253..253)`,
			`14: vrrp_instance "VI_1": track_script: weight "x" in "s weight x" is not an integer`,
			`14: vrrp_instance "VI_1": track_script: "s reverse": want NAME or "NAME weight N"`,
			`15: vrrp_instance "VI_1": track_interface: weight 300 in "eth1 weight 300" is out of range (-253..253)`,
			`15: vrrp_instance "VI_1": track_interface: invalid interface name "a/b"`,
		},
	},
	{
		name: "health check keys",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
[virtual_server.health_check]
interval = "1s"
timeout = "2s"
path = "/x"
sni = "example.com"
fall = 0
[[virtual_server]]
name = "b"
address = "10.0.0.3"
port = 81
[virtual_server.health_check]
type = "http"
body_regex = "("
expect_status = [200, 99]
path = "health"
[[virtual_server]]
name = "c"
address = "10.0.0.3"
port = 82
[virtual_server.health_check]
type = "script"
[[virtual_server]]
name = "d"
address = "10.0.0.3"
port = 83
[virtual_server.health_check]
type = "https"
ca_file = "/etc/ca.pem"
`,
		want: []string{
			`11: virtual_server "a": health_check: timeout 2s is longer than interval 1s`,
			`12: virtual_server "a": health_check: path applies only to http and https checks (type is "tcp")`,
			`13: virtual_server "a": health_check: sni applies only to https checks (type is "tcp")`,
			`14: virtual_server "a": health_check: fall: 0 is out of range (at least 1)`,
			`21: virtual_server "b": health_check: body_regex: error parsing regexp: missing closing ): ` + "`(`",
			`22: virtual_server "b": health_check: expect_status: 99 is out of range (100..599)`,
			`23: virtual_server "b": health_check: path: "health" must start with "/" and contain no white space`,
			`29: virtual_server "c": health_check: type = "script" needs script`,
			`36: virtual_server "d": health_check: ca_file is used only with tls_verify = true`,
		},
	},
	{
		name: "quorum and sorry server",
		src: base + `[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
forward = "nat"
quorum = 2
hysteresis = 2
sorry_server = "2001:db8::9"
[[virtual_server.real_server]]
address = "10.0.0.3"
`,
		want: []string{
			`11: virtual_server "a": hysteresis 2 must be less than quorum 2 (the service could never go down)`,
			`12: virtual_server "a": sorry server 2001:db8::9 is IPv6 but the virtual server 10.0.0.3 is IPv4: forward = "nat" needs one family`,
			`14: virtual_server "a": real_server 10.0.0.3:80: real server 10.0.0.3 is the virtual server's own address`,
		},
	},
	{
		name: "top-level sections",
		src: `[global]
router_id = "two words"
[dataplane]
mode = "ipvs"
xdp_mode = "native"
pin_path = "bpf/xlb"
interfaces = ["eth0", "eth0", "this-name-is-too-long"]
[metrics]
listen = "localhost"
[control]
socket = "xlb.sock"
`,
		want: []string{
			`2: [global]: router_id: "two words" must not contain white space or control characters`,
			`5: [dataplane]: xdp_mode applies only with mode = "xdp" or "auto" (mode is "ipvs")`,
			`6: [dataplane]: pin_path: "bpf/xlb" is not an absolute path`,
			`7: [dataplane]: interfaces: "eth0" is listed twice`,
			`7: [dataplane]: interfaces: interface name "this-name-is-too-long" is longer than 15 bytes`,
			`9: [metrics]: listen: "localhost" is not HOST:PORT ("" disables metrics)`,
			`11: [control]: socket: "xlb.sock" is not an absolute path`,
		},
	},
	{
		name: "command syntax",
		src: base + `[[vrrp_script]]
name = "s"
script = "/bin/sh -c 'exit 1"
[[vrrp_sync_group]]
name = "G"
group = ["VI_1"]
notify = '/x\'
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3"]
notify_master = "'' master"
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
quorum_up = 'x \0'
[virtual_server.health_check]
type = "script"
script = '/bin/check "a'
`,
		want: []string{
			`7: vrrp_script "s": script: unterminated ' quote (opened at byte 11)`,
			`11: vrrp_sync_group "G": notify: a backslash ends the command (write \\ for a backslash)`,
			`17: vrrp_instance "VI_1": notify_master: the program name is empty`,
			`22: virtual_server "a": quorum_up: the escape \0 is a NUL byte, which would cut the argument`,
			`25: virtual_server "a": health_check: script: unterminated " quote (opened at byte 11)`,
		},
	},
	{
		name: "interfaces checked against the system",
		env:  fakeEnv{"eth0": {netip.MustParsePrefix("10.0.0.5/24")}},
		src: base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth9"
virtual_router_id = 1
virtual_ipaddress = ["10.0.0.3/24 dev eth8"]
track_interface = ["eth7 weight -10"]
`,
		want: []string{
			`7: vrrp_instance "VI_1": interface: unknown interface "eth9"`,
			`9: vrrp_instance "VI_1": virtual_ipaddress: unknown interface "eth8"`,
			`10: vrrp_instance "VI_1": track_interface: unknown interface "eth7"`,
		},
	},
	{
		name: "DR real server not directly connected",
		env: fakeEnv{
			"eth0": {netip.MustParsePrefix("10.0.0.5/24"), netip.MustParsePrefix("fe80::1/64")},
			"eth1": {netip.MustParsePrefix("10.1.0.5/24")},
		},
		src: `[global]
router_id = "t"
[dataplane]
interfaces = ["eth0", "eth1", "eth2"]
[[virtual_server]]
name = "a"
address = "10.0.0.3"
port = 80
sorry_server = "10.9.0.9"
[[virtual_server.real_server]]
address = "10.1.0.7"
[[virtual_server.real_server]]
address = "10.2.0.7"
[[virtual_server]]
name = "b"
address = "10.0.0.3"
port = 81
forward = "nat"
[[virtual_server.real_server]]
address = "10.2.0.7"
port = 8080
`,
		want: []string{
			`4: [dataplane]: interfaces: unknown interface "eth2"`,
			`9: virtual_server "a": forward = "dr" needs the sorry server on a directly connected subnet of the dataplane interfaces, and 10.9.0.9 is not (eth0: 10.0.0.0/24, fe80::/64; eth1: 10.1.0.0/24)`,
			`13: virtual_server "a": real_server 10.2.0.7:80: forward = "dr" needs real servers on a directly connected subnet of the dataplane interfaces, and 10.2.0.7 is not (eth0: 10.0.0.0/24, fe80::/64; eth1: 10.1.0.0/24)`,
		},
	},
	{
		name: "sync",
		env:  fakeEnv{"eth0": nil},
		src: base + `[sync]
interface = "eth3"
vrrp_instance = "VI_9"
peers = ["10.0.0.2", "fd00::2", "10.0.0.2"]
`,
		want: []string{
			`5: [sync]: key_file: required with protocol = "xlb" (the directors' shared HMAC key)`,
			`6: [sync]: interface: unknown interface "eth3"`,
			`7: [sync]: vrrp_instance: unknown vrrp_instance "VI_9"`,
			`8: [sync]: peers: fd00::2: the sync runs over IPv4`,
			`8: [sync]: peers: 10.0.0.2 is listed twice`,
		},
	},
	{
		name: "sync ipvs",
		src: base + `[sync]
protocol = "ipvs"
interface = "eth0"
peers = ["10.0.0.2"]
key_file = "/k"
sync_id = 256
`,
		want: []string{
			`8: [sync]: peers: only with protocol = "xlb" (IPVS sync is multicast)`,
			`9: [sync]: key_file: only with protocol = "xlb" (IPVS sync has no authentication)`,
			`10: [sync]: sync_id: 256 is out of range (0..255)`,
		},
	},
	{
		name: "env errors other than unknown",
		env:  fakeEnv{"eth0": nil},
		src:  "[global]\nrouter_id = \"t\"\n[dataplane]\ninterfaces = [\"eth0\", \"broken\"]\n",
		want: []string{
			`4: [dataplane]: interfaces: interface "broken": netlink: permission denied`,
		},
	},
}

// fakeEnv maps interface names to their subnets; "broken" fails.
type fakeEnv map[string][]netip.Prefix

func (f fakeEnv) InterfaceSubnets(name string) ([]netip.Prefix, error) {
	if name == "broken" {
		return nil, errors.New("netlink: permission denied")
	}
	p, ok := f[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownInterface, name)
	}
	return p, nil
}

func TestErrorClasses(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tc.src), tc.env)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("a config returned with an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not an *Errors: %v", err, err)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = "t.toml:" + w
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			for i, e := range errs.List {
				if i > 0 && e.Line < errs.List[i-1].Line {
					t.Errorf("errors not sorted by line: %v", errs.List)
				}
			}
		})
	}
}

// Every problem is reported, not just the first, even when some values
// fail to decode.
func TestAllErrorsReported(t *testing.T) {
	src := `[global]
router_id = 1
[dataplane]
interfaces = "eth0"
[[virtual_server]]
name = "a"
address = "10.0.0.300"
port = 80
[[virtual_server.real_server]]
address = "10.0.0.7"
weight = -1
[[virtual_server]]
name = "b"
address = "10.0.0.4"
port = 99999
`
	_, err := Parse("all.toml", []byte(src), nil)
	want := `all.toml:2: [global]: router_id: want a string, got integer 1
all.toml:4: [dataplane]: interfaces: want an array, got string "eth0"
all.toml:7: virtual_server "a": address: invalid IP address "10.0.0.300"
all.toml:11: virtual_server "a": real_server 10.0.0.7:80: weight: -1 is out of range (0..65535)
all.toml:15: virtual_server "b": port: 99999 is out of range (1..65535)`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

// Valid corner cases that must not be reported.
func TestValidCorners(t *testing.T) {
	mustParse(t, `[global]
router_id = "t"
[dataplane]
mode = "ipvs"          # no interfaces needed
[metrics]
listen = ""            # disabled
[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
state = "MASTER"
priority = 255         # the address owner
virtual_router_id = 7
virtual_ipaddress = ["10.0.0.3/24 dev eth0 label eth0:vip"]
[[vrrp_instance]]
name = "VI_6"          # same VRID, other family
interface = "eth0"
virtual_router_id = 7
version = 3
advert_int = "40.95s"
virtual_ipaddress = ["2001:db8::3/64"]
[[virtual_server]]
name = "nat"
address = "10.0.0.3"
port = 80
forward = "nat"
vrrp_instance = "VI_1"
sorry_server = "10.1.0.9:8080"
[[virtual_server.real_server]]
address = "10.1.0.7"
port = 8080
[[virtual_server.real_server]]
address = "10.1.0.7"   # same address, other port
port = 8081
[[virtual_server]]
name = "gue6"
address = "2001:db8::3"
port = 80
forward = "tunnel"
tunnel_type = "gue"
tunnel_port = 6080
[[virtual_server.real_server]]
address = "192.0.2.10" # GUE carries IPv6 in IPv4
`)
}

// A VRRPv2 password longer than the field: the first 8 bytes are used, as
// keepalived does, and the file says so as a warning with its line.
func TestWarningLongAuthPass(t *testing.T) {
	src := base + `[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 1
auth_pass = "123456789"
virtual_ipaddress = ["10.0.0.3"]
`
	c, err := Parse("t.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `t.toml:9: vrrp_instance "VI_1": auth_pass: 9 bytes long, the VRRPv2 field holds 8: the first 8 are used (as keepalived does)`
	if len(c.Warnings) != 1 || c.Warnings[0].Error() != want {
		t.Errorf("warnings %v, want [%s]", c.Warnings, want)
	}
	if v := c.VRRPInstances[0]; v.AuthPass != "12345678" || v.AuthType != vrrpnames.AuthPass {
		t.Errorf("auth %v %q, want PASS 12345678", v.AuthType, v.AuthPass)
	}
}
