package vrrp

import (
	"context"
	"io"
	"time"
)

// Track scripts: one goroutine per vrrp_script runs it every interval
// and feeds its result to the protocol.

type scriptTask struct {
	cfg    ScriptConfig
	cancel context.CancelFunc
}

// syncScripts runs the scripts of scs (restarting changed ones) and stops
// the others.
func (n *Node) syncScripts(scs []ScriptConfig) {
	want := map[string]ScriptConfig{}
	for _, sc := range scs {
		want[sc.Name] = sc
	}
	for name, t := range n.scripts {
		if w, ok := want[name]; !ok || w != t.cfg {
			t.cancel()
			delete(n.scripts, name)
		}
	}
	for name, sc := range want {
		if n.scripts[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(n.drvCtx)
		n.scripts[name] = &scriptTask{cfg: sc, cancel: cancel}
		go n.runScript(ctx, sc)
	}
}

func (n *Node) runScript(ctx context.Context, sc ScriptConfig) {
	wake := make(chan struct{}, 1)
	t := n.clock.AfterFunc(time.Hour, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	t.Stop()
	defer releaseTimer(t)
	for {
		rctx, cancel := context.WithTimeout(ctx, sc.Timeout)
		err := n.runner.Run(rctx, sc.Script)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.log.Debug("vrrp: track script failed", "script", sc.Name, "err", err)
		}
		n.step(scriptRan{name: sc.Name, script: sc.Script, ok: err == nil})
		select {
		case <-wake: // a late call of the last arming
		default:
		}
		t.Reset(sc.Interval)
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// releaseTimer stops t and frees what it holds (a timerfd).
func releaseTimer(t Timer) {
	t.Stop()
	if c, ok := t.(io.Closer); ok {
		_ = c.Close()
	}
}
