// Package xdp is the eBPF/XDP dataplane: it loads the program of bpf/xlb.c,
// pins its maps under a bpffs directory, attaches it to interfaces through
// pinned BPF links, and installs services by writing the maps. A restarted
// process adopts what a previous one left pinned, so forwarding and
// established flows survive a daemon restart.
package xdp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xlb-dev/xlb/dataplane"
)

// Options configure Open.
type Options struct {
	// Interfaces to attach to. None: load and install, but forward nothing
	// (tests drive the program with BPF_PROG_TEST_RUN).
	Interfaces []string
	Mode       dataplane.AttachMode
	// PinPath is a directory on a bpffs where maps and links are pinned
	// and adopted from. Empty: nothing is pinned (tests).
	PinPath string
	Logger  *slog.Logger
	// Idle timeouts of tracked connections; zero: IPVS's defaults
	// (tcp 900 s, tcpfin 120 s, udp 300 s).
	TCPTimeout, TCPFinTimeout, UDPTimeout time.Duration
	// MaglevSize is the entries of an sh/mh table, a prime; zero:
	// DefaultMaglevSize.
	MaglevSize int
	// SyncInterval is how often the connection table is scanned to expire
	// idle entries, reconcile lc/wlc counts and free removed real servers;
	// zero: 5 s; negative: never (tests call Sync).
	SyncInterval time.Duration
	// MapSizes overrides max_entries of maps by name (tests).
	MapSizes map[string]uint32
	// Preloaded is what Preload loaded for these options, if any: Open
	// takes it (or closes it, if it was for other options).
	Preloaded *Preloaded
	// ManualClock leaves the program's clock to SetClock (tests); otherwise
	// it advances every ClockPeriod.
	ManualClock bool
	// PinCheckInterval is how often the pinned maps and links are checked
	// (and pinned again if removed or replaced); zero: DefaultPinCheck;
	// negative: never (tests call CheckPins).
	PinCheckInterval time.Duration
	// MountBPFFS mounts a bpffs for PinPath when it is on none (inside
	// `ip netns exec`, /sys is remounted without one).
	MountBPFFS bool
	// SYNFloodRate is the SYNs per second on one CPU above which the
	// program enters SYN flood mode (bpf/lib/embryo.h: SYNs scheduled by
	// hash, without an embryonic entry); zero: DefaultSYNFloodRate;
	// negative: never.
	SYNFloodRate int
}

// DefaultSYNFloodRate is the SYN flood limit per CPU, Katran's default.
const DefaultSYNFloodRate = 125000

// synLimit is the program's xlb_syn_limit for a rate per second: SYNs per
// CPU per window of 2^XLB_SYN_WINDOW_SHIFT ns (0: never).
func synLimit(rate int) uint32 {
	switch {
	case rate < 0:
		return 0
	case rate == 0:
		rate = DefaultSYNFloodRate
	}
	n := uint64(rate) << synWindowShift / uint64(time.Second)
	return uint32(min(max(n, 1), math.MaxUint32))
}

// ClockPeriod is how often the program's clock (xlb_clock_v1) advances.
const ClockPeriod = 100 * time.Millisecond

// Dataplane is the XDP dataplane. It implements dataplane.Dataplane.
type Dataplane struct {
	opts    Options
	log     *slog.Logger
	spec    *ebpf.CollectionSpec
	objs    bpfObjects
	verdict map[uint32]string
	events  map[uint32]string
	names   enums // the schedulers' and forwarding modes' values
	links   map[string]*attached

	mu       sync.Mutex
	services map[dataplane.ServiceKey]*svcState
	svcIDs   idPool
	beIDs    idPool
	beStats  beStats // xlb_be_stat_v3, mapped
	// backends describes every backend id in use, live or retired;
	// retired finds the retired ones by service and real server.
	backends beTable
	upd      updateScratch // updateService's
	// valSame and valChanged are validate's, reused: an Apply of 1,000
	// services made a map and a slice of them each round (a storm of
	// failing checks is hundreds of rounds).
	valSame    map[dataplane.ServiceKey]bool
	valChanged []dataplane.Service
	// compared counts the services the last validate compared with what
	// is installed (tests).
	compared int
	retired  map[retiredKey]uint32
	// deadSvcs are ids of removed services whose flows are still tracked.
	deadSvcs map[uint32]bool
	// loadsClean: the last Sync read and corrected every lc/wlc load and
	// connection count, when the program had sent cleanPackets
	// (sentPackets).
	loadsClean   bool
	cleanPackets uint64
	// embryos: the last scan of the embryonic words found none live
	// (none) when the program had sent sent packets.
	embryos struct {
		none bool
		sent uint64
	}
	// scanned is what the last scan of the connection table depended on
	// (Sync skips a scan that would find the same).
	scanned scanMark
	// applies counts the Applies; scans the scans Sync made and skipped.
	applies uint64
	scans   struct{ done, skipped, embryosRead int }
	// nat are the NAT real servers (xlb_nat_reals_v1), natDirty those an
	// Apply changed (nat.go).
	nat      natTable
	natDirty map[bpfXlbSvcKey]bool
	natN     int            // entries of xlb_nat_reals_v1
	smacs    map[int][]byte // interface MACs by ifindex
	devmap   map[int]bool   // interfaces written to xlb_devmap_v1
	// w are the Applies' queues, kept with their arrays when small
	// (writes.reset).
	w *writes

	// index is what Stats reads without the lock, published by Apply;
	// conns are the connection counts of the last Sync, by backend id.
	index atomic.Pointer[statIndex]
	conns atomic.Pointer[map[uint32]connCount]
	// updates counts map entries written (MapUpdates); onWrite, when set
	// (tests), is told the keys each batch writes.
	updates atomic.Uint64
	onWrite func(mapName string, keys any)

	// flipGen counts the Applies that flipped slots, graceGen is the last
	// one a grace period is known to have followed; graceKick asks the
	// loop for one (grace.go).
	flipGen, graceGen atomic.Uint64
	graceKick         chan struct{}
	graceFailed       bool // the loop's
	copiesFailed      bool // the loop's: privatizeTables gave up (grace.go)

	stop chan struct{}
	done chan struct{}

	// pins keeps the pin path ours: locked, and holding our maps and links.
	pins pinKeeper

	// csync is connection sync's (connsync.go).
	csync connSync
	// probes are the health checks' answers' (probe.go).
	probes probeTap

	// The interface maps (ifaces.go) and their watcher.
	ifSync                 ifaceSync
	ifStop, ifDone, ifKick chan struct{}
}

type attached struct {
	ifindex int
	mode    string // "native" or "generic"
	link    link.Link
}

var (
	_ dataplane.Dataplane        = (*Dataplane)(nil)
	_ dataplane.Adopter          = (*Dataplane)(nil)
	_ dataplane.PinChecker       = (*Dataplane)(nil)
	_ dataplane.HostPreparer     = (*Dataplane)(nil)
	_ dataplane.UnchangedApplier = (*Dataplane)(nil)
)

// Open loads the program and its maps (adopting pinned ones), attaches to
// the interfaces and reconstructs the installed services from the maps.
// With opts.Preloaded (Preload) for the same pin path, the program and
// maps are those; otherwise it is closed, and they are loaded here.
func Open(opts Options) (*Dataplane, error) {
	if err := Limits.Check(nil, len(opts.Interfaces)); err != nil {
		opts.Preloaded.Close()
		return nil, err
	}
	opts = withDefaults(opts)
	d := opts.Preloaded.take(opts)
	if d == nil {
		var err error
		if d, err = loadDataplane(opts); err != nil {
			return nil, err
		}
	}
	opts.Preloaded = nil
	d.opts, d.log = opts, opts.Logger
	ok := false
	defer func() {
		if !ok {
			d.closeHandles()
		}
	}()
	if err := d.adopt(); err != nil {
		return nil, fmt.Errorf("adopt pinned state: %w", err)
	}
	d.publish()
	if err := d.writeGlobals(); err != nil {
		return nil, err
	}
	if err := d.initSync(); err != nil {
		return nil, err
	}
	// The interfaces' settings before the program sees their packets.
	if err := d.startIfaceWatch(); err != nil {
		return nil, err
	}
	if err := d.attachAll(); err != nil {
		return nil, err
	}
	if !opts.ManualClock {
		if err := d.tick(); err != nil {
			return nil, err
		}
	}
	if opts.SyncInterval > 0 || !opts.ManualClock {
		d.stop, d.done = make(chan struct{}), make(chan struct{})
		d.kickGrace() // for the tables adopted
		go d.loop()
	}
	if err := d.watchPins(); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// withDefaults is opts with its unset fields at their defaults.
func withDefaults(opts Options) Options {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Mode == "" {
		opts.Mode = dataplane.AttachAuto
	}
	if opts.MaglevSize == 0 {
		opts.MaglevSize = DefaultMaglevSize
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = 5 * time.Second
	}
	return opts
}

func (d *Dataplane) load() error {
	spec, err := loadBpf()
	if err != nil {
		return fmt.Errorf("load BPF spec: %w", err)
	}
	for name, n := range d.opts.MapSizes {
		if name == bpfMapXlbEmbryosV1 {
			return fmt.Errorf("map size override: %s is indexed by a flow hash modulo %d", name, maxEmbryos)
		}
		if name == bpfMapXlbSyncSlots || name == bpfMapXlbSyncHeads {
			return fmt.Errorf("map size override: %s has an entry or a ring per CPU", name)
		}
		if name == bpfMapXlbBeStatV3 {
			return fmt.Errorf("map size override: %s has a slice of %d entries per CPU", name, maxBackends)
		}
		if name == bpfMapXlbFlowcache {
			return fmt.Errorf("map size override: %s has a slice of %d entries per CPU", name, flowCacheSlots)
		}
		m, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("map size override: no map %q", name)
		}
		m.MaxEntries = n
	}
	if err := sizeBeStat(spec); err != nil {
		return err
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	if err := sizeSyncRings(spec, ncpu); err != nil {
		return err
	}
	sizeProbeRings(spec, ncpu)
	sizeFlowCache(spec, ncpu)
	if err := spec.Variables[bpfVarXlbSynLimit].Set(synLimit(d.opts.SYNFloodRate)); err != nil {
		return fmt.Errorf("SYN flood limit: %w", err)
	}
	d.spec = spec
	if d.verdict, err = enumNames(spec.Types, "xlb_verdict", "XLB_V_"); err != nil {
		return fmt.Errorf("verdict names from BTF: %w", err)
	}
	if d.events, err = enumNames(spec.Types, "xlb_event", "XLB_EV_"); err != nil {
		return fmt.Errorf("event names from BTF: %w", err)
	}
	if d.names, err = readEnums(spec.Types, dataplane.SchedulerTable, dataplane.ForwardTable); err != nil {
		return fmt.Errorf("scheduler and forwarding values from BTF: %w", err)
	}
	var copts ebpf.CollectionOptions
	// The backends' counter, load, connection and threshold maps are
	// zero when this load creates them: a new backend id needs no
	// zeroing there until it has been used (idPool.clean).
	fresh := true
	if d.opts.PinPath != "" {
		if err := ensureBPFFS(d.opts.PinPath); err != nil {
			return err
		}
		copts.Maps.PinPath = d.opts.PinPath
		d.removeRetiredBeStat()
		for _, name := range []string{bpfMapXlbBeStatV3, bpfMapXlbBeActV1, bpfMapXlbBeConnsV1, bpfMapXlbBeThreshV1} {
			if _, err := os.Lstat(filepath.Join(d.opts.PinPath, name)); !errors.Is(err, fs.ErrNotExist) {
				fresh = false
			}
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	if err := spec.LoadAndAssign(&d.objs, &copts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load BPF program: %+v", verr)
		}
		return fmt.Errorf("load BPF objects: %w", err)
	}
	// Only the maps' specs are needed after the load (scheduling tables,
	// pins): the programs' instructions and the BTF they came with are
	// 1 MB of heap the daemon would keep.
	spec.Programs, spec.Types = nil, nil
	if d.beStats, err = openBeStats(d.objs.XlbBeStatV3); err != nil {
		d.objs.Close()
		return err
	}
	if fresh {
		d.beIDs.markClean()
	}
	return nil
}

// writeGlobals writes the settings and a new configuration generation
// (which invalidates every flow cache entry).
func (d *Dataplane) writeGlobals() error {
	var g bpfXlbGlobals
	if err := d.objs.XlbGlobalsV1.Lookup(uint32(0), &g); err != nil {
		return fmt.Errorf("read globals: %w", err)
	}
	g.TcpTimeout = uint64(orDefault(d.opts.TCPTimeout, 900*time.Second))
	g.TcpFinTimeout = uint64(orDefault(d.opts.TCPFinTimeout, 120*time.Second))
	g.UdpTimeout = uint64(orDefault(d.opts.UDPTimeout, 300*time.Second))
	g.Gen++
	g.NatReals = uint32(d.natN)
	if err := d.objs.XlbGlobalsV1.Put(uint32(0), &g); err != nil {
		return fmt.Errorf("write globals: %w", err)
	}
	return nil
}

// tick advances the program's clock by running xlb_clock.
func (d *Dataplane) tick() error {
	if _, err := d.objs.XlbClock.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
		return fmt.Errorf("advance clock: %w", err)
	}
	return nil
}

// now reads the program's clock.
func (d *Dataplane) now() (uint64, error) {
	var c bpfXlbClock
	if err := d.objs.XlbClockV1.Lookup(uint32(0), &c); err != nil {
		return 0, fmt.Errorf("read clock: %w", err)
	}
	return c.Now, nil
}

// SetClock sets the program's clock (with ManualClock, for tests).
func (d *Dataplane) SetClock(now time.Duration) error {
	return d.objs.XlbClockV1.Put(uint32(0), &bpfXlbClock{Now: uint64(now)})
}

func orDefault(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// Program returns the XDP program (tests run it with BPF_PROG_TEST_RUN).
func (d *Dataplane) Program() *ebpf.Program { return d.objs.XlbXdp }

// Info implements dataplane.Dataplane.
func (d *Dataplane) Info() dataplane.Info {
	mode := ""
	for _, a := range d.links {
		if mode != "" && mode != a.mode {
			mode = "mixed"
			break
		}
		mode = a.mode
	}
	return dataplane.Info{Mode: "xdp", Attach: mode}
}

// Capabilities implements dataplane.Dataplane: the control plane resolves
// next hops (direct-routing MACs, tunnel next hops in the neighbour table).
func (d *Dataplane) Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{NextHops: true, Limits: Limits}
}

// Close implements dataplane.Dataplane: the program stays attached through
// its pinned links and the maps stay pinned.
func (d *Dataplane) Close() error {
	d.stopSync()
	d.unwatchAll()
	if d.stop != nil {
		close(d.stop)
		<-d.done
		d.stop = nil
	}
	d.closeHandles()
	return nil
}

func (d *Dataplane) closeHandles() {
	d.pins.stopWatch()
	defer d.pins.unlock() // last: until then no other process touches the pins
	d.stopIfaceWatch()
	for _, a := range d.links {
		a.link.Close()
	}
	d.links = map[string]*attached{}
	d.mu.Lock()
	for _, st := range d.services {
		st.closeTables()
	}
	d.mu.Unlock()
	d.objs.Close()
}

// Detach implements dataplane.Dataplane: it detaches from every interface
// and removes the pinned links and maps.
func (d *Dataplane) Detach() error {
	// The pins are removed on purpose from here: nothing restores them.
	d.pins.stopWatch()
	var errs []error
	for name, a := range d.links {
		if err := a.link.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin link of %s: %w", name, err))
		}
		if err := a.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach from %s: %w", name, err))
		}
		delete(d.links, name)
	}
	if d.opts.PinPath != "" {
		for name, m := range d.spec.Maps {
			if m.Pinning != ebpf.PinByName {
				continue
			}
			p := filepath.Join(d.opts.PinPath, name)
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		// Other pinned links (interfaces no longer configured).
		links, _ := filepath.Glob(filepath.Join(d.opts.PinPath, linkPinPrefix+"*"))
		for _, p := range links {
			if l, err := link.LoadPinnedLink(p, nil); err == nil {
				_ = l.Unpin()
				_ = l.Close()
			}
		}
		_ = os.Remove(d.opts.PinPath) // only if empty
	}
	return errors.Join(errs...)
}

// Apply implements dataplane.Dataplane.
func (d *Dataplane) Apply(ctx context.Context, desired []dataplane.Service) error {
	return d.ApplyUnchanged(ctx, desired, nil)
}

// ApplyUnchanged implements dataplane.UnchangedApplier: the services it
// says are unchanged are neither validated nor compared again (they
// passed both when they were applied).
func (d *Dataplane) ApplyUnchanged(_ context.Context, desired []dataplane.Service, unchanged []bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	same, err := d.validate(desired, unchanged)
	if err != nil {
		return err
	}
	return d.apply(desired, same)
}

// validate is dataplane.Validate, the schedulers the program has and
// Limits.Check, for the services that
// differ from those installed (the others passed them when they were
// applied): a health check's flap changes one service of a thousand.
// It returns the services installed as desired (apply leaves them as
// they are: comparing 65,536 backends once is enough), valid until the
// next call; those unchanged says are as last applied are installed as
// desired if the last Apply installed them. Called with d.mu held.
func (d *Dataplane) validate(desired []dataplane.Service, unchanged []bool) (map[dataplane.ServiceKey]bool, error) {
	if d.valSame == nil {
		d.valSame = make(map[dataplane.ServiceKey]bool, len(desired))
	}
	same, changed := d.valSame, d.valChanged[:0]
	clear(same)
	defer func() {
		clear(changed) // holds no backends after
		d.valChanged = changed[:0]
	}()
	total := 0
	d.compared = 0
	for i, s := range desired {
		if _, dup := same[s.Key]; dup {
			return nil, fmt.Errorf("service %s: duplicate %s", s.Name, s.Key)
		}
		total += len(s.Backends)
		st := d.services[s.Key]
		if st != nil && st.installed && i < len(unchanged) && unchanged[i] {
			same[s.Key] = true
			continue
		}
		d.compared++
		same[s.Key] = st != nil && st.installed && d.sameInstall(st, s)
		if !same[s.Key] {
			changed = append(changed, s)
		}
	}
	if err := dataplane.Validate(changed); err != nil {
		return nil, err
	}
	if err := d.names.supported(changed); err != nil {
		return nil, err
	}
	// The limits: per service for those that changed; in all only when
	// they could be exceeded (distinct NAT real servers are counted only
	// when there are more NAT real servers than the limit).
	if len(desired) > Limits.Services || total > Limits.Backends || total > Limits.NATBackends {
		return same, Limits.Check(desired, 0)
	}
	return same, Limits.Check(changed, 0)
}

// Installed implements dataplane.Adopter: the services installed now,
// adopted from a previous run at Open, or applied since.
func (d *Dataplane) Installed() []dataplane.Service {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]dataplane.Service, 0, len(d.services))
	for _, st := range d.services {
		if st.installed {
			svc := st.svc
			svc.Backends = d.backendsOf(st)
			out = append(out, svc)
		}
	}
	return out
}
