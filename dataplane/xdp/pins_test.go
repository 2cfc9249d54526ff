package xdp

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/nettest"
)

// pinEnv is a namespace with eth0 and eth1 and a pin path on the host's
// bpffs; open opens a dataplane attached to eth0 pinned there.
type pinEnv struct {
	*env
	pin string
}

func newPinEnv(t *testing.T) *pinEnv {
	t.Helper()
	e := newEnv(t) // the namespace and interfaces; its own dataplane is unpinned
	e.d.Close()
	pin := filepath.Join("/sys/fs/bpf", nettest.UniqueName("xlbt-"))
	t.Cleanup(func() { os.RemoveAll(pin) })
	return &pinEnv{env: e, pin: pin}
}

func (e *pinEnv) open(check time.Duration) (*Dataplane, error) {
	var d *Dataplane
	err := e.ns.Do(func() (err error) {
		d, err = Open(Options{Interfaces: []string{"eth0"}, PinPath: e.pin, SyncInterval: -1, MapSizes: testSizes, PinCheckInterval: check})
		return err
	})
	return d, err
}

func (e *pinEnv) mustOpen(check time.Duration) *Dataplane {
	e.t.Helper()
	d, err := e.open(check)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.t.Cleanup(func() { d.Close() })
	return d
}

// pinnedIDs returns the ids of the objects pinned under the pin path, by
// file name.
func (e *pinEnv) pinnedIDs() map[string]uint32 {
	e.t.Helper()
	ids := map[string]uint32{}
	entries, _ := os.ReadDir(e.pin)
	for _, ent := range entries {
		load := pinnedMapID
		if strings.HasPrefix(ent.Name(), linkPinPrefix) {
			load = pinnedLinkID
		}
		id, err := load(filepath.Join(e.pin, ent.Name()))
		if err != nil {
			e.t.Fatalf("pinned %s: %v", ent.Name(), err)
		}
		ids[ent.Name()] = id
	}
	return ids
}

// A second dataplane on a pin path in use is refused before it loads or
// attaches anything, naming the holder: the first one's program stays in
// the link. Once the first is closed, the pin path can be opened again.
func TestPinPathInUse(t *testing.T) {
	e := newPinEnv(t)
	e.d = e.mustOpen(-1)
	prog := attachedProgID(t, e.ns, "eth0")
	before := e.pinnedIDs()

	_, err := e.open(-1)
	if !errors.Is(err, ErrPinPathInUse) {
		t.Fatalf("second open: %v, want ErrPinPathInUse", err)
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), e.pin) {
		t.Errorf("error %q names neither the pin path nor the holder (%s)", err, want)
	}
	if got := attachedProgID(t, e.ns, "eth0"); got != prog {
		t.Errorf("attached program %d after the refused open, was %d", got, prog)
	}
	if after := e.pinnedIDs(); !maps.Equal(before, after) {
		t.Errorf("pins changed by the refused open: %v, were %v", after, before)
	}

	e.d.Close()
	d, err := e.open(-1)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	d.Close()
}

// Pins removed or replaced under a running dataplane are pinned again by
// CheckPins (what the daemon calls on reload), with the same ids, and
// counted; then a restart adopts them.
func TestCheckPinsRestores(t *testing.T) {
	e := newPinEnv(t)
	e.d = e.mustOpen(-1)
	e.apply(svc(dataplane.RoundRobin, e.pool(3)))
	want := e.pinnedIDs()
	if len(want) < 10 || want[linkPinPrefix+"eth0"] == 0 {
		t.Fatalf("pinned: %v, want the maps and link_eth0", want)
	}
	restored := func() uint64 {
		t.Helper()
		st, err := e.d.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st.Events[EventPinsRestored]
	}

	// rm -r PIN/*
	for name := range want {
		if err := os.Remove(filepath.Join(e.pin, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.CheckPins(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := e.pinnedIDs(); !maps.Equal(got, want) {
		t.Fatalf("after the check: %v, want %v", got, want)
	}
	if n := restored(); n != uint64(len(want)) {
		t.Errorf("%s = %d, want %d", EventPinsRestored, n, len(want))
	}

	// A check that finds every pin ours (it knows their inodes after).
	if err := e.d.CheckPins(); err != nil || restored() != uint64(len(want)) {
		t.Fatalf("a check with nothing to do: %v, %d restored", err, restored())
	}

	// Another map pinned in place of one of ours.
	other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rr := filepath.Join(e.pin, "xlb_rr_v1")
	if err := os.Remove(rr); err != nil {
		t.Fatal(err)
	}
	if err := other.Pin(rr); err != nil {
		t.Fatal(err)
	}
	if err := e.d.CheckPins(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := e.pinnedIDs(); !maps.Equal(got, want) {
		t.Fatalf("after replacing xlb_rr_v1: %v, want %v", got, want)
	}
	// Another pin renamed over one of ours (mv keeps its inode), after a
	// check that learned our pins' inodes.
	if err := e.d.CheckPins(); err != nil {
		t.Fatalf("check: %v", err)
	}
	third, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	moved := filepath.Join(e.pin, "third")
	if err := third.Pin(moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, rr); err != nil {
		t.Fatal(err)
	}
	if err := e.d.CheckPins(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := e.pinnedIDs(); !maps.Equal(got, want) {
		t.Fatalf("after renaming another pin over xlb_rr_v1: %v, want %v", got, want)
	}

	// The directory itself (rm -r PIN): made again and locked again.
	if err := os.RemoveAll(e.pin); err != nil {
		t.Fatal(err)
	}
	if err := e.d.CheckPins(); err != nil {
		t.Fatalf("check: %v", err)
	}
	if got := e.pinnedIDs(); !maps.Equal(got, want) {
		t.Fatalf("after removing the directory: %v, want %v", got, want)
	}
	if _, err := e.open(-1); !errors.Is(err, ErrPinPathInUse) {
		t.Fatalf("open of the directory made again: %v, want ErrPinPathInUse", err)
	}
	if n := restored(); n != uint64(2*len(want)+2) {
		t.Errorf("%s = %d, want %d", EventPinsRestored, n, 2*len(want)+2)
	}
	if err := e.d.CheckPins(); err != nil || restored() != uint64(2*len(want)+2) {
		t.Errorf("a check with nothing to do: %v, %d restored", err, restored())
	}

	// A restart adopts what was pinned again: same maps, same link, the
	// service as it was.
	e.d.Close()
	e.d = e.mustOpen(-1)
	if got := e.pinnedIDs(); !maps.Equal(got, want) {
		t.Errorf("after restart: %v, want the same objects %v", got, want)
	}
	if n := len(e.d.Installed()); n != 1 {
		t.Errorf("%d services adopted after restart, want 1", n)
	}
}

// The periodic check restores pins within its interval; Detach stops the
// checks (the periodic one before it returns), so what Detach removes
// stays removed.
func TestPinsCheckedPeriodically(t *testing.T) {
	e := newPinEnv(t)
	e.d = e.mustOpen(50 * time.Millisecond)
	want := e.pinnedIDs()
	removed := time.Now()
	for name := range want {
		if err := os.Remove(filepath.Join(e.pin, name)); err != nil {
			t.Fatal(err)
		}
	}
	nettest.WaitFor(t, 5*time.Second, "pins restored", func() error {
		if got := e.pinnedIDs(); !maps.Equal(got, want) {
			return errors.New("not yet")
		}
		return nil
	})
	t.Logf("%d pins restored %v after their removal (check every 50ms)", len(want), time.Since(removed).Round(time.Millisecond))

	if err := e.ns.Do(e.d.Detach); err != nil {
		t.Fatal(err)
	}
	if err := e.d.CheckPins(); err != nil {
		t.Errorf("check after Detach: %v", err)
	}
	if _, err := os.Stat(e.pin); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(e.pin)
		t.Errorf("pin path after Detach: %v (%v)", entries, err)
	}
}

// Preload loads the program and maps for a pin path, holding its lock,
// and attaches nothing; Open with the same options takes them (the
// program attached is the one preloaded), Open with another pin path
// closes them (the lock is released), and so does Close.
func TestPreload(t *testing.T) {
	e := newPinEnv(t)
	opts := Options{Interfaces: []string{"eth0"}, PinPath: e.pin, SyncInterval: -1, MapSizes: testSizes}
	preload := func(opts Options) (*Preloaded, error) {
		var p *Preloaded
		err := e.ns.Do(func() (err error) { p, err = Preload(opts); return err })
		return p, err
	}
	open := func(opts Options) *Dataplane {
		t.Helper()
		var d *Dataplane
		if err := e.ns.Do(func() (err error) { d, err = Open(opts); return err }); err != nil {
			t.Fatalf("open: %v", err)
		}
		return d
	}

	p, err := preload(opts)
	if err != nil {
		t.Fatal(err)
	}
	if id := attachedProgID(t, e.ns, "eth0"); id != 0 {
		t.Errorf("program %d attached by a preload", id)
	}
	if _, err := preload(opts); !errors.Is(err, ErrPinPathInUse) {
		t.Errorf("a second preload of the pin path: %v, want ErrPinPathInUse", err)
	}
	info, err := p.d.objs.XlbXdp.Info()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := info.ID()
	opts.Preloaded = p
	d := open(opts)
	if got := attachedProgID(t, e.ns, "eth0"); got != uint32(want) {
		t.Errorf("attached program %d, want the preloaded %d", got, want)
	}
	p.Close() // taken: nothing to close
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Loaded for another pin path: closed by Open, which loads its own.
	p, err = preload(Options{PinPath: e.pin + "-other", MapSizes: testSizes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(e.pin + "-other") })
	opts.Preloaded = p
	d = open(opts)
	if p2, err := preload(Options{PinPath: e.pin + "-other", MapSizes: testSizes}); err != nil {
		t.Errorf("the other pin path after Open closed its preload: %v", err)
	} else {
		p2.Close()
	}
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	d.Close()

	// Closed without an Open: the pin path is free.
	p, err = preload(Options{PinPath: e.pin, MapSizes: testSizes})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	opts.Preloaded = nil
	d = open(opts)
	d.Close()
}
