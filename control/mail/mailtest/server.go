// Package mailtest is an SMTP server for tests: it speaks the dialogue
// keepalived and xlb use (HELO, MAIL FROM, RCPT TO, DATA, QUIT) and
// records every mail and command it receives.
package mailtest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// maxData bounds a mail's DATA; maxLine a command.
const (
	maxData = 1 << 20
	maxLine = 4096
)

// Mail is one message received.
type Mail struct {
	Helo string
	From string   // MAIL FROM's address, without < >
	To   []string // each RCPT TO's
	// Data is the DATA as received, the dots unstuffed, lines joined
	// with CRLF, without the final dot.
	Data string
	// Headers are Data's headers by name; Body what follows the blank
	// line.
	Headers map[string]string
	Body    string
	At      time.Time
}

// Server serves SMTP on a listener until Close.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	mails    []Mail
	commands []string
	conns    map[net.Conn]bool
	closed   bool
}

// Serve serves on ln (which the Server closes).
func Serve(ln net.Listener) *Server {
	s := &Server{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// Addr is the address served.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Mails returns the mails received so far.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Commands returns every command received, in order, across sessions
// (DATA's content excluded).
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Close stops serving and waits for the sessions to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, maxLine)
	reply := func(format string, args ...any) bool {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := fmt.Fprintf(c, format+"\r\n", args...)
		return err == nil
	}
	if !reply("220 mailtest ESMTP ready") {
		return
	}
	var m Mail
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(string(line), "\r\n")
		s.mu.Lock()
		s.commands = append(s.commands, cmd)
		s.mu.Unlock()
		verb, arg, _ := strings.Cut(cmd, " ")
		switch v := strings.ToUpper(verb); {
		case v == "HELO" || v == "EHLO":
			m = Mail{Helo: arg}
			reply("250 mailtest")
		case v == "MAIL" && strings.HasPrefix(strings.ToUpper(arg), "FROM:"):
			m.From = strings.Trim(arg[len("FROM:"):], "<>")
			reply("250 OK")
		case v == "RCPT" && strings.HasPrefix(strings.ToUpper(arg), "TO:"):
			m.To = append(m.To, strings.Trim(arg[len("TO:"):], "<>"))
			reply("250 OK")
		case v == "DATA":
			reply("354 End data with <CR><LF>.<CR><LF>")
			data, ok := readData(r)
			if !ok {
				reply("552 too much mail data")
				return
			}
			m.Data, m.At = data, time.Now()
			m.Headers, m.Body = split(data)
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			reply("250 OK: queued")
		case v == "QUIT":
			reply("221 bye")
			return
		case v == "RSET" || v == "NOOP":
			reply("250 OK")
		default:
			reply("500 unknown command")
		}
	}
}

// readData reads DATA's lines up to the lone dot, unstuffing dots.
func readData(r *bufio.Reader) (string, bool) {
	var lines []string
	size := 0
	for {
		b, err := r.ReadSlice('\n') // a line longer than maxLine fails
		if err != nil {
			return "", false
		}
		line := string(b)
		size += len(line)
		if size > maxData {
			return "", false
		}
		l := strings.TrimRight(line, "\r\n")
		if l == "." {
			return strings.Join(lines, "\r\n"), true
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

func split(data string) (map[string]string, string) {
	head, body, _ := strings.Cut(data, "\r\n\r\n")
	h := map[string]string{}
	for _, l := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h[k] = strings.TrimSpace(v)
		}
	}
	return h, body
}
