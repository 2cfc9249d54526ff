package health_test

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// smtpServer is an SMTP server in the real server's namespace that speaks
// as its script says: greeting, the reply to HELO, the reply to QUIT ("" to
// close instead of answering; "-" to say nothing and wait).
type smtpServer struct {
	mu                   sync.Mutex
	greeting, helo, quit string
	helos                []string
}

func (l *lab) smtpServer(t *testing.T, addr string) (*smtpServer, netip.AddrPort) {
	ln, _ := l.listen(t, "tcp", addr)
	s := &smtpServer{greeting: "220 mx.rs.test ESMTP", helo: "250 mx.rs.test", quit: "221 2.0.0 bye"}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s, netip.MustParseAddrPort(ln.Addr().String())
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	greeting, helo, quit := s.greeting, s.helo, s.quit
	s.mu.Unlock()
	r := bufio.NewReader(c)
	say := func(line string) bool {
		switch line {
		case "":
			return false
		case "-":
			_, _ = r.ReadString(0) // until the client gives up
			return false
		}
		_, err := c.Write([]byte(line + "\r\n"))
		return err == nil
	}
	if !say(greeting) {
		return
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	s.mu.Lock()
	s.helos = append(s.helos, strings.TrimRight(line, "\r\n"))
	s.mu.Unlock()
	if !say(helo) {
		return
	}
	if line, err = r.ReadString('\n'); err != nil || strings.TrimSpace(line) != "QUIT" {
		return
	}
	say(quit)
}

func TestSMTP(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	srv, target := l.smtpServer(t, "10.77.9.2:2525")
	_, target6 := l.smtpServer(t, "[fd77:9::2]:2525")
	s := labSpec(checktype.SMTP, target)
	s.HeloName = "director.example.test"
	set := func(greeting, helo, quit string) {
		srv.mu.Lock()
		srv.greeting, srv.helo, srv.quit = greeting, helo, quit
		srv.mu.Unlock()
	}
	if err := l.check(t, s); err != nil {
		t.Errorf("healthy server: %v", err)
	}
	srv.mu.Lock()
	if len(srv.helos) != 1 || srv.helos[0] != "HELO director.example.test" {
		t.Errorf("server saw %q, want HELO director.example.test", srv.helos)
	}
	srv.mu.Unlock()
	s6 := s
	s6.Target = target6
	if err := l.check(t, s6); err != nil {
		t.Errorf("IPv6: %v", err)
	}

	for _, tc := range []struct {
		greeting, helo, quit string
		wantErr              string
	}{
		{"220-mx.rs.test ESMTP\r\n220-more\r\n220 done", "250-mx.rs.test\r\n250 SIZE 100", "221 bye", ""}, // multi-line replies
		{"220 mx", "250 ok", "500 whatever", ""},                                                          // any answer to QUIT (keepalived reads it unchecked)
		{"554 no service", "250 ok", "221 bye", "smtp greeting: 554"},                                     // keepalived: "Bad greeting banner"
		{"220 mx", "501 bad HELO", "221 bye", "smtp HELO: 501"},
		{"220 mx", "250 ok", "", "smtp QUIT"}, // closed instead of answering
		{"220 mx", "-", "", "smtp HELO"},      // silent: the timeout
		{"hello there", "250 ok", "221 bye", "smtp greeting"},
	} {
		set(tc.greeting, tc.helo, tc.quit)
		err := l.check(t, s)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q/%q/%q: %v", tc.greeting, tc.helo, tc.quit, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q/%q/%q: got %v, want an error with %q", tc.greeting, tc.helo, tc.quit, err, tc.wantErr)
		}
	}

	refused := labSpec(checktype.SMTP, netip.AddrPortFrom(rs4, 2526))
	if err := l.check(t, refused); err == nil || !strings.Contains(err.Error(), "smtp connect") {
		t.Errorf("closed port: got %v", err)
	}
}
