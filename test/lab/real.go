package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
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

	mu      sync.Mutex
	web     net.Listener
	echo    net.Listener
	conns   map[net.Conn]bool
	serving bool
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
	if err := r.NS.Do(func() (err error) {
		r.echo, err = net.Listen("tcp", fmt.Sprintf(":%d", EchoPort))
		return err
	}); err != nil {
		r.lab.T.Fatalf("%s echo: %v", r.Name, err)
	}
	go r.serveEcho(r.echo)
	r.lab.T.Cleanup(func() {
		r.StopWeb()
		r.echo.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
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
	name := r.Name
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprintln(w, name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
}

// StopWeb kills the HTTP server (new connections are refused).
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
