package health

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// maxBody is how much of the response body is kept to match BodyRegex
// (the digest covers all of it).
const maxBody = 1 << 20

// maxHeader bounds the response's status line and headers.
const maxHeader = 64 << 10

// httpChecker sends a GET for each URL and checks its status code and,
// optionally, the body's MD5 digest and a regexp, as keepalived's
// HTTP_GET and SSL_GET (check_http.c, http_request_thread and
// http_handle_response): every URL must pass. Each request has its own
// connection, closed after the response; redirects are not followed
// (their status is compared like any other), no proxy is used, so an idle
// checker holds no socket and no goroutine.
type httpChecker struct {
	target netip.AddrPort
	dialer *net.Dialer
	tls    *tls.Config // nil: plain HTTP
	proto  string
	urls   []httpURL
}

// httpURL is one URL to GET, its defaults resolved.
type httpURL struct {
	path   string
	host   string // the Host header
	expect []int  // empty: any 2xx
	body   *regexp.Regexp
	digest []byte
}

func newHTTPChecker(s Spec) (*httpChecker, error) {
	c := &httpChecker{target: s.target(), dialer: dialer(s, "tcp"), proto: s.HTTPProtocol}
	if c.proto == "" {
		c.proto = HTTP11
	}
	if s.Type == checktype.HTTPS {
		cfg, err := tlsConfig(s)
		if err != nil {
			return nil, err
		}
		c.tls = cfg
	}
	urls := s.URLs
	if len(urls) == 0 {
		urls = []URL{{Path: s.Path, ExpectStatus: s.ExpectStatus, BodyRegex: s.BodyRegex, Digest: s.Digest}}
	}
	for _, u := range urls {
		hu := httpURL{path: u.Path, host: u.Host, expect: slices.Clone(u.ExpectStatus)}
		if hu.path == "" {
			hu.path = "/"
		}
		if hu.host == "" {
			hu.host = s.Host
		}
		if hu.host == "" {
			hu.host = c.target.String() // keepalived: ADDR:PORT, [ADDR6]:PORT
		}
		if u.BodyRegex != "" {
			re, err := regexp.Compile(u.BodyRegex)
			if err != nil {
				return nil, fmt.Errorf("body regex: %w", err)
			}
			hu.body = re
		}
		if u.Digest != "" {
			d, err := parseDigest(u.Digest)
			if err != nil {
				return nil, err
			}
			hu.digest = d
		}
		c.urls = append(c.urls, hu)
	}
	return c, nil
}

// validHTTP checks the HTTP part of a Spec.
func validHTTP(s Spec) error {
	switch s.HTTPProtocol {
	case "", HTTP10, HTTP10Close, HTTP11:
	default:
		return fmt.Errorf("http protocol %q: want %s, %s or %s", s.HTTPProtocol, HTTP10, HTTP10Close, HTTP11)
	}
	urls := append([]URL{{Path: s.Path, ExpectStatus: s.ExpectStatus, BodyRegex: s.BodyRegex, Digest: s.Digest}}, s.URLs...)
	for _, u := range urls {
		for _, c := range u.ExpectStatus {
			if c < 100 || c > 599 {
				return fmt.Errorf("expected status %d: not an HTTP status code", c)
			}
		}
		if _, err := regexp.Compile(u.BodyRegex); err != nil {
			return fmt.Errorf("body regex: %w", err)
		}
		if u.Path != "" && u.Path[0] != '/' {
			return fmt.Errorf("path %q: must start with /", u.Path)
		}
		if strings.ContainsAny(u.Path+u.Host, " \t\r\n") {
			return fmt.Errorf("path %q, host %q: no white space allowed", u.Path, u.Host)
		}
		if u.Digest != "" {
			if _, err := parseDigest(u.Digest); err != nil {
				return err
			}
		}
	}
	if strings.ContainsAny(s.Host, " \t\r\n") {
		return fmt.Errorf("host %q: no white space allowed", s.Host)
	}
	return nil
}

// parseDigest reads an MD5 digest written as 32 hex digits.
func parseDigest(s string) ([]byte, error) {
	d, err := hex.DecodeString(s)
	if err != nil || len(d) != md5.Size {
		return nil, fmt.Errorf("digest %q: want 32 hex digits (an MD5 digest)", s)
	}
	return d, nil
}

// tlsConfig builds the client TLS configuration of an HTTPS check.
func tlsConfig(s Spec) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         s.SNI,
		InsecureSkipVerify: !s.TLSVerify, // the operator asked not to verify
	}
	if cfg.ServerName == "" {
		cfg.ServerName = s.Host
	}
	if cfg.ServerName == "" && s.TLSVerify {
		// As net/http: the certificate is verified for the address, and
		// crypto/tls sends no server name for an IP address.
		cfg.ServerName = s.target().Addr().String()
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificate found", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (c *httpChecker) Check(ctx context.Context) error {
	for _, u := range c.urls {
		if err := c.get(ctx, u); err != nil {
			if len(c.urls) > 1 {
				return fmt.Errorf("url %s: %w", u.path, err)
			}
			return err
		}
	}
	return nil
}

// get checks one URL.
func (c *httpChecker) get(ctx context.Context, u httpURL) error {
	conn, err := c.dialer.DialContext(ctx, "tcp", c.target.String())
	if err != nil {
		return fmt.Errorf("http get: %w", err)
	}
	defer conn.Close()
	// The context bounds every read and write.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(deadlinePast) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if c.tls != nil {
		tc := tls.Client(conn, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("http get: %w", ctxErr(ctx, err))
		}
		conn = tc
	}
	if _, err := io.WriteString(conn, c.request(u)); err != nil {
		return fmt.Errorf("http get: %w", ctxErr(ctx, err))
	}
	lr := &limitedReader{r: conn, n: maxHeader}
	resp, err := http.ReadResponse(bufio.NewReader(lr), &http.Request{Method: http.MethodGet})
	if err != nil {
		return fmt.Errorf("http get: %w", ctxErr(ctx, err))
	}
	defer resp.Body.Close()
	lr.n = math.MaxInt // the header is read: the body is not limited by it
	if !statusOK(u.expect, resp.StatusCode) {
		return fmt.Errorf("http status %d, want %s", resp.StatusCode, want(u.expect))
	}
	if u.body == nil && u.digest == nil {
		return nil
	}
	var h hash.Hash
	var kept headBuffer
	w := io.Writer(&kept)
	if u.digest != nil {
		h = md5.New()
		w = io.MultiWriter(h, &kept)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("http body: %w", ctxErr(ctx, err))
	}
	if h != nil {
		if sum := h.Sum(nil); !slices.Equal(sum, u.digest) {
			return fmt.Errorf("http body digest %x, want %x", sum, u.digest)
		}
	}
	if u.body != nil && !u.body.Match(kept.b) {
		return fmt.Errorf("http body does not match %q", u.body.String())
	}
	return nil
}

// request is the GET of u as keepalived writes it (check_http.c,
// request_template), with xlb's User-Agent.
func (c *httpChecker) request(u httpURL) string {
	var b strings.Builder
	version := "1.0"
	if c.proto == HTTP11 {
		version = "1.1"
	}
	fmt.Fprintf(&b, "GET %s HTTP/%s\r\nUser-Agent: xlb-healthcheck\r\n", u.path, version)
	if c.proto != HTTP10 {
		b.WriteString("Connection: close\r\n")
	}
	fmt.Fprintf(&b, "Host: %s\r\n\r\n", u.host)
	return b.String()
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return cerr
	}
	return err
}

func statusOK(expect []int, code int) bool {
	if len(expect) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(expect, code)
}

// want describes the accepted codes, ranges folded ("200-299 or 404").
func want(expect []int) string {
	if len(expect) == 0 {
		return "2xx"
	}
	codes := slices.Sorted(slices.Values(expect))
	var parts []string
	for i := 0; i < len(codes); {
		j := i
		for j+1 < len(codes) && codes[j+1] <= codes[j]+1 {
			j++
		}
		if codes[j] > codes[i] {
			parts = append(parts, fmt.Sprintf("%d-%d", codes[i], codes[j]))
		} else {
			parts = append(parts, fmt.Sprint(codes[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, " or ")
}

// headBuffer keeps the first maxBody bytes written to it.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := maxBody - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// limitedReader fails a read past n bytes, so a header without an end
// cannot grow without bound.
type limitedReader struct {
	r io.Reader
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("response header longer than 64 KiB")
	}
	p = p[:min(len(p), l.n)]
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}
