package lab

import (
	"fmt"
	"net"
)

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
	var ln net.Listener
	if err := r.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		r.lab.T.Fatalf("%s echo on %d: %v", r.Name, port, err)
	}
	r.echoPorts[port] = ln
	go r.serveEcho(ln)
}
