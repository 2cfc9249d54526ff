package xdp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane/flock"
)

// ErrPinPathInUse is returned by Open when another process holds the pin
// path: two processes on one pinned dataplane would swap each other's
// program into its links and configuration into its maps.
var ErrPinPathInUse = errors.New("in use by another xlb")

// DefaultPinCheck is how often the pins are checked by default.
const DefaultPinCheck = time.Second

// EventPinsRestored counts, in Stats' events, the pinned maps and links
// found removed or replaced under the running dataplane and pinned again.
const EventPinsRestored = "pins_restored"

// pinKeeper keeps the pin path ours while the dataplane runs: it holds an
// exclusive lock on the directory (flock(2) on the directory itself: a
// bpffs holds only pinned objects and directories, no lock file), and
// checks that every map and link is pinned there, so that a restart adopts
// them. Without that, pins removed by hand (rm -r /sys/fs/bpf/xlb/*) would
// go unnoticed until the next restart, which would then start from empty
// maps and detach the program while it attaches anew.
type pinKeeper struct {
	// mu serialises checks with Detach and Close.
	mu      sync.Mutex
	path    string
	lk      *flock.Lock
	objs    []pinnedObj
	stopped bool // Detach or Close: the pins are no longer kept

	restored atomic.Uint64

	stop, done chan struct{}
}

// pinnedObj is one of our maps or links and where it is pinned.
type pinnedObj struct {
	name string // file name under the pin path
	id   uint32 // our object's id
	// file is the pin's inode, once a check found our object there
	// (zero: not yet). A bpffs inode holds one object for its life, and a
	// pin removed or replaced is another inode (a new one, or the
	// renamed one of another pin): while the path's inode is this one,
	// the pin is ours, and a check stats it only. Loading the pin and
	// reading its object's id were ten system calls an object, 300 a
	// second at the default interval: the most of an idle daemon's
	// system calls, and each woke the runtime's sysmon thread.
	file pinFile
	// loadID reads the id of the object pinned at a path.
	loadID func(path string) (uint32, error)
	// pin pins our object at path.
	pin func(path string) error
}

// lock takes the pin path's lock (creating the directory on its bpffs).
func (p *pinKeeper) lock(path string) error {
	if path == "" {
		return nil
	}
	if err := ensureBPFFS(path); err != nil {
		return err
	}
	l, err := flock.Dir(path)
	if err != nil {
		if errors.Is(err, flock.ErrHeld) {
			return fmt.Errorf("pin path %s: %w: %w", path, ErrPinPathInUse, err)
		}
		return fmt.Errorf("pin path %s: %w", path, err)
	}
	p.path, p.lk = path, l
	return nil
}

func (p *pinKeeper) unlock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.lk.Close()
	p.lk = nil
}

// stopWatch stops the periodic check; later checks do nothing (the pins
// are being removed, or left as they are).
func (p *pinKeeper) stopWatch() {
	p.mu.Lock()
	p.stopped = true
	stop, done := p.stop, p.done
	p.stop = nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// watchPins records which objects are pinned (after attachAll) and checks
// them every PinCheckInterval.
func (d *Dataplane) watchPins() error {
	p := &d.pins
	if p.path == "" {
		return nil
	}
	objs, err := d.pinnedObjects()
	if err != nil {
		return err
	}
	p.objs = objs
	every := d.opts.PinCheckInterval
	if every == 0 {
		every = DefaultPinCheck
	}
	if every < 0 {
		return nil
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func(stop <-chan struct{}, done chan<- struct{}) {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := d.checkPins("periodic check"); err != nil {
					d.log.Error("pinned maps and links", "error", err)
				}
			}
		}
	}(p.stop, p.done)
	return nil
}

// pinnedObjects lists the maps pinned by name and the links.
func (d *Dataplane) pinnedObjects() ([]pinnedObj, error) {
	var objs []pinnedObj
	v := reflect.ValueOf(&d.objs.bpfMaps).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		ms, ok := d.spec.Maps[name]
		m, _ := v.Field(i).Interface().(*ebpf.Map)
		if !ok || ms.Pinning != ebpf.PinByName || m == nil {
			continue
		}
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("map %s: the kernel gives no map ids", name)
		}
		objs = append(objs, pinnedObj{name: name, id: uint32(id), loadID: pinnedMapID, pin: func(path string) error {
			// Map.Pin does nothing when the map believes itself pinned there.
			if err := m.Unpin(); err != nil {
				return err
			}
			return m.Pin(path)
		}})
	}
	for ifname, a := range d.links {
		info, err := a.link.Info()
		if err != nil {
			return nil, fmt.Errorf("XDP link of %s: %w", ifname, err)
		}
		l := a.link
		objs = append(objs, pinnedObj{name: linkPinPrefix + ifname, id: uint32(info.ID), loadID: pinnedLinkID, pin: func(path string) error {
			if err := l.Unpin(); err != nil {
				return err
			}
			return l.Pin(path)
		}})
	}
	return objs, nil
}

// pinFile is a pin's inode: its device and number.
type pinFile struct{ dev, ino uint64 }

// statPin returns the inode pinned at path.
func statPin(path string) (pinFile, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return pinFile{}, err
	}
	return pinFile{dev: st.Dev, ino: st.Ino}, nil
}

func pinnedMapID(path string) (uint32, error) {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return uint32(id), nil
}

func pinnedLinkID(path string) (uint32, error) {
	l, err := link.LoadPinnedLink(path, nil) // links take no BPF_F_RDONLY
	if err != nil {
		return 0, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, err
	}
	return uint32(info.ID), nil
}

// CheckPins makes sure the pin path holds our maps and links, as a restart
// needs them to adopt the running state: what was removed (rm -r
// /sys/fs/bpf/xlb/*, the directory itself) or replaced by another object
// is pinned again, logged and counted (EventPinsRestored). It runs every
// PinCheckInterval; the daemon also calls it on reload.
func (d *Dataplane) CheckPins() error { return d.checkPins("reload") }

func (d *Dataplane) checkPins(trigger string) error {
	p := &d.pins
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.path == "" || p.stopped {
		return nil
	}
	var restored []string
	if !p.lk.Current() {
		// The directory was removed (or removed and made again): the lock
		// is on the old one, so take it on the new one first.
		if err := ensureBPFFS(p.path); err != nil {
			return err
		}
		l, err := flock.Dir(p.path)
		if err != nil {
			if errors.Is(err, flock.ErrHeld) {
				err = fmt.Errorf("%w: %w", ErrPinPathInUse, err)
			}
			return fmt.Errorf("pin path %s was removed and made again, and cannot be locked: %w", p.path, err)
		}
		p.lk.Close()
		p.lk = l
		restored = append(restored, p.path+"/")
	}
	var errs []error
	n := 0
	for i := range p.objs {
		o := &p.objs[i]
		path := filepath.Join(p.path, o.name)
		f, ferr := statPin(path)
		if ferr == nil && f == o.file {
			continue
		}
		o.file = pinFile{}
		id, err := o.loadID(path)
		if err == nil && id == o.id {
			if ferr == nil {
				// Stat before the load: an object pinned there in between
				// reads as another inode at the next check.
				o.file = f
			}
			continue
		}
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			// Another object, or something that is not ours: replaced.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s, pinned instead of ours: %w", path, err))
				continue
			}
		}
		if err := o.pin(path); err != nil {
			errs = append(errs, fmt.Errorf("pin %s again: %w", path, err))
			continue
		}
		restored = append(restored, o.name)
		n++
	}
	if len(restored) > 0 {
		p.restored.Add(uint64(n))
		d.log.Warn("pinned maps and links were removed or replaced under the running daemon: pinned ours again",
			"pin_path", p.path, "restored", restored, "trigger", trigger)
	}
	return errors.Join(errs...)
}
