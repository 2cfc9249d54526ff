package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlb-dev/xlb/config"
)

// DefaultSocket is the control socket's default path (config's).
const DefaultSocket = config.DefaultSocket

// Limits of the control socket (SocketOptions' defaults).
const (
	// DefaultMaxRequest bounds a request: one small JSON object
	// ({"command":"status","rates":true} is 34 bytes). A larger one is
	// answered with an error without being read further, so a client
	// cannot make the daemon buffer megabytes.
	DefaultMaxRequest = 4 << 10
	// DefaultRequestTimeout is how long a client may take to send its
	// request after connecting (`xlb status` sends it at once).
	DefaultRequestTimeout = 5 * time.Second
	// DefaultReplyTimeout is how long writing the reply may take (the
	// status of thousands of real servers, to a slow reader).
	DefaultReplyTimeout = 30 * time.Second
	// DefaultMaxConns is how many connections are served at once; more
	// wait in the listen backlog until one ends (at the latest after the
	// request timeout, for a client that sends nothing).
	DefaultMaxConns = 16
)

// Delays between retries of a failed accept: doubling from the first to
// the last, as net/http's Server.Serve.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
	// acceptLogEvery rate-limits the log of accept errors.
	acceptLogEvery = 10 * time.Second
)

// Request is a control-socket request: one JSON object per connection.
type Request struct {
	// Command is "status", "reload", "drain", "undrain", "set-weight" or
	// "reset-weight".
	Command string `json:"command"`
	Rates   bool   `json:"rates,omitempty"`
	// Output, for a status, asks for what `xlb status` prints instead of
	// a Response with the Status: "text", "stats", "rate" (FormatStatus)
	// or "json" (the Status, indented). The daemon writes it as it makes
	// it, after a Response line with Stream set: the status of 65,536
	// real servers is tens of MB of JSON, which neither side then holds
	// whole, nor decodes and encodes again.
	Output string `json:"output,omitempty"`
	// Service, Real and Weight are set-weight's and reset-weight's: a
	// [[virtual_server]] name, a real server ADDR or ADDR:PORT, a weight.
	Service string `json:"service,omitempty"`
	Real    string `json:"real_server,omitempty"`
	Weight  int    `json:"weight,omitempty"`

	peer string // who sent it (peerOf), for the log
}

// Response answers a Request.
type Response struct {
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Status  *Status `json:"status,omitempty"`
	// Stream: the output of the request follows this line, until the
	// connection closes.
	Stream bool `json:"stream,omitempty"`
}

// outputs are the formats of Request.Output.
var outputs = map[string]Format{"text": FormatConns, "stats": FormatStats, "rate": FormatRate, "json": -1}

// Handler serves control-socket commands.
type Handler interface {
	Status(rates bool) *Status
	Reload() error
}

// SocketOptions configure a SocketServer; zero fields get the defaults.
type SocketOptions struct {
	Logger         *slog.Logger // nil discards
	MaxRequest     int          // bytes; DefaultMaxRequest
	RequestTimeout time.Duration
	ReplyTimeout   time.Duration
	MaxConns       int
}

// SocketStats counts what the control socket saw.
type SocketStats struct {
	Requests     uint64 // requests answered (including those answered with an error)
	AcceptErrors uint64 // failed accepts (each retried)
	TooLarge     uint64 // requests over MaxRequest
	Timeouts     uint64 // clients that did not send their request in time
	BadRequests  uint64 // requests that are not a JSON Request
	Active       int64  // connections being served now
}

// SocketServer serves the control socket.
type SocketServer struct {
	path     string
	h        Handler
	log      *slog.Logger
	ln       *net.UnixListener
	maxReq   int
	reqTime  time.Duration
	respTime time.Duration
	maxConns int

	requests, acceptErrs, tooLarge, timeouts, badReqs atomic.Uint64
	active                                            atomic.Int64

	// Used by the accept loop only.
	lastLog  time.Time
	unlogged int
}

// ListenSocket creates the control socket at path (mode 0600, root only).
// A stale socket file is replaced; a live one (another daemon) is an
// error. Serve serves it.
func ListenSocket(path string, h Handler, opts SocketOptions) (*SocketServer, error) {
	s := &SocketServer{path: path, h: h, log: opts.Logger, maxReq: opts.MaxRequest, reqTime: opts.RequestTimeout,
		respTime: opts.ReplyTimeout, maxConns: opts.MaxConns}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxReq <= 0 {
		s.maxReq = DefaultMaxRequest
	}
	if s.reqTime <= 0 {
		s.reqTime = DefaultRequestTimeout
	}
	if s.respTime <= 0 {
		s.respTime = DefaultReplyTimeout
	}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxConns
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another xlb is running", path)
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s.ln = ln
	return s, nil
}

// Serve accepts and serves connections until ctx is done, then closes the
// listener, which removes the socket file. Connections being served finish
// on their own deadlines.
//
// A failed accept never ends the loop: running out of descriptors (EMFILE,
// ENFILE), buffers or memory (ENOBUFS, ENOMEM), a connection aborted before
// it was accepted (ECONNABORTED) and the network errors accept(2) says to
// retry all pass. Every error is retried after a delay doubling from 5ms
// to 1s, logged (at most every 10s) and counted; losing `xlb status` and
// `xlb reload` until a restart is worse than a retry a second.
func (s *SocketServer) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.ln.Close()
	slots := make(chan struct{}, s.maxConns)
	var delay time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := s.ln.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("control socket %s: %w", s.path, err)
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			s.acceptErrs.Add(1)
			s.logAcceptError(err, delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		if delay > 0 {
			s.log.Info("control socket accepts again", "failed_accepts", s.acceptErrs.Load())
			delay = 0
		}
		go func() {
			defer func() { <-slots }()
			s.serveConn(c)
		}()
	}
}

// logAcceptError logs the first accept error of a run of them, and then
// at most one every acceptLogEvery with the count of those not logged.
func (s *SocketServer) logAcceptError(err error, delay time.Duration) {
	now := time.Now()
	if !s.lastLog.IsZero() && now.Sub(s.lastLog) < acceptLogEvery {
		s.unlogged++
		return
	}
	s.log.Error("control socket accept failed; retrying", "error", err, "retry_in", delay, "errors_not_logged", s.unlogged)
	s.lastLog, s.unlogged = now, 0
}

// errTooLarge is a request over the size limit.
var errTooLarge = errors.New("request too large")

func (s *SocketServer) serveConn(c net.Conn) {
	defer c.Close()
	s.active.Add(1)
	defer s.active.Add(-1)
	var resp Response
	_ = c.SetReadDeadline(time.Now().Add(s.reqTime))
	req, err := readRequest(c, s.maxReq)
	if hr, ok := s.h.(heavyReader); ok && err == nil && req.Command == "status" {
		defer hr.heavyRead()() // until its reply is written
	}
	switch {
	case errors.Is(err, errTooLarge):
		s.tooLarge.Add(1)
		resp.Error = fmt.Sprintf("request too large: more than %d bytes", s.maxReq)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.timeouts.Add(1)
		resp.Error = fmt.Sprintf("request not received within %v", s.reqTime)
	case err != nil:
		s.badReqs.Add(1)
		resp.Error = "bad request: " + err.Error()
	case req.Command == "status" && req.Output != "":
		if _, ok := outputs[req.Output]; !ok {
			s.badReqs.Add(1)
			resp.Error = fmt.Sprintf("unknown status output %q", req.Output)
			break
		}
		s.requests.Add(1)
		_ = c.SetWriteDeadline(time.Now().Add(s.respTime))
		var st *Status
		var services Services
		if ss, ok := s.h.(StatusStreamer); ok {
			st, services = ss.StatusServices(req.Rates)
		} else {
			st = s.h.Status(req.Rates)
			services = st.services()
		}
		if err := streamStatus(c, st, services, req.Output); err != nil {
			s.log.Debug("control socket reply", "error", err)
		}
		return
	default:
		req.peer = peerOf(c)
		resp = s.handle(req)
	}
	s.requests.Add(1)
	if resp.Error != "" && err != nil {
		s.log.Debug("control socket: bad request", "error", resp.Error)
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.respTime))
	if err := json.NewEncoder(c).Encode(&resp); err != nil {
		s.log.Debug("control socket reply", "error", err)
	}
}

// readRequest decodes one Request, reading at most limit+1 bytes.
func readRequest(r io.Reader, limit int) (Request, error) {
	lr := &io.LimitedReader{R: r, N: int64(limit) + 1}
	var req Request
	err := json.NewDecoder(lr).Decode(&req)
	if err != nil && lr.N <= 0 {
		return req, errTooLarge
	}
	return req, err
}

func (s *SocketServer) handle(req Request) Response {
	var resp Response
	switch req.Command {
	case "status":
		resp.OK, resp.Status = true, s.h.Status(req.Rates)
	case "reload":
		if err := s.h.Reload(); err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK, resp.Message = true, "configuration reloaded"
		}
	case "drain", "undrain":
		resp = drainCommand(s.h, req.Command)
	case "set-weight", "reset-weight":
		resp = weightCommand(s.h, req)
		if resp.Error != "" {
			s.log.Warn("control socket: "+req.Command+" refused", "error", resp.Error, "by", req.peer)
		}
	default:
		s.badReqs.Add(1)
		resp.Error = fmt.Sprintf("unknown command %q", req.Command)
	}
	return resp
}

// Stats returns the socket's counters.
func (s *SocketServer) Stats() SocketStats {
	return SocketStats{
		Requests: s.requests.Load(), AcceptErrors: s.acceptErrs.Load(), TooLarge: s.tooLarge.Load(),
		Timeouts: s.timeouts.Load(), BadRequests: s.badReqs.Load(), Active: s.active.Load(),
	}
}

var (
	socketRequestsDesc = prometheus.NewDesc("xlb_control_requests_total",
		"Requests answered on the control socket.", nil, nil)
	socketErrorsDesc = prometheus.NewDesc("xlb_control_errors_total",
		"Control socket failures by reason: accept (retried), too_large, timeout, bad_request.", []string{"reason"}, nil)
	socketActiveDesc = prometheus.NewDesc("xlb_control_connections",
		"Control socket connections being served.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *SocketServer) Describe(ch chan<- *prometheus.Desc) {
	ch <- socketRequestsDesc
	ch <- socketErrorsDesc
	ch <- socketActiveDesc
}

// Collect implements prometheus.Collector.
func (s *SocketServer) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	ch <- prometheus.MustNewConstMetric(socketRequestsDesc, prometheus.CounterValue, float64(st.Requests))
	for reason, n := range map[string]uint64{"accept": st.AcceptErrors, "too_large": st.TooLarge, "timeout": st.Timeouts, "bad_request": st.BadRequests} {
		ch <- prometheus.MustNewConstMetric(socketErrorsDesc, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(socketActiveDesc, prometheus.GaugeValue, float64(st.Active))
}

// heavyReader is a Handler that counts its status streams in and out
// (heavyRead returns the counting out): the daemon measures its steady
// heap between them (releaseMemory).
type heavyReader interface {
	heavyRead() func()
}

// StatusStreamer is a Handler that gives its status a service at a time
// (Services), for the status outputs: the socket writes each service as
// it comes, and never holds the status of 65,536 real servers whole.
type StatusStreamer interface {
	// StatusServices returns the status without its services, and its
	// services.
	StatusServices(rates bool) (*Status, Services)
}

// streamStatus writes a Response line with Stream set, then st with
// services as output asks.
func streamStatus(w io.Writer, st *Status, services Services, output string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if err := json.NewEncoder(bw).Encode(&Response{OK: true, Stream: true}); err != nil {
		return err
	}
	var err error
	if output == "json" {
		err = writeStatusJSONServices(bw, st, services)
	} else {
		err = formatStatus(bw, st, services, outputs[output])
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// CallOutput sends a status request with Output set and copies what the
// daemon prints to out.
func CallOutput(path string, req Request, out io.Writer) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect to xlb at %s (is `xlb run` running?): %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(&req); err != nil {
		return fmt.Errorf("send to %s: %w", path, err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", path, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("read from %s: %w", path, err)
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	if !resp.Stream {
		return fmt.Errorf("read from %s: no output (a daemon older than this xlb?)", path)
	}
	if _, err := io.Copy(out, br); err != nil {
		return fmt.Errorf("read from %s: %w", path, err)
	}
	return nil
}

// Call sends a request to the daemon's control socket.
func Call(path string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to xlb at %s (is `xlb run` running?): %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	sendErr := json.NewEncoder(c).Encode(&req)
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if sendErr != nil {
			return nil, fmt.Errorf("send to %s: %w", path, sendErr)
		}
		return nil, fmt.Errorf("read from %s: %w", path, err)
	}
	// The daemon may answer before reading the whole request (one too
	// large): its answer says why the send failed.
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
