package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// maxBody is how much of the response body is read to match BodyRegex.
const maxBody = 1 << 20

// httpChecker sends one GET and checks the status code and, optionally, the
// body. Redirects are not followed (their status is compared like any
// other), proxies from the environment are not used and connections are
// not kept alive, so an idle checker holds no socket and no goroutine.
type httpChecker struct {
	url    string
	host   string
	expect []int
	body   *regexp.Regexp
	client *http.Client
}

func newHTTPChecker(s Spec) (*httpChecker, error) {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{}).DialContext,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	scheme := "http"
	if s.Type == TypeHTTPS {
		scheme = "https"
		cfg, err := tlsConfig(s)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	path := s.Path
	if path == "" {
		path = "/"
	}
	c := &httpChecker{
		url:    scheme + "://" + s.Target.String() + path,
		host:   s.Host,
		expect: slices.Clone(s.ExpectStatus),
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	if s.BodyRegex != "" {
		re, err := regexp.Compile(s.BodyRegex)
		if err != nil {
			return nil, fmt.Errorf("body regex: %w", err)
		}
		c.body = re
	}
	return c, nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return fmt.Errorf("http request: %w", err)
	}
	if c.host != "" {
		req.Host = c.host
	}
	req.Header.Set("User-Agent", "xlb-healthcheck")
	resp, err := c.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is the target: do not repeat it
		}
		return fmt.Errorf("http get: %w", err)
	}
	defer resp.Body.Close()
	if !c.statusOK(resp.StatusCode) {
		return fmt.Errorf("http status %d, want %s", resp.StatusCode, c.want())
	}
	if c.body == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("http body: %w", err)
	}
	if !c.body.Match(body) {
		return fmt.Errorf("http body does not match %q", c.body.String())
	}
	return nil
}

func (c *httpChecker) statusOK(code int) bool {
	if len(c.expect) == 0 {
		return code >= 200 && code <= 299
	}
	return slices.Contains(c.expect, code)
}

func (c *httpChecker) want() string {
	if len(c.expect) == 0 {
		return "2xx"
	}
	s := make([]string, len(c.expect))
	for i, code := range c.expect {
		s[i] = fmt.Sprint(code)
	}
	return strings.Join(s, " or ")
}
