package xdp

import (
	"errors"
	"fmt"
	"maps"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
)

// Preloaded is the program and maps of a dataplane loaded ahead of Open,
// with its pin path locked: the daemon loads them (the verifier takes
// about half a second) while it reads its configuration.
type Preloaded struct {
	key   preloadKey
	sizes map[string]uint32
	d     *Dataplane
}

// preloadKey is what of Options the load depends on.
type preloadKey struct {
	pinPath      string
	mountBPFFS   bool
	synFloodRate int
}

func keyOf(opts Options) preloadKey {
	return preloadKey{pinPath: opts.PinPath, mountBPFFS: opts.MountBPFFS, synFloodRate: opts.SYNFloodRate}
}

// Preload loads the program and maps Open(opts) would: nothing is
// attached, and the pinned maps (adopted) are not written. Close releases
// them and the pin path, unless Open took them.
func Preload(opts Options) (*Preloaded, error) {
	d, err := loadDataplane(opts)
	if err != nil {
		return nil, err
	}
	return &Preloaded{key: keyOf(opts), sizes: maps.Clone(opts.MapSizes), d: d}, nil
}

// Close releases what Preload loaded, unless Open took it. A nil
// Preloaded is none.
func (p *Preloaded) Close() {
	if p == nil || p.d == nil {
		return
	}
	p.d.closeHandles()
	p.d = nil
}

// take returns the dataplane loaded for opts, nil if there is none or it
// was loaded for other options (it is closed then).
func (p *Preloaded) take(opts Options) *Dataplane {
	if p == nil || p.d == nil {
		return nil
	}
	if keyOf(opts) != p.key || !maps.Equal(opts.MapSizes, p.sizes) {
		p.Close()
		return nil
	}
	d := p.d
	p.d = nil
	return d
}

// loadDataplane locks the pin path, and loads the program and maps
// (adopting the pinned ones): the first part of Open, and Preload.
func loadDataplane(opts Options) (*Dataplane, error) {
	opts = withDefaults(opts)
	if opts.MountBPFFS && opts.PinPath != "" {
		if err := mountPinPath(opts.PinPath, opts.Logger); err != nil {
			return nil, err
		}
	}
	d := &Dataplane{
		opts:      opts,
		log:       opts.Logger,
		links:     map[string]*attached{},
		services:  map[dataplane.ServiceKey]*svcState{},
		graceKick: make(chan struct{}, 1),
		svcIDs:    newIDPool(maxServices),
		beIDs:     newIDPool(maxBackends),
		retired:   map[retiredKey]uint32{},
		deadSvcs:  map[uint32]bool{},
		nat:       newNATTable(),
		natDirty:  map[bpfXlbSvcKey]bool{},
		smacs:     map[int][]byte{},
		devmap:    map[int]bool{},
	}
	d.flipGen.Store(1) // what is adopted waits for a first grace period
	d.conns.Store(&map[uint32]connCount{})
	d.index.Store(&statIndex{})
	// One process per pin path: a second one would swap its program into
	// the links and its configuration into the maps of the first. The lock
	// comes before anything is loaded.
	if err := d.pins.lock(opts.PinPath); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// to the cgroup, and this does nothing.
	if err := rlimit.RemoveMemlock(); err != nil {
		d.log.Debug("cannot lift RLIMIT_MEMLOCK", "error", err)
	}
	if err := d.load(); err != nil {
		d.pins.unlock()
		if errors.Is(err, unix.EPERM) {
			// cilium/ebpf's hint then blames MEMLOCK, which RemoveMemlock
			// has already lifted: the capabilities are missing.
			return nil, fmt.Errorf("loading XDP needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or root): %w", err)
		}
		return nil, err
	}
	return d, nil
}
