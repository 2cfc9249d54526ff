// Package mail sends xlb's alerts by e-mail, as keepalived's SMTP alerts
// (keepalived's core/smtp.c): one SMTP session per alert (HELO, MAIL FROM,
// a RCPT TO per address, DATA, QUIT), each step bounded by the timeout.
//
// Alerts never wait for mail: Send queues (a bounded queue: when full, the
// oldest alert is dropped and counted) and one goroutine, Run, delivers
// them in order. A dead or black-holed server costs that goroutine one
// timeout per alert and nothing else.
package mail

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultQueueSize is how many alerts wait for delivery at most.
const DefaultQueueSize = 64

// DefaultTimeout bounds the connection and each step of the SMTP dialogue
// when Settings gives none (keepalived's smtp_connect_timeout default).
const DefaultTimeout = 30 * time.Second

// dropLogEvery rate-limits the log of dropped alerts.
const dropLogEvery = time.Minute

// Settings say where alerts go. The zero Settings send nothing.
type Settings struct {
	Server  string   // HOST:PORT of the SMTP relay
	From    string   // MAIL FROM and From:
	To      []string // a RCPT TO each, and To:
	Helo    string   // the name sent with HELO
	Timeout time.Duration
}

// Enabled reports whether alerts are mailed: a server and someone to mail.
func (s Settings) Enabled() bool { return s.Server != "" && len(s.To) > 0 }

// Message is one alert.
type Message struct {
	Subject string
	Body    string
}

// Stats count what became of the alerts.
type Stats struct {
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`  // the server refused it, or did not answer in time
	Dropped uint64 `json:"dropped"` // the queue was full (the oldest goes)
	Queued  int    `json:"queued"`  // waiting, or being delivered
	// LastError is the last failure to deliver, and when.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Options configure a Sender; zero fields get the defaults.
type Options struct {
	Logger    *slog.Logger // nil discards
	QueueSize int          // DefaultQueueSize
	// Now dates the mails (the Date: header); nil: time.Now.
	Now func() time.Time
	// Dial opens the connection to the server; nil: a net.Dialer bounded
	// by the timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Sender queues alerts and delivers them.
type Sender struct {
	log  *slog.Logger
	max  int
	now  func() time.Time
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	wake chan struct{}

	mu       sync.Mutex
	settings Settings
	queue    []Message
	busy     bool // Run is delivering one (counted in Queued)
	idle     chan struct{}
	stats    Stats
	dropLog  time.Time // last logged drop
	unlogged int       // drops not logged since
}

// New returns a Sender that sends nothing until Configure.
func New(opts Options) *Sender {
	s := &Sender{log: opts.Logger, max: opts.QueueSize, now: opts.Now, dial: opts.Dial, wake: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.max <= 0 {
		s.max = DefaultQueueSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Configure sets where alerts go (at start and on every reload). Alerts
// queued stay queued for the new settings; when mail is turned off they
// are dropped.
func (s *Sender) Configure(st Settings) {
	if st.Timeout <= 0 {
		st.Timeout = DefaultTimeout
	}
	st.To = append([]string(nil), st.To...)
	s.mu.Lock()
	s.settings = st
	if !st.Enabled() && len(s.queue) > 0 {
		s.stats.Dropped += uint64(len(s.queue))
		s.queue = nil
	}
	s.mu.Unlock()
}

// Enabled reports whether alerts are mailed now.
func (s *Sender) Enabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settings.Enabled()
}

// Send queues an alert and returns at once; without settings it does
// nothing. When the queue is full the oldest alert is dropped: the newest
// say how things are now.
func (s *Sender) Send(m Message) {
	s.mu.Lock()
	if !s.settings.Enabled() {
		s.mu.Unlock()
		return
	}
	var dropped Message
	logDrop := false
	if len(s.queue) >= s.max {
		dropped = s.queue[0]
		s.queue = append(s.queue[:0], s.queue[1:]...)
		s.stats.Dropped++
		if now := time.Now(); now.Sub(s.dropLog) >= dropLogEvery {
			s.dropLog, logDrop = now, true
		} else {
			s.unlogged++
		}
	}
	s.queue = append(s.queue, m)
	unlogged := s.unlogged
	if logDrop {
		s.unlogged = 0
	}
	s.mu.Unlock()
	if logDrop {
		s.log.Warn("mail alert dropped: the queue is full (is the SMTP server reachable?)", "subject", dropped.Subject,
			"queue", s.max, "dropped_not_logged", unlogged)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers the queued alerts, one at a time in order, until ctx is
// done (an alert being delivered then is abandoned).
func (s *Sender) Run(ctx context.Context) error {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.busy = false
			if s.idle != nil {
				close(s.idle)
				s.idle = nil
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
				continue
			}
		}
		m := s.queue[0]
		s.queue = s.queue[1:]
		s.busy = true
		st := s.settings
		s.mu.Unlock()

		start := time.Now()
		err := s.deliver(ctx, st, m)
		s.mu.Lock()
		if err != nil {
			s.stats.Failed++
			s.stats.LastError, s.stats.LastErrorAt = err.Error(), time.Now()
		} else {
			s.stats.Sent++
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("mail alert not sent", "server", st.Server, "subject", m.Subject, "error", err,
				"took", time.Since(start).Round(time.Millisecond))
		} else {
			s.log.Info("mail alert sent", "server", st.Server, "subject", m.Subject, "to", len(st.To))
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Flush waits until every queued alert has been delivered or given up,
// or ctx is done (a bounded wait at shutdown). Run must be running.
func (s *Sender) Flush(ctx context.Context) error {
	s.mu.Lock()
	if len(s.queue) == 0 && !s.busy {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Queued = len(s.queue)
	if s.busy {
		st.Queued++
	}
	return st
}

var (
	mailDesc   = prometheus.NewDesc("xlb_mail_total", "Mail alerts by result: sent, failed (refused or timed out), dropped (the queue was full).", []string{"result"}, nil)
	queuedDesc = prometheus.NewDesc("xlb_mail_queued", "Mail alerts waiting for delivery, or being delivered.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Sender) Describe(ch chan<- *prometheus.Desc) {
	ch <- mailDesc
	ch <- queuedDesc
}

// Collect implements prometheus.Collector.
func (s *Sender) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	for result, n := range map[string]uint64{"sent": st.Sent, "failed": st.Failed, "dropped": st.Dropped} {
		ch <- prometheus.MustNewConstMetric(mailDesc, prometheus.CounterValue, float64(n), result)
	}
	ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(st.Queued))
}
