package control

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/dataplane/dataplanetest"
)

// stuckNeighbors blocks every Lookup until release is closed, and says
// when the first one has started.
type stuckNeighbors struct {
	fakeNeighbors
	started, release chan struct{}
}

func (s *stuckNeighbors) Lookup(a netip.Addr) (net.HardwareAddr, int, bool) {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-s.release
	return s.fakeNeighbors.Lookup(a)
}

// What status reads of the reconciler (States, Applied, LastError) and
// what VRRP and the checks feed it (SetRole, SetModel, Poke) do not wait
// for a round's long work: its next-hop lookups and its desired state of
// 65,536 real servers are made without the reconciler's lock (a status
// during a storm of check changes waited behind one round after another),
// and the resolver is not called under it.
func TestReconcilerAnswersDuringARound(t *testing.T) {
	nb := &stuckNeighbors{started: make(chan struct{}, 1), release: make(chan struct{})}
	r := NewReconciler(dataplanetest.NewFake(), ReconcilerOptions{Neighbors: nb, Health: (&fakeHealth{}).states})
	s := ServiceSpec{Name: "web", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.DirectRouting, Reals: []RealSpec{real("10.0.0.7", 80, 1)}}
	r.SetModel(Model{Services: []ServiceSpec{s}})
	round := make(chan error, 1)
	go func() { round <- r.Reconcile(context.Background()) }()
	released := false
	release := func() {
		if !released {
			released = true
			close(nb.release)
		}
	}
	defer release()
	select {
	case <-nb.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the round did not look the next hop up")
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		r.States()
		r.Applied()
		_ = r.LastError()
		r.SetRole("VI_1", Role{Master: true, At: time.Now()})
		r.SetModel(Model{Services: []ServiceSpec{s}})
	}()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Error("the reconciler did not answer while a round looked a next hop up")
	}
	release()
	if err := <-round; err != nil {
		t.Fatal(err)
	}
	<-answered
	if st := r.States()[s.Key]; !st.Up {
		t.Errorf("after the round: %+v, want up", st)
	}
}

// stuckOnce blocks the first Lookup until release is closed; the others
// answer at once.
type stuckOnce struct {
	fakeNeighbors
	first            atomic.Bool
	started, release chan struct{}
}

func (s *stuckOnce) Lookup(a netip.Addr) (net.HardwareAddr, int, bool) {
	if s.first.CompareAndSwap(false, true) {
		close(s.started)
		<-s.release
	}
	return s.fakeNeighbors.Lookup(a)
}

// Rounds run one at a time: a round that computed from an older model
// (here stuck on a next-hop lookup) does not apply after a newer round
// that started while it ran, which would leave the older state applied
// until the next change.
func TestReconcileRoundsInOrder(t *testing.T) {
	nb := &stuckOnce{started: make(chan struct{}), release: make(chan struct{})}
	fake := dataplanetest.NewFake()
	r := NewReconciler(fake, ReconcilerOptions{Neighbors: nb, Health: (&fakeHealth{}).states})
	web := ServiceSpec{Name: "web", Key: dataplane.ServiceKey{Addr: netip.MustParseAddr("10.0.0.3"), Port: 80, Proto: dataplane.TCP},
		Scheduler: dataplane.RoundRobin, Forward: dataplane.DirectRouting, Reals: []RealSpec{real("10.0.0.7", 80, 1)}}
	api := web
	api.Name, api.Key.Port, api.Reals = "api", 8080, []RealSpec{real("10.0.0.8", 8080, 1)}
	r.SetModel(Model{Services: []ServiceSpec{web}})
	older := make(chan error, 1)
	go func() { older <- r.Reconcile(context.Background()) }()
	<-nb.started
	r.SetModel(Model{Services: []ServiceSpec{web, api}})
	newer := make(chan error, 1)
	go func() { newer <- r.Reconcile(context.Background()) }()
	// The newer round waits for the older (with the fix), or applies at
	// once (without it); either way, then the older one finishes.
	select {
	case err := <-newer:
		if err != nil {
			t.Fatal(err)
		}
		t.Log("the newer round finished while the older one was still computing")
	case <-time.After(200 * time.Millisecond):
	}
	close(nb.release)
	if err := <-older; err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-newer:
		if err != nil {
			t.Fatal(err)
		}
	default:
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fake.Installed()) != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := len(fake.Installed()); got != 2 {
		t.Errorf("%d services installed after both rounds, want the newer model's 2 (last error %v)", got, r.LastError())
	}
}
