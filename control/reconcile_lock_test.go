package control

import (
	"context"
	"net"
	"net/netip"
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
