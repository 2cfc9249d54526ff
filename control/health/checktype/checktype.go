// Package checktype declares the health-check types once, with what each
// layer needs of them: the configuration reads the names and which keys
// apply, control/health builds each type's checker, the keepalived
// importer and config/README.md read keepalived's name and the doc. It
// imports only the standard library, so that config may import it
// (control/health itself imports config, through control/command).
//
// A new check type is an entry in Table, its checker in a file of its own
// in control/health with its constructor in health's checkers, its own
// keys in config/keys.go, and tests.
package checktype

// Type is the kind of a health check.
type Type string

// The check types.
const (
	TCP    Type = "tcp"    // TCP connect
	HTTP   Type = "http"   // HTTP GET
	HTTPS  Type = "https"  // HTTP GET over TLS
	UDP    Type = "udp"    // a datagram, no ICMP error (or a reply)
	DNS    Type = "dns"    // a query answered without error
	SMTP   Type = "smtp"   // greeting, HELO and QUIT
	Ping   Type = "ping"   // ICMP or ICMPv6 echo
	File   Type = "file"   // a number in a file
	Script Type = "script" // external program, exit 0 = up
	None   Type = "none"   // no check: always up
)

// Spec is what each layer needs of a check type.
type Spec struct {
	Type Type
	// Doc says what a check does, for config/README.md.
	Doc string
	// Keepalived is keepalived's checker; "" none.
	Keepalived string
	// Net: the check opens a socket to the real server (connect_ip and
	// bindto apply).
	Net bool
	// Port: the check needs a port (the real server's, or its own).
	Port bool
}

// Table declares every check type, in a stable order.
var Table = []Spec{
	{Type: TCP, Keepalived: "TCP_CHECK", Net: true, Port: true, Doc: "a TCP SYN"},
	{Type: HTTP, Keepalived: "HTTP_GET", Net: true, Port: true, Doc: "HTTP GET"},
	{Type: HTTPS, Keepalived: "SSL_GET", Net: true, Port: true, Doc: "HTTPS GET"},
	{Type: UDP, Keepalived: "UDP_CHECK", Net: true, Port: true, Doc: "a UDP datagram"},
	{Type: DNS, Keepalived: "DNS_CHECK", Net: true, Port: true, Doc: "a DNS query"},
	{Type: SMTP, Keepalived: "SMTP_CHECK", Net: true, Port: true, Doc: "an SMTP greeting"},
	{Type: Ping, Keepalived: "PING_CHECK", Net: true, Doc: "an ICMP echo"},
	{Type: File, Keepalived: "FILE_CHECK", Doc: "a number in a file"},
	{Type: Script, Keepalived: "MISC_CHECK", Doc: "a script's exit status"},
	{Type: None, Doc: "always healthy"},
}

// Spec returns the declaration of t; false if t is unknown.
func (t Type) Spec() (Spec, bool) {
	for _, s := range Table {
		if s.Type == t {
			return s, true
		}
	}
	return Spec{}, false
}

// Types returns the types of Table for which keep is true (all with nil).
func Types(keep func(Spec) bool) []Type {
	var out []Type
	for _, s := range Table {
		if keep == nil || keep(s) {
			out = append(out, s.Type)
		}
	}
	return out
}
