package health_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health"
	"github.com/xlb-dev/xlb/control/health/checktype"
)

// rsServer is a real HTTP server on loopback whose behaviour a test switches.
type rsServer struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	body   string
	slow   bool
	hosts  []string // Host headers seen
	snis   []string // TLS server names seen
}

func newRSServer(t *testing.T, tlsCert *tls.Certificate) *rsServer {
	t.Helper()
	rs := &rsServer{status: http.StatusOK, body: "all healthy\n"}
	rs.Server = httptest.NewUnstartedServer(http.HandlerFunc(rs.serve))
	rs.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	if tlsCert != nil {
		rs.TLS = &tls.Config{
			Certificates: []tls.Certificate{*tlsCert},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				rs.mu.Lock()
				rs.snis = append(rs.snis, hello.ServerName)
				rs.mu.Unlock()
				return nil, nil
			},
		}
		rs.StartTLS()
	} else {
		rs.Start()
	}
	t.Cleanup(rs.Close)
	return rs
}

func (rs *rsServer) serve(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	status, body, slow := rs.status, rs.body, rs.slow
	rs.hosts = append(rs.hosts, r.Host)
	rs.mu.Unlock()
	if slow {
		<-r.Context().Done() // until the checker gives up
		return
	}
	if status == http.StatusFound {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}

func (rs *rsServer) set(f func(rs *rsServer)) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f(rs)
}

func (rs *rsServer) seen() (hosts, snis []string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.hosts...), append([]string(nil), rs.snis...)
}

func httpSpec(t *testing.T, rs *rsServer) health.Spec {
	s := health.Spec{Type: checktype.HTTP, Interval: time.Second, Timeout: 5 * time.Second, Fall: 1, Rise: 1, Path: "/healthz"}
	s.Target = addrPort(t, rs.Listener.Addr())
	if rs.TLS != nil {
		s.Type = checktype.HTTPS
	}
	return s
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	s := httpSpec(t, rs)

	if err := check(t, s); err != nil {
		t.Errorf("healthy server: %v", err)
	}
	hosts, _ := rs.seen()
	if want := s.Target.String(); len(hosts) != 1 || hosts[0] != want {
		t.Errorf("Host headers %q, want [%s]", hosts, want)
	}

	rs.set(func(rs *rsServer) { rs.status = http.StatusInternalServerError })
	if err := check(t, s); err == nil || !strings.Contains(err.Error(), "status 500, want 2xx") {
		t.Errorf("500: got %v, want a status error", err)
	}
	s500 := s
	s500.ExpectStatus = []int{200, 500}
	if err := check(t, s500); err != nil {
		t.Errorf("500 with expect_status [200 500]: %v", err)
	}
	s204 := s
	s204.ExpectStatus = []int{204}
	rs.set(func(rs *rsServer) { rs.status = http.StatusOK })
	if err := check(t, s204); err == nil || !strings.Contains(err.Error(), "status 200, want 204") {
		t.Errorf("200 with expect_status [204]: got %v", err)
	}

	rs.set(func(rs *rsServer) { rs.status = http.StatusFound })
	if err := check(t, s); err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Errorf("redirect: got %v, want status 302 (not followed)", err)
	}
	rs.set(func(rs *rsServer) { rs.status = http.StatusOK })

	sb := s
	sb.BodyRegex = `\bhealthy\b`
	if err := check(t, sb); err != nil {
		t.Errorf("matching body: %v", err)
	}
	rs.set(func(rs *rsServer) { rs.body = "unhealthy: disk full" })
	if err := check(t, sb); err == nil || !strings.Contains(err.Error(), "body does not match") {
		t.Errorf("wrong body: got %v", err)
	}

	sh := s
	sh.Host = "www.example.test"
	if err := check(t, sh); err != nil {
		t.Errorf("Host header: %v", err)
	}
	if hosts, _ := rs.seen(); hosts[len(hosts)-1] != "www.example.test" {
		t.Errorf("server saw Host %q, want www.example.test", hosts[len(hosts)-1])
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	rs := newRSServer(t, nil)
	rs.set(func(rs *rsServer) { rs.slow = true })
	s := httpSpec(t, rs)
	s.Timeout = 200 * time.Millisecond
	start := time.Now()
	err := check(t, s)
	if err == nil {
		t.Fatal("slow server: no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slow server: check took %v, timeout was %v", d, s.Timeout)
	}
	t.Logf("slow server: %v", err)
}

func TestHTTPRefused(t *testing.T) {
	t.Parallel()
	s := health.Spec{Type: checktype.HTTP, Target: closedPort(t), Interval: time.Second, Timeout: 5 * time.Second, Fall: 1, Rise: 1}
	if err := check(t, s); err == nil {
		t.Fatal("closed port: no error")
	}
}

// selfSigned returns a self-signed CA certificate for rs.example.test and
// writes it, PEM encoded, to a file whose path it returns.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rs.example.test"},
		DNSNames:              []string{"rs.example.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

func TestHTTPS(t *testing.T) {
	t.Parallel()
	cert, caFile := selfSigned(t)
	rs := newRSServer(t, &cert)
	base := httpSpec(t, rs)
	base.SNI = "rs.example.test"

	for _, tc := range []struct {
		name    string
		verify  bool
		caFile  string
		sni     string
		wantErr string // "" for success
	}{
		{name: "verify off", sni: "rs.example.test"},
		{name: "verify on, system roots", verify: true, sni: "rs.example.test", wantErr: "certificate signed by unknown authority"},
		{name: "verify on, ca file", verify: true, caFile: caFile, sni: "rs.example.test"},
		{name: "verify on, ca file, wrong name", verify: true, caFile: caFile, sni: "other.example.test", wantErr: "not other.example.test"},
		{name: "verify off, no sni", sni: ""},
	} {
		s := base
		s.TLSVerify, s.CAFile, s.SNI = tc.verify, tc.caFile, tc.sni
		err := check(t, s)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
		_, snis := rs.seen()
		if got := snis[len(snis)-1]; got != tc.sni {
			t.Errorf("%s: server saw SNI %q, want %q", tc.name, got, tc.sni)
		}
	}

	// The Host header is the server name when no SNI is given.
	s := base
	s.SNI, s.Host, s.TLSVerify, s.CAFile = "", "rs.example.test", true, caFile
	if err := check(t, s); err != nil {
		t.Errorf("host as server name: %v", err)
	}
	if _, snis := rs.seen(); snis[len(snis)-1] != "rs.example.test" {
		t.Errorf("server saw SNI %q, want rs.example.test", snis[len(snis)-1])
	}
}

func TestHTTPSBadCAFile(t *testing.T) {
	t.Parallel()
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := health.Spec{Type: checktype.HTTPS, Target: closedPort(t), Interval: time.Second, Timeout: time.Second, Fall: 1, Rise: 1, TLSVerify: true}
	for _, f := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		s.CAFile = f
		if _, err := health.NewChecker(s); err == nil {
			t.Errorf("ca file %s: no error", f)
		} else {
			t.Logf("ca file: %v", err)
		}
	}
}
