package lab

import "net"

// ServeEcho serves the echo service on one more port (a service of its
// own there); Kill stops it.
func (r *Real) ServeEcho(port int) {
	r.lab.T.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.echoPorts == nil {
		r.echoPorts = map[int]net.Listener{}
	}
	if r.echoPorts[port] != nil {
		return
	}
	ln := r.listen(port, "echo")
	r.echoPorts[port] = ln
	go r.serveEcho(ln)
}
