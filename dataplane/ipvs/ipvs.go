// Package ipvs is the fallback dataplane: the kernel's IPVS, driven over
// generic netlink (github.com/moby/ipvs), for when XDP cannot load or
// attach, or when the operator asks for mode = "ipvs".
//
// What maps how:
//   - Forwarding: dr is IPVS's route (-g), nat its masquerade (-m), tunnel
//     its IPIP tunnel (-i). GUE is not offered by the netlink library
//     (it sends no IPVS_DEST_ATTR_TUN_TYPE), so a GUE service is rejected
//     with an error wrapping dataplane.ErrNotSupported, as is a tunnel real
//     server of the other address family (no IPVS_DEST_ATTR_ADDR_FAMILY).
//     Tunnel.Source cannot be set in IPVS (the outer source is the
//     route's); it is ignored with a warning.
//   - Schedulers: by their IPVS name (dataplane.SchedulerTable); the
//     kernel loads ip_vs_<name> on demand, and a kernel without it, or a
//     scheduler IPVS has none of, gives an error wrapping
//     dataplane.ErrNotSupported.
//   - Persistence: ipvsadm -p (IP_VS_SVC_F_PERSISTENT, timeout in whole
//     seconds rounded up, netmask /32 or /128).
//   - Weights: 0..65535, 0 drains (ipvsadm's range; the netlink library
//     reads weights back as 16 bits).
//   - Connection thresholds: the real server's u_threshold and l_threshold
//     (ipvsadm -x, -y); IPVS keeps the overload flag itself.
//   - Backend.MAC and Ifindex are XDP's; IPVS resolves next hops itself.
//   - Service.Enabled: ignored. The rules stay installed while a VRRP
//     instance is BACKUP, as keepalived leaves them: traffic follows the
//     VIP, so a backup gets none, and a takeover needs no rule change.
//     Name is ignored too (IPVS has nowhere to keep it).
//
// Apply diffs the desired services against the kernel's tables: a service
// or real server whose settings did not change is not touched, so its
// connections and counters survive; changed settings are edited in place
// (IPVS_CMD_SET_SERVICE, IPVS_CMD_SET_DEST), never deleted and re-added.
// Real servers are added in reverse configuration order, so that the
// kernel's list, which IPVS's rr and wrr cycle through and lc/wlc break
// ties on, is in configuration order, as the dataplane interface asks; a
// real server added to an existing service joins the list at its head.
//
// The dataplane owns the services it created or adopted (a desired service
// found installed, e.g. after a daemon restart: Close leaves the rules in
// place). Apply deletes owned services no longer desired, and Detach
// deletes every owned service; other IPVS services (another tool's) are
// never touched. A service removed from the configuration while the daemon
// was not running is therefore not known as ours and stays installed.
//
// Counters are IPVS's 64-bit statistics (IPVS_*_ATTR_STATS64), read with a
// separate generic netlink dump; ActiveConns and InactiveConns are the real
// servers' ActiveConn and InActConn. IPVS folds its per-CPU counters into
// what it reports every 2 seconds (its rate estimator's period), so the
// counters lag traffic by up to 2 s, as ipvsadm --stats does. Counters live
// with the kernel's service and real server: deleting one (or removing it
// from the configuration) resets them; IPVS may keep a removed real server
// a while in its trash and give its counters back if it is re-added.
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlb-dev/xlb/dataplane"
)

// Options configure the IPVS dataplane.
type Options struct {
	Logger *slog.Logger
	// NetNS is the path of the network namespace whose IPVS tables are
	// driven, e.g. /run/netns/NAME; empty: the caller's.
	NetNS string
}

// Dataplane drives the kernel's IPVS tables.
type Dataplane struct {
	log   *slog.Logger
	mu    sync.Mutex
	h     *ipvs.Handle
	stats *statsConn
	// owned are the services this dataplane installed or adopted, as last
	// applied.
	owned  map[dataplane.ServiceKey]dataplane.Service
	closed bool
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// New connects to the kernel's IPVS, loading the ip_vs module if needed.
// A kernel without IPVS gives an error wrapping dataplane.ErrNotSupported,
// so that the daemon's auto mode can say why it cannot fall back.
func New(opts Options) (*Dataplane, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fam, err := ipvsFamily()
	if err != nil {
		return nil, err
	}
	ns := netns.None()
	if opts.NetNS != "" {
		ns, err = netns.GetFromPath(opts.NetNS)
		if err != nil {
			return nil, fmt.Errorf("ipvs: open network namespace %s: %w", opts.NetNS, err)
		}
		defer ns.Close()
	}
	h, err := ipvs.New(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("ipvs: netlink handle: %w", err)
	}
	st, err := newStatsConn(ns, fam)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	d := &Dataplane{log: log, h: h, stats: st, owned: map[dataplane.ServiceKey]dataplane.Service{}}
	// Every IPVS command needs CAP_NET_ADMIN in the namespace: find out now
	// rather than at the first Apply.
	if _, err := h.GetServices(); err != nil {
		d.Close()
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	log.Info("ipvs dataplane ready", "netns", opts.NetNS)
	return d, nil
}

// ipvsFamily returns the IPVS generic netlink family, loading ip_vs first
// if the kernel does not know it yet.
func ipvsFamily() (uint16, error) {
	f, err := netlink.GenlFamilyGet("IPVS")
	if err == nil {
		return f.ID, nil
	}
	out, merr := exec.Command("modprobe", "ip_vs").CombinedOutput()
	if f, err := netlink.GenlFamilyGet("IPVS"); err == nil {
		return f.ID, nil
	}
	why := fmt.Sprintf("modprobe ip_vs: %v", merr)
	if merr == nil {
		why = "modprobe ip_vs succeeded but the family is still missing"
	} else if s := strings.TrimSpace(string(out)); s != "" {
		why += ": " + s
	}
	return 0, fmt.Errorf("ipvs: the kernel has no IPVS (generic netlink family IPVS: %v; %s): %w",
		err, why, dataplane.ErrNotSupported)
}

// Info implements dataplane.Dataplane.
func (d *Dataplane) Info() dataplane.Info { return dataplane.Info{Mode: "ipvs"} }

// Limits are IPVS's: none. The kernel's tables grow as services and real
// servers are added, bounded by memory only (ip_vs_ctl.c: services chained
// in a hash table, each service's destinations in a list), and IPVS
// attaches to no interface.
var Limits = dataplane.Limits{Dataplane: "the IPVS dataplane"}

// Capabilities implements dataplane.Dataplane: the kernel resolves next
// hops itself; no limits.
func (d *Dataplane) Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{Limits: Limits}
}

var errClosed = errors.New("ipvs: dataplane closed")

// Apply implements dataplane.Dataplane. Services are applied one by one;
// one that fails (a missing scheduler module, say) does not stop the
// others, and the errors are joined.
func (d *Dataplane) Apply(ctx context.Context, desired []dataplane.Service) error {
	if err := dataplane.Validate(desired); err != nil {
		return err
	}
	if err := check(desired); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	list, err := d.h.GetServices()
	if err != nil {
		return fmt.Errorf("ipvs: list services: %w", err)
	}
	installed := map[dataplane.ServiceKey]*ipvs.Service{}
	for _, s := range list {
		if k, ok := serviceKey(s); ok {
			installed[k] = s
		}
	}
	want := make(map[dataplane.ServiceKey]bool, len(desired))
	for _, s := range desired {
		want[s.Key] = true
	}
	var errs []error
	for _, k := range sortedKeys(d.owned) {
		if want[k] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := d.deleteService(k, installed[k] != nil); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range desired {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := d.applyService(s, installed[s.Key]); err != nil {
			errs = append(errs, fmt.Errorf("ipvs: service %s (%s): %w", s.Name, s.Key, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Dataplane) deleteService(k dataplane.ServiceKey, present bool) error {
	name := d.owned[k].Name
	if present {
		if err := d.h.DelService(toService(d.owned[k])); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("ipvs: delete service %s (%s): %w", name, k, err)
		}
		d.log.Info("ipvs service deleted", "service", name, "key", k.String())
	}
	delete(d.owned, k)
	return nil
}

// applyService creates s, or brings the installed service cur to s.
func (d *Dataplane) applyService(s dataplane.Service, cur *ipvs.Service) error {
	svc := toService(s)
	if s.Forward == dataplane.Tunnel && s.Tunnel.Source.IsValid() {
		if old, ok := d.owned[s.Key]; !ok || old.Tunnel.Source != s.Tunnel.Source {
			d.log.Warn("ipvs cannot set a tunnel's outer source: the route's source is used",
				"service", s.Name, "source", s.Tunnel.Source.String())
		}
	}
	var dests map[dataplane.BackendKey]*ipvs.Destination
	if cur == nil {
		if err := d.h.NewService(svc); err != nil {
			return serviceError("create", s, err)
		}
		d.log.Info("ipvs service created", "service", s.Name, "key", s.Key.String(),
			"scheduler", string(s.Scheduler), "forward", string(s.Forward), "persistence", s.Persistence)
		d.owned[s.Key] = dataplane.Service{Key: s.Key, Name: s.Name}
	} else {
		if diff := serviceDiff(cur, svc); diff != "" {
			if err := d.h.UpdateService(svc); err != nil {
				return serviceError("update", s, err)
			}
			d.log.Info("ipvs service updated", "service", s.Name, "key", s.Key.String(), "change", diff)
		}
		if _, ok := d.owned[s.Key]; !ok {
			d.log.Info("ipvs service adopted", "service", s.Name, "key", s.Key.String())
			d.owned[s.Key] = dataplane.Service{Key: s.Key, Name: s.Name}
		}
		list, err := d.h.GetDestinations(svc)
		if err != nil {
			return fmt.Errorf("list real servers: %w", err)
		}
		dests = map[dataplane.BackendKey]*ipvs.Destination{}
		for _, x := range list {
			if k, ok := destKey(x); ok {
				dests[k] = x
			}
		}
	}
	wantB := make(map[dataplane.BackendKey]bool, len(s.Backends))
	for _, b := range s.Backends {
		wantB[b.Key()] = true
	}
	for _, k := range slices.SortedFunc(maps.Keys(dests), dataplane.BackendKey.Compare) {
		if wantB[k] {
			continue
		}
		if err := d.h.DelDestination(svc, dests[k]); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove real server %s: %w", k, err)
		}
		d.log.Info("ipvs real server removed", "service", s.Name, "backend", k.String())
	}
	// Reverse order: the kernel adds each at the head of its list.
	for _, b := range slices.Backward(s.Backends) {
		dst := toDestination(s, b)
		cur, ok := dests[b.Key()]
		switch {
		case !ok:
			if err := d.h.NewDestination(svc, dst); err != nil {
				return fmt.Errorf("add real server %s: %w", b.Key(), err)
			}
			d.log.Info("ipvs real server added", "service", s.Name, "backend", b.Key().String(), "weight", b.Weight)
		default:
			diff := destDiff(cur, dst)
			if diff == "" {
				continue
			}
			if err := d.h.UpdateDestination(svc, dst); err != nil {
				return fmt.Errorf("update real server %s: %w", b.Key(), err)
			}
			d.log.Info("ipvs real server updated", "service", s.Name, "backend", b.Key().String(),
				"weight", b.Weight, "previous_weight", cur.Weight, "changed", diff)
		}
	}
	d.owned[s.Key] = s.Clone()
	return nil
}

// serviceError explains a failed service command: ENOENT is the kernel's
// answer when it has no module for the scheduler.
func serviceError(op string, s dataplane.Service, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%s: scheduler %s: the kernel has no ip_vs_%s module: %w (%w)",
			op, s.Scheduler, ipvsScheduler(s.Scheduler), dataplane.ErrNotSupported, err)
	case errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%s: the kernel's IPVS has no IPv6: %w (%w)", op, dataplane.ErrNotSupported, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Stats implements dataplane.Dataplane: the counters of the owned services
// and their real servers.
func (d *Dataplane) Stats(ctx context.Context) (*dataplane.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	all, err := d.stats.serviceCounters()
	if err != nil {
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	st := &dataplane.Stats{Services: map[dataplane.ServiceKey]dataplane.ServiceStats{}}
	for _, k := range sortedKeys(d.owned) {
		c, ok := all[k]
		if !ok {
			continue // deleted behind our back
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := d.stats.backendStats(k)
		if err != nil {
			return nil, fmt.Errorf("ipvs: %w", err)
		}
		st.Services[k] = dataplane.ServiceStats{Counters: c, Backends: b}
	}
	return st, nil
}

// Detach implements dataplane.Dataplane: it deletes the owned services.
func (d *Dataplane) Detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errClosed
	}
	var errs []error
	for _, k := range sortedKeys(d.owned) {
		if err := d.deleteService(k, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close implements dataplane.Dataplane; the installed services stay.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.h.Close()
	d.stats.close()
	return nil
}
