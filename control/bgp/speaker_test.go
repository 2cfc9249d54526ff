package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// router is a GoBGP speaker standing in for a router, on a loopback
// address, with the speaker under test (from 127.0.0.1) as its neighbour.
type router struct {
	t    *testing.T
	srv  *server.BgpServer
	addr netip.Addr
	port uint16
}

const speakerASN, routerASN = 65010, 65000

func newRouter(t *testing.T, addr string) *router {
	t.Helper()
	// A free port on the address (released just before GoBGP takes it).
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skipf("loopback address %s: %v", addr, err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	r := &router{t: t, srv: server.NewBgpServer(), addr: netip.MustParseAddr(addr), port: port}
	go r.srv.Serve()
	if err := r.srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: routerASN, RouterId: addr, ListenPort: int32(port), ListenAddresses: []string{addr},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerASN},
		Transport: &api.Transport{PassiveMode: true},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		r.srv.Stop()
	})
	return r
}

// peer is the speaker's configuration of this router.
func (r *router) peer() PeerConfig {
	return PeerConfig{Address: r.addr, ASN: routerASN, Port: r.port, HoldTime: 9 * time.Second}
}

// route is what the router has for prefix: its communities, MED and
// whether it has it at all.
type seen struct {
	ok          bool
	med         int64 // -1 none
	communities []string
	nexthop     string
}

func (r *router) route(prefix string) seen {
	pfx := netip.MustParsePrefix(prefix)
	fam := bgp.RF_IPv4_UC
	if pfx.Addr().Is6() {
		fam = bgp.RF_IPv6_UC
	}
	out := seen{med: -1}
	_ = r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam}, func(n bgp.NLRI, paths []*apiutil.Path) {
		if n.String() != prefix {
			return
		}
		for _, p := range paths {
			out.ok = true
			for _, a := range p.Attrs {
				switch a := a.(type) {
				case *bgp.PathAttributeMultiExitDisc:
					out.med = int64(a.Value)
				case *bgp.PathAttributeCommunities:
					for _, c := range a.Value {
						out.communities = append(out.communities, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
					}
				case *bgp.PathAttributeNextHop:
					out.nexthop = a.Value.String()
				}
			}
		}
	})
	return out
}

// session returns the router's view of its session with the speaker.
func (r *router) session() *api.Peer {
	var out *api.Peer
	_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) { out = p })
	return out
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *router) waitRoute(prefix string, want func(seen) error) {
	r.t.Helper()
	waitFor(r.t, fmt.Sprintf("%s at %s", prefix, r.addr), func() error { return want(r.route(prefix)) })
}

func present(s seen) error {
	if !s.ok {
		return fmt.Errorf("not announced")
	}
	return nil
}

func absent(s seen) error {
	if s.ok {
		return fmt.Errorf("still announced: %+v", s)
	}
	return nil
}

func newSpeaker(t *testing.T) *Speaker {
	t.Helper()
	s, err := NewSpeaker(SpeakerOptions{ASN: speakerASN, RouterID: netip.MustParseAddr("10.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background(), false) })
	return s
}

// Routes follow Announce one UPDATE at a time, with their attributes; the
// next hop is the session's address.
func TestSpeakerAnnounce(t *testing.T) {
	r := newRouter(t, "127.0.0.2")
	s := newSpeaker(t)
	if err := s.SetPeers(context.Background(), []PeerConfig{r.peer()}); err != nil {
		t.Fatal(err)
	}
	a := Route{Prefix: netip.MustParsePrefix("10.0.0.3/32"), Attrs: Attrs{MED: u32(7), Communities: []uint32{65010<<16 | 100}}}
	b := Route{Prefix: netip.MustParsePrefix("10.0.0.4/32")}
	if err := s.Announce([]Route{a, b}); err != nil {
		t.Fatal(err)
	}
	r.waitRoute("10.0.0.3/32", func(got seen) error {
		if !got.ok || got.med != 7 || !slices.Equal(got.communities, []string{"65010:100"}) || got.nexthop != "127.0.0.1" {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	r.waitRoute("10.0.0.4/32", present)

	// Draining: the same route with GRACEFUL_SHUTDOWN replaces it.
	gshut := a
	gshut.Attrs.Communities = []uint32{65010<<16 | 100, GracefulShutdown}
	if err := s.Announce([]Route{gshut, b}); err != nil {
		t.Fatal(err)
	}
	r.waitRoute("10.0.0.3/32", func(got seen) error {
		if !slices.Equal(got.communities, []string{"65010:100", "65535:0"}) {
			return fmt.Errorf("communities %v", got.communities)
		}
		return nil
	})
	// A withdrawal of one leaves the other.
	if err := s.Announce([]Route{gshut}); err != nil {
		t.Fatal(err)
	}
	r.waitRoute("10.0.0.4/32", absent)
	r.waitRoute("10.0.0.3/32", present)
	if st := s.Peers(context.Background()); len(st) != 1 || st[0].State != "established" || st[0].Advertised != 1 {
		t.Errorf("peer status %+v", st)
	}
	if sess := r.session(); sess.State.Messages.Received.Open != 1 {
		t.Errorf("%d OPEN messages: route changes reset the session", sess.State.Messages.Received.Open)
	}
}

// A reload that changes one peer resets that peer's session only; a
// change of a peer's route attributes re-sends its routes without a reset.
func TestSpeakerSetPeersOneByOne(t *testing.T) {
	ra, rb := newRouter(t, "127.0.0.2"), newRouter(t, "127.0.0.3")
	s := newSpeaker(t)
	ctx := context.Background()
	if err := s.SetPeers(ctx, []PeerConfig{ra.peer(), rb.peer()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce([]Route{{Prefix: netip.MustParsePrefix("10.0.0.3/32")}}); err != nil {
		t.Fatal(err)
	}
	ra.waitRoute("10.0.0.3/32", present)
	rb.waitRoute("10.0.0.3/32", present)
	upA := ra.session().Timers.State.Uptime.AsTime()

	// Peer B's hold time changes: its session is reset, A's is not.
	pb := rb.peer()
	pb.HoldTime = 12 * time.Second
	if err := s.SetPeers(ctx, []PeerConfig{ra.peer(), pb}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new session with B", func() error {
		if n := rb.session().State.Messages.Received.Open; n != 2 {
			return fmt.Errorf("%d OPEN messages", n)
		}
		return nil
	})
	rb.waitRoute("10.0.0.3/32", present)
	// Peer A gets a MED and a community: its routes are re-sent.
	pa := ra.peer()
	pa.MED, pa.Communities = u32(50), []uint32{65010<<16 | 7}
	if err := s.SetPeers(ctx, []PeerConfig{pa, pb}); err != nil {
		t.Fatal(err)
	}
	ra.waitRoute("10.0.0.3/32", func(got seen) error {
		if got.med != 50 || !slices.Equal(got.communities, []string{"65010:7"}) {
			return fmt.Errorf("got %+v", got)
		}
		return nil
	})
	if got := rb.route("10.0.0.3/32"); got.med != -1 || got.communities != nil {
		t.Errorf("B got A's attributes: %+v", got)
	}
	sess := ra.session()
	if n := sess.State.Messages.Received.Open; n != 1 || !sess.Timers.State.Uptime.AsTime().Equal(upA) {
		t.Errorf("A: %d OPEN messages, up since %v (was %v): its session was reset", n, sess.Timers.State.Uptime.AsTime(), upA)
	}
	// B is removed: A stays.
	if err := s.SetPeers(ctx, []PeerConfig{pa}); err != nil {
		t.Fatal(err)
	}
	rb.waitRoute("10.0.0.3/32", absent)
	if n := ra.session().State.Messages.Received.Open; n != 1 {
		t.Errorf("A: %d OPEN messages after B was removed", n)
	}
}

// Shutdown closes the sessions with an Administrative Shutdown carrying
// the message (RFC 8203) and keeps them closed; Resume opens them again.
func TestSpeakerShutdownResume(t *testing.T) {
	r := newRouter(t, "127.0.0.2")
	s := newSpeaker(t)
	ctx := context.Background()
	if err := s.SetPeers(ctx, []PeerConfig{r.peer()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce([]Route{{Prefix: netip.MustParsePrefix("10.0.0.3/32")}}); err != nil {
		t.Fatal(err)
	}
	r.waitRoute("10.0.0.3/32", present)
	msgs := make(chan string, 16)
	if err := r.srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
		if ev.Type == apiutil.PEER_EVENT_STATE && ev.Peer.State.DisconnectMessage != "" {
			msgs <- ev.Peer.State.DisconnectMessage
		}
	}}, server.WatchPeer()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx, "xlb drain: maintenance"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		// GoBGP does not report the message it received (the FRR lab
		// checks it).
		if !strings.Contains(m, "subcode 2(administrative shutdown)") {
			t.Errorf("the router's session ended with %q, want a Cease / Administrative Shutdown", m)
		}
		t.Logf("router: %s", m)
	case <-time.After(15 * time.Second):
		t.Fatal("the router's session did not end")
	}
	r.waitRoute("10.0.0.3/32", absent)
	if st := s.Peers(ctx); len(st) != 1 || !st[0].AdminDown {
		t.Errorf("peer status %+v", st)
	}
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitRoute("10.0.0.3/32", present)
}
