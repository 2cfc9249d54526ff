package mail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Bounds on what the server may answer, so that a broken or hostile
// server costs bounded memory.
const (
	maxReplyLine  = 1024 // bytes of one reply line
	maxReplyLines = 32   // lines of one multi-line reply
)

// deliver sends m in one SMTP session, as keepalived's smtp.c does: the
// greeting (220), HELO (250), MAIL FROM (250), RCPT TO for each address
// (250 or 251), DATA (354), the message and its dot (250), QUIT (any
// answer). Every step, the connection included, has st.Timeout; ctx
// cancels the session.
func (s *Sender) deliver(ctx context.Context, st Settings, m Message) error {
	dctx, cancel := context.WithTimeout(ctx, st.Timeout)
	conn, err := s.dialer(st.Timeout)(dctx, "tcp", st.Server)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to %s: %w", st.Server, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c := &session{conn: conn, r: bufio.NewReaderSize(conn, maxReplyLine), timeout: st.Timeout}
	if err := c.expect("greeting", 220); err != nil {
		return err
	}
	if err := c.cmd(250, "HELO %s", st.Helo); err != nil {
		return err
	}
	if err := c.cmd(250, "MAIL FROM:<%s>", st.From); err != nil {
		return err
	}
	for _, to := range st.To {
		if err := c.cmd(250, "RCPT TO:<%s>", to); err != nil {
			return err
		}
	}
	if err := c.cmd(354, "DATA"); err != nil {
		return err
	}
	if err := c.write(message(st, m, s.now())); err != nil {
		return err
	}
	if err := c.expect("message", 250); err != nil {
		return err
	}
	_ = c.cmd(0, "QUIT") // the mail is accepted: QUIT's answer does not matter (keepalived's quit_code)
	return nil
}

func (s *Sender) dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.dial != nil {
		return s.dial
	}
	d := &net.Dialer{Timeout: timeout}
	return d.DialContext
}

// session is one SMTP connection.
type session struct {
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// cmd sends a command and reads its reply, which must be want (0: any;
// 250 also takes 251, "user not local; will forward", for RCPT).
func (c *session) cmd(want int, format string, args ...any) error {
	line := fmt.Sprintf(format, args...)
	if err := c.write(line + "\r\n"); err != nil {
		return err
	}
	verb, _, _ := strings.Cut(line, " ")
	verb, _, _ = strings.Cut(verb, ":")
	return c.expect(verb, want)
}

func (c *session) write(s string) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		return fmt.Errorf("send to SMTP server: %w", err)
	}
	return nil
}

// errReply is a reply the server should not have given.
var errReply = errors.New("unexpected SMTP reply")

// expect reads a reply (its last line has the code) within the timeout.
func (c *session) expect(step string, want int) error {
	_ = c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	for range maxReplyLines {
		line, err := c.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%s: a reply line longer than %d bytes: %w", step, maxReplyLine, errReply)
		}
		if err != nil {
			return fmt.Errorf("%s: read the SMTP server's reply: %w", step, err)
		}
		text := strings.TrimRight(string(line), "\r\n")
		if len(text) < 3 {
			return fmt.Errorf("%s: %q: %w", step, text, errReply)
		}
		code, err := strconv.Atoi(text[:3])
		if err != nil {
			return fmt.Errorf("%s: %q: %w", step, text, errReply)
		}
		if len(text) > 3 && text[3] == '-' {
			continue // a multi-line reply goes on
		}
		if want != 0 && code != want && !(want == 250 && code == 251) {
			return fmt.Errorf("%s: the server answered %q (want %d): %w", step, text, want, errReply)
		}
		return nil
	}
	return fmt.Errorf("%s: a reply of more than %d lines: %w", step, maxReplyLines, errReply)
}

// message is the DATA of an alert, as keepalived writes it (Date, From,
// Subject, X-Mailer, To, then the body), each line ending in CRLF, lines
// starting with a dot doubled (RFC 5321 4.5.2), and the final dot.
func message(st Settings, m Message, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: %s\r\n", st.From)
	fmt.Fprintf(&b, "Subject: %s\r\n", oneLine(m.Subject))
	b.WriteString("X-Mailer: xlb\r\n")
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(st.To, ", "))
	b.WriteString("\r\n")
	for _, l := range strings.Split(strings.ReplaceAll(m.Body, "\r", ""), "\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l + "\r\n")
	}
	b.WriteString(".\r\n")
	return b.String()
}

// oneLine keeps a header on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
