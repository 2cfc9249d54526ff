package xdp

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// TestBackendCountersEveryCPU: a backend's counters are summed over the
// CPUs' slices of xlb_be_stat_v3: packets forwarded on each online CPU
// land in that CPU's slice (cpu x the backend limit + id) and Stats adds
// them up; a reused id's counters are zeroed on every CPU.
func TestBackendCountersEveryCPU(t *testing.T) {
	e := newEnv(t)
	s := svc(dataplane.MaglevHashing, e.pool(1))
	e.apply(s)
	syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
	e.pick(syn)
	ack := syn
	ack.TCPFlags = packet.ACK
	frame := ack.Bytes()

	ncpu := runtime.NumCPU()
	const per = 3 // packets per CPU
	for cpu := range ncpu {
		err := e.ns.Do(func() error { // a locked OS thread
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				return err
			}
			out := make([]byte, 2048)
			for range per {
				opts := ebpf.RunOptions{Data: frame, DataOut: out, Context: bpfXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(e.eth0)}}
				ret, err := e.d.Program().Run(&opts)
				if err != nil {
					return err
				}
				if ret != xdpTX || backendOf(opts.DataOut) != 0 {
					t.Errorf("CPU %d: verdict %d, backend %d", cpu, ret, backendOf(opts.DataOut))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	id := e.d.services[s.Key].ids[0]
	for cpu := range ncpu {
		var v bpfXlbStats
		if err := e.d.objs.XlbBeStatV3.Lookup(uint32(cpu*maxBackends)+id, &v); err != nil {
			t.Fatal(err)
		}
		want := uint64(per)
		if got := v.Packets; got < want {
			t.Errorf("CPU %d's slice: %d packets of backend %d, want at least %d", cpu, got, id, want)
		}
	}
	st, err := e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Services[s.Key].Backend(s.Backends[0].Key()).Packets, uint64(ncpu*per+1); got != want {
		t.Errorf("backend packets %d, want %d (%d on each of %d CPUs and the SYN)", got, want, per, ncpu)
	}

	// The id reused by another real server, after the first is gone: its
	// counters start at zero on every CPU.
	w := e.d.newWrites()
	w.beStat.put(id)
	if err := w.flush(e.d); err != nil {
		t.Fatal(err)
	}
	st, err = e.d.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Services[s.Key].Backend(s.Backends[0].Key()); c.Counters != (dataplane.Counters{}) {
		t.Errorf("counters after the id's reset: %+v, want zeros", c.Counters)
	}
}

// TestRetiredBeStatPinRemoved: the pins of xlb_be_stat_v1 (a per-CPU
// array of 40 bytes per backend id and CPU) and xlb_be_stat_v2 (the array
// without BPF_F_MMAPABLE), which earlier versions left, are removed when
// the dataplane opens on that pin path.
func TestRetiredBeStatPinRemoved(t *testing.T) {
	e := newEnv(t)
	e.d.Close()
	pin, open := e.pinned(t)
	if err := os.MkdirAll(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, typ := range []ebpf.MapType{ebpf.PerCPUArray, ebpf.Array} {
		old, err := ebpf.NewMap(&ebpf.MapSpec{Type: typ, KeySize: 4, ValueSize: uint32(statsSize), MaxEntries: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if err := old.Pin(filepath.Join(pin, retiredBeStatPins[i])); err != nil {
			t.Fatal(err)
		}
	}
	e.d = open()
	for _, name := range retiredBeStatPins {
		if _, err := os.Stat(filepath.Join(pin, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the retired pin %s is still there: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(pin, bpfMapXlbBeStatV3)); err != nil {
		t.Errorf("the new pin: %v", err)
	}
}

// TestBeStatsRead: a read sums each id's counters over the CPUs' slices,
// for any number of ids (the last one's entry within a page, not at its
// end) and at ids past the first pages; ids past n are not read.
func TestBeStatsRead(t *testing.T) {
	e := newEnv(t)
	b := e.d.beStats
	// 1,000 ids are 40,000 bytes: the last page is read in part. Ids 102
	// and 103 straddle a page.
	const n = 1000
	ids := []uint32{0, 1, 102, 103, 511, n - 1, n}
	for c := range b.ncpu {
		for _, id := range ids {
			v := bpfXlbStats{Packets: uint64(id) + 1, Bytes: 1000 * (uint64(id) + 1), PacketsOut: uint64(c) + 1, BytesOut: 7, Conns: uint64(c*10) + uint64(id)}
			if err := b.m.Update(uint32(c*maxBackends)+id, &v, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := b.read(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d counters, want %d", len(got), n)
	}
	nc := uint64(b.ncpu)
	for _, id := range ids[:len(ids)-1] {
		want := dataplane.Counters{Packets: nc * (uint64(id) + 1), Bytes: nc * 1000 * (uint64(id) + 1),
			PacketsOut: nc * (nc + 1) / 2, BytesOut: 7 * nc, Connections: 10*nc*(nc-1)/2 + nc*uint64(id)}
		if got[id] != want {
			t.Errorf("id %d: %+v, want %+v", id, got[id], want)
		}
	}
	var zero dataplane.Counters
	for id := range got {
		if !slices.Contains(ids, uint32(id)) && got[id] != zero {
			t.Errorf("id %d, never written: %+v", id, got[id])
		}
	}
	if c, err := b.read(0); err != nil || len(c) != 0 {
		t.Errorf("read(0): %v, %v", c, err)
	}
}

// TestStatsBackendsInAppliedOrder: a service's backend stats are one per
// real server, in the order of the Backends applied (reordered by a later
// Apply, one dropped), each with its key, so that a status finds each at
// its real server's index without a map per service.
func TestStatsBackendsInAppliedOrder(t *testing.T) {
	e := newEnv(t)
	bs := e.pool(5)
	check := func(s dataplane.Service) {
		t.Helper()
		e.apply(s)
		st, err := e.d.Stats(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got := st.Services[s.Key].Backends
		if len(got) != len(s.Backends) {
			t.Fatalf("%d backend stats, want %d", len(got), len(s.Backends))
		}
		for i, b := range s.Backends {
			if got[i].Key != b.Key() {
				t.Errorf("backend stats %d: %s, want %s", i, got[i].Key, b.Key())
			}
		}
	}
	check(svc(dataplane.RoundRobin, bs))
	check(svc(dataplane.RoundRobin, []dataplane.Backend{bs[4], bs[2], bs[0], bs[3]}))
}
