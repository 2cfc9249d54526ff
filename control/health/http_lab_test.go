package health_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

// webRequest is what the real server saw of a request.
type webRequest struct {
	path, proto, host, conn, from string
}

// webServer serves, in the real server's namespace, "/" (index), "/mrtg/"
// (mrtg, flushed first: chunked over HTTP/1.1), "/missing" (404) and
// "/error" (503), recording each request.
type webServer struct {
	mu   sync.Mutex
	seen []webRequest
}

const (
	indexBody = "<html>index</html>\n"
	mrtgBody  = "<html>mrtg graphs</html>\n"
)

func md5hex(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }

func (l *lab) webServer(t *testing.T, addrs ...string) (*webServer, []netip.AddrPort) {
	w := &webServer{}
	var targets []netip.AddrPort
	for _, a := range addrs {
		ln, _ := l.listen(t, "tcp", a)
		srv := &http.Server{Handler: w}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		targets = append(targets, netip.MustParseAddrPort(ln.Addr().String()))
	}
	return w, targets
}

func (w *webServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.seen = append(w.seen, webRequest{r.URL.Path, r.Proto, r.Host, r.Header.Get("Connection"), r.RemoteAddr})
	w.mu.Unlock()
	switch r.URL.Path {
	case "/":
		fmt.Fprint(rw, indexBody)
	case "/mrtg/":
		rw.(http.Flusher).Flush()
		fmt.Fprint(rw, mrtgBody)
	case "/error":
		rw.WriteHeader(http.StatusServiceUnavailable)
	default:
		http.NotFound(rw, r)
	}
}

func (w *webServer) last() webRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[len(w.seen)-1]
}

func (w *webServer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

func TestHTTPKeepalivedFeatures(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	web, targets := l.webServer(t, "10.77.9.2:8080", "10.77.9.3:8080", "[fd77:9::2]:8080")
	s := labSpec(checktype.HTTP, targets[0])

	// The request line and headers of each http_protocol (keepalived's
	// request_template): 1.0 without Connection, 1.0C and 1.1 with close.
	for _, tc := range []struct{ proto, wantProto, wantConn string }{
		{health.HTTP10, "HTTP/1.0", ""}, {health.HTTP10Close, "HTTP/1.0", "close"},
		{health.HTTP11, "HTTP/1.1", "close"}, {"", "HTTP/1.1", "close"},
	} {
		p := s
		p.HTTPProtocol = tc.proto
		if err := l.check(t, p); err != nil {
			t.Errorf("http_protocol %q: %v", tc.proto, err)
		}
		if r := web.last(); r.proto != tc.wantProto || r.conn != tc.wantConn || r.host != "10.77.9.2:8080" {
			t.Errorf("http_protocol %q: server saw %+v, want %s, Connection %q, Host 10.77.9.2:8080", tc.proto, r, tc.wantProto, tc.wantConn)
		}
	}

	// digest: the MD5 of the body, whole, also when it comes chunked.
	for _, proto := range []string{health.HTTP10, health.HTTP11} {
		d := s
		d.HTTPProtocol, d.Path, d.Digest = proto, "/mrtg/", md5hex(mrtgBody)
		if err := l.check(t, d); err != nil {
			t.Errorf("%s digest of /mrtg/: %v", proto, err)
		}
		d.Digest = md5hex(indexBody)
		if err := l.check(t, d); err == nil || !strings.Contains(err.Error(), "digest "+md5hex(mrtgBody)+", want "+md5hex(indexBody)) {
			t.Errorf("%s wrong digest: got %v", proto, err)
		}
	}

	// Several urls: each is requested in turn and all must pass.
	m := s
	m.URLs = []health.URL{
		{Path: "/", Digest: md5hex(indexBody)},
		{Path: "/mrtg/", BodyRegex: "graphs", Host: "www.example.test"},
		{Path: "/missing", ExpectStatus: []int{404}},
	}
	before := web.count()
	if err := l.check(t, m); err != nil {
		t.Errorf("three urls: %v", err)
	}
	if n := web.count() - before; n != 3 {
		t.Errorf("three urls: %d requests", n)
	}
	if r := web.last(); r.path != "/missing" {
		t.Errorf("last request %+v, want /missing", r)
	}
	web.mu.Lock()
	if h := web.seen[len(web.seen)-2].host; h != "www.example.test" {
		t.Errorf("the url's virtualhost: server saw Host %q", h)
	}
	web.mu.Unlock()
	m.URLs[2].Path = "/error"
	if err := l.check(t, m); err == nil || !strings.Contains(err.Error(), "url /error: http status 503, want 404") {
		t.Errorf("a failing third url: got %v", err)
	}

	// Status ranges, as keepalived's status_code 200-299 400-499.
	r := s
	r.Path = "/missing"
	r.ExpectStatus = append(codes(200, 299), codes(400, 499)...)
	if err := l.check(t, r); err != nil {
		t.Errorf("404 in 400-499: %v", err)
	}
	r.Path = "/error"
	if err := l.check(t, r); err == nil || !strings.Contains(err.Error(), "want 200-299 or 400-499") {
		t.Errorf("503: got %v", err)
	}

	// connect_ip replaces the address (the port stays), bindto the source.
	c := labSpec(checktype.HTTP, netip.AddrPortFrom(none4, 8080))
	c.ConnectIP, c.BindTo = rs4b, dir4b
	if err := l.check(t, c); err != nil {
		t.Errorf("connect_ip, bindto: %v", err)
	}
	if r := web.last(); r.host != "10.77.9.3:8080" || !strings.HasPrefix(r.from, "10.77.9.11:") {
		t.Errorf("connect_ip, bindto: server saw %+v, want Host 10.77.9.3:8080 from 10.77.9.11", r)
	}

	// IPv6: the Host header brackets the address.
	v6 := labSpec(checktype.HTTP, targets[2])
	if err := l.check(t, v6); err != nil {
		t.Errorf("IPv6: %v", err)
	}
	if r := web.last(); r.host != "[fd77:9::2]:8080" {
		t.Errorf("IPv6: Host %q", r.host)
	}
}

func codes(lo, hi int) []int {
	var out []int
	for c := lo; c <= hi; c++ {
		out = append(out, c)
	}
	return out
}

func TestHTTPBadSpecs(t *testing.T) {
	t.Parallel()
	for _, s := range []health.Spec{
		{Digest: "abc"}, {HTTPProtocol: "2"}, {URLs: []health.URL{{Path: "x"}}},
		{URLs: []health.URL{{Digest: "zz"}}}, {Host: "a b"},
	} {
		s.Type, s.Target, s.Interval, s.Timeout, s.Fall, s.Rise = checktype.HTTP, netip.MustParseAddrPort("10.0.0.1:80"), 1e9, 1e9, 1, 1
		if err := s.Validate(); err == nil {
			t.Errorf("%+v: valid", s)
		}
	}
}
