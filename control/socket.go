package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/xlb-dev/xlb/config"
)

// DefaultSocket is the control socket's default path (config's).
const DefaultSocket = config.DefaultSocket

// Request is a control-socket request: one JSON object per connection.
type Request struct {
	Command string `json:"command"` // "status" or "reload"
	Rates   bool   `json:"rates,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Status  *Status `json:"status,omitempty"`
}

// Handler serves control-socket commands.
type Handler interface {
	Status(rates bool) *Status
	Reload() error
}

// ServeSocket listens on path (mode 0600, root only) and serves h until
// ctx is done. A stale socket file is replaced; a live one (another daemon)
// is an error.
func ServeSocket(ctx context.Context, path string, h Handler, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another xlb is running", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go func() {
		defer os.Remove(path)
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil {
					log.Error("control socket accept", "error", err)
				}
				return
			}
			go serveConn(c, h, log)
		}
	}()
	return nil
}

func serveConn(c net.Conn, h Handler, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		resp.Error = "bad request: " + err.Error()
	} else {
		switch req.Command {
		case "status":
			resp.OK, resp.Status = true, h.Status(req.Rates)
		case "reload":
			if err := h.Reload(); err != nil {
				resp.Error = err.Error()
			} else {
				resp.OK, resp.Message = true, "configuration reloaded"
			}
		default:
			resp.Error = fmt.Sprintf("unknown command %q", req.Command)
		}
	}
	if err := json.NewEncoder(c).Encode(&resp); err != nil {
		log.Debug("control socket reply", "error", err)
	}
}

// Call sends a request to the daemon's control socket.
func Call(path string, req Request) (*Response, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to xlb at %s (is `xlb run` running?): %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(c).Encode(&req); err != nil {
		return nil, fmt.Errorf("send to %s: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read from %s: %w", path, err)
	}
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}
