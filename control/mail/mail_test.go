package mail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/mail/mailtest"
	"github.com/xlb-dev/xlb/test/nettest"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// run starts s.Run until the test ends.
func run(t *testing.T, s *Sender) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A real SMTP server receives the alert: keepalived's dialogue (HELO, not
// EHLO; a RCPT TO per address), its headers and body.
func TestDeliver(t *testing.T) {
	srv := mailtest.Serve(listen(t))
	defer srv.Close()
	date := time.Date(2024, 3, 5, 14, 7, 9, 0, time.FixedZone("", 3600))
	s := New(Options{Now: func() time.Time { return date }})
	s.Configure(Settings{Server: srv.Addr(), From: "lb1@example.com", To: []string{"ops@example.com", "acassen"}, Helo: "lb1.example.com", Timeout: 5 * time.Second})
	run(t, s)
	m, ok := InstanceAlert("lb1", "VI_1", "MASTER")
	if !ok {
		t.Fatal("no MASTER alert")
	}
	s.Send(m)
	s.Send(Message{Subject: "dots", Body: ".starts with a dot\n..two\nend"})
	nettest.WaitFor(t, 10*time.Second, "two mails received", func() error {
		if n := len(srv.Mails()); n != 2 {
			return fmt.Errorf("%d mails", n)
		}
		return nil
	})
	wantCmds := []string{"HELO lb1.example.com", "MAIL FROM:<lb1@example.com>", "RCPT TO:<ops@example.com>", "RCPT TO:<acassen>", "DATA", "QUIT"}
	if got := srv.Commands(); !reflect.DeepEqual(got, append(wantCmds, wantCmds...)) {
		t.Errorf("dialogue %q, want twice %q", got, wantCmds)
	}
	got := srv.Mails()[0]
	want := "Date: Tue, 05 Mar 2024 14:07:09 +0100\r\nFrom: lb1@example.com\r\nSubject: [lb1] VRRP Instance VI_1 - Entering MASTER state\r\n" +
		"X-Mailer: xlb\r\nTo: ops@example.com, acassen\r\n\r\n=> VRRP Instance is now owning VRRP VIPs <="
	if got.Data != want || got.From != "lb1@example.com" || !reflect.DeepEqual(got.To, []string{"ops@example.com", "acassen"}) {
		t.Errorf("mail %+v\ndata %q\nwant %q", got, got.Data, want)
	}
	if body := srv.Mails()[1].Body; body != ".starts with a dot\r\n..two\r\nend" {
		t.Errorf("dot-stuffing: body %q", body)
	}
	if st := s.Stats(); st.Sent != 2 || st.Failed != 0 || st.Dropped != 0 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
}

// scripted serves one session answering each line it reads with the next
// reply, after a greeting.
func scripted(t *testing.T, greeting string, replies ...string) string {
	t.Helper()
	ln := listen(t)
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(c, greeting)
		r := bufio.NewReader(c)
		for _, rep := range replies {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			fmt.Fprint(c, rep)
		}
		_, _ = r.ReadString('\n')
	}()
	return ln.Addr().String()
}

// The server's refusals fail the mail, counted, with the reply as error;
// multi-line replies and 251 are accepted.
func TestDeliverRefused(t *testing.T) {
	s := New(Options{})
	for _, tc := range []struct {
		name, greeting string
		replies        []string
		err            string // "" delivered
	}{
		{"multi-line and 251", "220-mail.example.com\r\n220 ready\r\n", []string{"250-hello\r\n250 SIZE 1000\r\n", "250 ok\r\n", "251 will forward\r\n", "354 go\r\n", "250 queued\r\n"}, ""},
		{"no service", "554 no service\r\n", nil, `greeting: the server answered "554 no service" (want 220)`},
		{"recipient refused", "220 hi\r\n", []string{"250 hi\r\n", "250 ok\r\n", "550 no such user\r\n"}, `RCPT: the server answered "550 no such user" (want 250)`},
		{"garbage", "220 hi\r\n", []string{"hello\r\n"}, `HELO: "hello": unexpected SMTP reply`},
		{"endless reply", "220 hi\r\n", []string{strings.Repeat("250-more\r\n", 40)}, "HELO: a reply of more than 32 lines"},
		{"long line", "220 hi\r\n", []string{"250 " + strings.Repeat("x", 2000) + "\r\n"}, "HELO: a reply line longer than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scripted(t, tc.greeting, tc.replies...)
			err := s.deliver(context.Background(), Settings{Server: addr, From: "f@x", To: []string{"a@x"}, Helo: "h", Timeout: 5 * time.Second}, Message{Subject: "s", Body: "b"})
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("not delivered: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// A black-holed server (the connection never completes, or the server
// never answers) costs one timeout per mail to the sender's goroutine and
// nothing to the caller: Send returns at once, the queue stays bounded
// (the oldest dropped, counted), and the failures are counted.
func TestBlackHole(t *testing.T) {
	for _, tc := range []struct {
		name string
		dial func(ctx context.Context, network, addr string) (net.Conn, error)
		addr string
		err  string
	}{
		{"no answer to SYN", func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }, "192.0.2.25:25", "connect to 192.0.2.25:25: context deadline exceeded"},
		{"no greeting", nil, listen(t).Addr().String(), "greeting: read the SMTP server's reply"}, // never accepted: the kernel completes the handshake
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			s := New(Options{QueueSize: 4, Dial: tc.dial})
			s.Configure(Settings{Server: tc.addr, From: "f@x", To: []string{"a@x"}, Helo: "h", Timeout: timeout})
			run(t, s)
			start := time.Now()
			for i := range 100 {
				s.Send(Message{Subject: fmt.Sprintf("alert %d", i), Body: "b"})
			}
			if took := time.Since(start); took > 100*time.Millisecond {
				t.Errorf("100 Sends to a dead server took %v", took)
			}
			st := s.Stats()
			if st.Queued > 5 || st.Dropped < 95 || st.Dropped+uint64(st.Queued) != 100 {
				t.Errorf("stats %+v: want at most 4 queued and 1 being delivered, the rest dropped", st)
			}
			nettest.WaitFor(t, 10*timeout, "a failure counted", func() error {
				if st := s.Stats(); st.Failed == 0 {
					return errors.New("none yet")
				}
				return nil
			})
			if st := s.Stats(); !strings.Contains(st.LastError, tc.err) || time.Since(start) < timeout {
				t.Errorf("last error %q, want %q, not before the timeout", st.LastError, tc.err)
			}
			// Flush is bounded by its context.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := s.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Flush with a dead server: %v", err)
			}
		})
	}
}

// Flush waits for the queue; turning mail off drops what is queued.
func TestFlushAndConfigure(t *testing.T) {
	srv := mailtest.Serve(listen(t))
	defer srv.Close()
	s := New(Options{})
	s.Send(Message{Subject: "before settings"}) // nothing: mail is off
	st := Settings{Server: srv.Addr(), From: "f@x", To: []string{"a@x"}, Helo: "h"}
	s.Configure(st)
	for i := range 3 {
		s.Send(Message{Subject: fmt.Sprint(i)})
	}
	run(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Mails()); n != 3 || s.Stats().Sent != 3 {
		t.Errorf("%d mails received after Flush, stats %+v", n, s.Stats())
	}
	// Turning mail off drops what waits, not what is being delivered.
	dialing := make(chan struct{}, 1)
	s2 := New(Options{Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dialing <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	s2.Configure(Settings{Server: "192.0.2.1:25", From: "f@x", To: []string{"a@x"}, Helo: "h", Timeout: time.Hour})
	run(t, s2)
	s2.Send(Message{Subject: "stuck"})
	<-dialing
	s2.Send(Message{Subject: "queued"})
	s2.Configure(Settings{})
	if st := s2.Stats(); st.Dropped != 1 || st.Queued != 1 {
		t.Errorf("after mail off: %+v, want the queued one dropped, the one in flight left", st)
	}
}

// The alerts read as keepalived's.
func TestAlerts(t *testing.T) {
	var got []string
	add := func(m Message, ok bool) {
		if ok {
			got = append(got, m.Subject+" | "+m.Body)
		}
	}
	for _, st := range []string{"MASTER", "BACKUP", "FAULT", "STOP", "INIT"} {
		add(InstanceAlert("lb1", "VI_1", st))
		add(GroupAlert("lb1", "G", st))
	}
	rs, vs := Trio(netip.MustParseAddr("10.0.0.7"), "tcp", 80), Trio(netip.MustParseAddr("10.0.0.3"), "tcp", 80)
	add(RealServerAlert("lb1", rs, vs, false, "tcp", errors.New("dial tcp 10.0.0.7:80: connect: connection refused\nmore")), true)
	add(RealServerAlert("lb1", rs, GroupName("VSG_1"), true, "http", nil), true)
	add(VirtualServerAlert("lb1", vs, false, 2, 1, 1, 0), true)
	add(VirtualServerAlert("lb1", vs, true, 2, 1, 3, 3), true)
	want := []string{
		"[lb1] VRRP Instance VI_1 - Entering MASTER state | => VRRP Instance is now owning VRRP VIPs <=",
		"[lb1] VRRP Group G - Entering MASTER state | => All VRRP group instances are now in MASTER state <=",
		"[lb1] VRRP Instance VI_1 - Entering BACKUP state | => VRRP Instance is no longer owning VRRP VIPs <=",
		"[lb1] VRRP Group G - Entering BACKUP state | => All VRRP group instances are now in BACKUP state <=",
		"[lb1] VRRP Instance VI_1 - Entering FAULT state | => VRRP Instance is no longer owning VRRP VIPs <=",
		"[lb1] VRRP Group G - Entering FAULT state | => All VRRP group instances are now in FAULT state <=",
		"[lb1] VRRP Instance VI_1 - Stopping | => VRRP Instance stopping <=",
		"[lb1] VRRP Group G - Stopping | => All VRRP group instances are now stopping <=",
		"[lb1] Realserver [10.0.0.7]:tcp:80 of virtual server [10.0.0.3]:tcp:80 - DOWN | => TCP CHECK failed on service: dial tcp 10.0.0.7:80: connect: connection refused more <=",
		"[lb1] Realserver [10.0.0.7]:tcp:80 of virtual server [VSG_1]:0 - UP | => HTTP CHECK succeed on service <=",
		"[lb1] Virtualserver [10.0.0.3]:tcp:80 - DOWN | => Lost quorum 2+1=1 <= 0 <=",
		"[lb1] Virtualserver [10.0.0.3]:tcp:80 - UP | => Gained quorum 2+1=3 <= 3 <=",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
