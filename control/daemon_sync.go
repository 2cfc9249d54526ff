package control

import (
	"errors"
	"fmt"
	"reflect"
	gosync "sync"
	"sync/atomic"

	"github.com/xlb-dev/xlb/config"
	"github.com/xlb-dev/xlb/control/sync"
	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/vrrp"
)

// The daemon's connection sync ([sync], control/sync): everything here is
// reached from a few lines in daemon.go (newSync before VRRP, runSync
// after it, syncRole in roleEvent and beforeMaster), daemon_bgp.go
// (SyncReady, the hold in vrrpConfig), reload.go (prepareSync),
// daemon_status.go (Status.Sync).

// syncState is the daemon's sync part; node is nil without [sync] (or on
// a dataplane that cannot take part).
type syncState struct {
	node *sync.Node
	// instance is the VRRP instance whose role decides the sending.
	instance string
	// ready is sync_ready: true without sync.
	ready atomic.Bool
	// held: the running VRRP configuration holds preemption back.
	mu   gosync.Mutex
	held bool
}

// newSync builds the sync node from [sync] (the key file read); it runs
// from runSync on. Without [sync], or on a dataplane without connection
// sync (IPVS: run the kernel's sync daemon), the director is sync_ready.
func (d *Daemon) newSync(cfg *config.Config) error {
	sc := cfg.Sync
	if sc == nil {
		d.sync.ready.Store(true)
		return nil
	}
	cs, ok := d.dp.(dataplane.ConnSyncer)
	if !ok {
		d.sync.ready.Store(true)
		d.log.Warn("[sync] needs the XDP dataplane: connection sync is off (with IPVS, run the kernel's sync daemon: ipvsadm --start-daemon)",
			"dataplane", d.dp.Info().Mode)
		return nil
	}
	var key []byte
	if sc.Protocol == config.SyncXLB {
		var err error
		if key, err = config.SyncKey(sc.KeyFile); err != nil {
			return fmt.Errorf("%s: %w", d.opts.ConfigPath, err)
		}
	}
	node, err := sync.NewNode(sync.Config{
		Settings: sync.Settings{Protocol: sync.Protocol(sc.Protocol), FollowRole: sc.VRRPInstance != "", Peers: sc.Peers,
			ReadyTimeout: sc.ReadyTimeout, Refresh: sc.RefreshInterval},
		Interface: sc.Interface, SyncID: uint8(sc.SyncID), Port: sc.Port, Key: key,
	}, sync.Options{Logger: d.log.With("component", "sync"), Dataplane: cs, OnReady: func() { go d.syncBecameReady() }})
	if err != nil {
		return err
	}
	d.sync.node, d.sync.instance = node, sc.VRRPInstance
	d.metrics.Registry.MustRegister(node)
	return nil
}

// runSync starts the node (after VRRP: its readiness may release the hold
// of a VRRP node that exists).
func (d *Daemon) runSync(g *group) {
	if d.sync.node != nil {
		g.Go("connection sync", d.sync.node.Run)
	}
}

// syncBecameReady releases the hold of the VRRP instances' preemption and
// tells the BGP announcements.
func (d *Daemon) syncBecameReady() {
	d.sync.ready.Store(true)
	d.bgpPoke()
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.sync.mu.Lock()
	held := d.sync.held
	d.sync.mu.Unlock()
	if !held || d.node == nil || d.stopping.Load() {
		return
	}
	if err := d.node.Reconfigure(d.vrrpConfig(d.Config())); err != nil {
		d.log.Error("connection sync ready: releasing the VRRP preemption hold", "error", err)
		return
	}
	d.log.Info("connection sync ready: VRRP instances may preempt")
}

// holdPreempt makes vc's instances not preempt while the director is not
// sync_ready: it would take flows whose state it does not have yet.
func (d *Daemon) holdPreempt(vc *vrrp.Config) {
	held := !d.sync.ready.Load()
	d.sync.mu.Lock()
	d.sync.held = held
	d.sync.mu.Unlock()
	if !held {
		return
	}
	for i := range vc.Instances {
		vc.Instances[i].NoPreempt = true
	}
}

// syncRole tells the sync the role of its VRRP instance.
func (d *Daemon) syncRole(ev vrrp.Event) {
	if d.sync.node != nil && ev.Instance == d.sync.instance {
		d.sync.node.SetRole(ev.To == vrrp.Master)
	}
}

// SyncReady reports whether connection sync has caught up, so that this
// director may take flows another one scheduled: an input of the
// announcement rule. True without [sync].
func (d *Daemon) SyncReady(ServiceSpec) bool { return d.sync.ready.Load() }

// syncStatus is the Sync section of the status.
func (d *Daemon) syncStatus() *sync.Status {
	if d.sync.node == nil {
		return nil
	}
	st := d.sync.node.Status()
	return &st
}

// prepareSync checks a reloaded [sync]: adding or removing it needs a
// restart; a change takes effect at the next one (logged).
func (d *Daemon) prepareSync(old, cfg *config.Config) error {
	if (old.Sync == nil) != (cfg.Sync == nil) {
		return errors.New("adding or removing [sync] needs a restart")
	}
	if old.Sync != nil && !equalSync(*old.Sync, *cfg.Sync) {
		d.log.Warn("configuration change needs a restart to take effect", "setting", "[sync]")
	}
	return nil
}

func equalSync(a, b config.Sync) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}
