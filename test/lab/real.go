package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Real is a real server: an HTTP server answering "<name>\n" (on port 80,
// or NATPort behind NAT) and a TCP echo service on EchoPort.
type Real struct {
	lab   *Lab
	Index int
	Name  string
	NS    *nettest.NS
	Addr  netip.Addr
	Addr6 netip.Addr

	mu         sync.Mutex
	web        net.Listener
	echo       net.Listener // nil while killed
	conns      map[net.Conn]bool
	serving    bool
	extra      map[int]net.Listener // ServeWeb ports, while served
	extraPorts []int
	echoPorts  map[int]net.Listener // ServeEcho ports, while served
}

func (r *Real) webPort() int {
	if r.lab.Spec.Layout == NAT {
		return NATPort
	}
	return WebPort
}

func (r *Real) start() {
	r.lab.T.Helper()
	r.conns = map[net.Conn]bool{}
	r.StartWeb()
	r.startEcho()
	r.lab.T.Cleanup(r.Kill)
}

func (r *Real) startEcho() {
	r.lab.T.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.echo != nil {
		return
	}
	if err := r.NS.Do(func() (err error) {
		r.echo, err = net.Listen("tcp", fmt.Sprintf(":%d", EchoPort))
		return err
	}); err != nil {
		r.lab.T.Fatalf("%s echo: %v", r.Name, err)
	}
	go r.serveEcho(r.echo)
}

// Kill stops everything the real server serves, as if its processes died:
// the HTTP servers and the echo service stop listening and the echo
// connections are closed.
func (r *Real) Kill() {
	r.StopWeb()
	r.mu.Lock()
	defer r.mu.Unlock()
	for port, ln := range r.extra {
		ln.Close()
		delete(r.extra, port)
	}
	for port, ln := range r.echoPorts {
		ln.Close()
		delete(r.echoPorts, port)
	}
	if r.echo != nil {
		r.echo.Close()
		r.echo = nil
	}
	for c := range r.conns {
		c.Close()
	}
}

// Restart brings back what Kill stopped (the extra web ports too).
func (r *Real) Restart() {
	r.lab.T.Helper()
	r.StartWeb()
	r.startEcho()
	r.mu.Lock()
	ports := r.extraPorts
	r.mu.Unlock()
	for _, p := range ports {
		r.ServeWeb(p)
	}
}

// ServeWeb serves HTTP on one more port (for services added on other
// ports); Kill stops it, Restart brings it back.
func (r *Real) ServeWeb(port int) {
	r.lab.T.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.extra == nil {
		r.extra = map[int]net.Listener{}
	}
	if r.extra[port] != nil {
		return
	}
	ln := r.listen(port, "web")
	r.extra[port] = ln
	if !slices.Contains(r.extraPorts, port) {
		r.extraPorts = append(r.extraPorts, port)
	}
	go func() { _ = r.httpServer().Serve(ln) }()
}

func (r *Real) httpServer() *http.Server {
	name := r.Name
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprintln(w, name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
}

// hasEchoPeer reports whether the echo service holds a connection from
// addr ("ip:port"; DR and NAT keep the client's address).
func (r *Real) hasEchoPeer(addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		if c.RemoteAddr().String() == addr {
			return true
		}
	}
	return false
}

// echoServerOf names the real server whose echo service holds the
// connection from the client address local ("?" if none does).
func (l *Lab) echoServerOf(local string) string {
	for _, r := range l.Reals {
		if r.hasEchoPeer(local) {
			return r.Name
		}
	}
	return "?"
}

// StartWeb starts (again) the HTTP server.
func (r *Real) StartWeb() {
	r.lab.T.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serving {
		return
	}
	var ln net.Listener
	if err := r.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", r.webPort()))
		return err
	}); err != nil {
		r.lab.T.Fatalf("%s web: %v", r.Name, err)
	}
	r.web, r.serving = ln, true
	srv := r.httpServer()
	go func() { _ = srv.Serve(ln) }()
}

// StopWeb kills the HTTP server on the web port (new connections are
// refused); the echo service and ServeWeb ports stay.
func (r *Real) StopWeb() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.serving {
		r.web.Close()
		r.serving = false
	}
}

func (r *Real) serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		go func() {
			_, _ = io.Copy(c, c)
			c.Close()
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
		}()
	}
}

// listen opens a TCP listener on port in the real server's namespace, for
// the service what (in a fatal error).
func (r *Real) listen(port int, what string) net.Listener {
	r.lab.T.Helper()
	var ln net.Listener
	if err := r.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		r.lab.T.Fatalf("%s %s on %d: %v", r.Name, what, port, err)
	}
	return ln
}
