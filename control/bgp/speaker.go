package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// PeerConfig is one BGP neighbour (a router).
type PeerConfig struct {
	Address  netip.Addr
	ASN      uint32
	Port     uint16        // 0: 179
	HoldTime time.Duration // 0: no keepalives (RFC 4271 allows it)
	// BFD runs single-hop BFD on the session (RFC 5880/5881), with
	// BFDInterval as transmit and receive interval and BFDMultiplier.
	BFD           bool
	BFDInterval   time.Duration
	BFDMultiplier uint8
	// Password is the TCP MD5 password (RFC 2385); "" none.
	Password string
	// MED, LocalPref and Communities are set on every route sent to the
	// peer (MED and LocalPref replacing the route's own).
	MED         *uint32
	LocalPref   *uint32
	Communities []uint32
}

func (p PeerConfig) attrs() Attrs {
	return Attrs{MED: p.MED, LocalPref: p.LocalPref, Communities: p.Communities}
}

// session is what resets a session when it changes.
func (p PeerConfig) session() PeerConfig {
	p.MED, p.LocalPref, p.Communities = nil, nil, nil
	return p
}

// SpeakerOptions configure a Speaker.
type SpeakerOptions struct {
	ASN      uint32
	RouterID netip.Addr
	// RestartTime is the graceful restart time advertised (RFC 4724),
	// whole seconds; 0: no graceful restart.
	RestartTime time.Duration
	// Restarting: the dataplane kept forwarding across a restart of the
	// daemon. The OPEN messages then carry the Restart State bit and the
	// Forwarding State bit of each family, and routers keep the routes
	// they had from this director until it has sent its own again.
	Restarting bool
	Logger     *slog.Logger
}

// Speaker is an embedded GoBGP speaker that originates VIP routes. Routes
// change with AddPath and DeletePath only; peers are added, removed or
// changed one by one, never by resetting the others.
type Speaker struct {
	log  *slog.Logger
	srv  *server.BgpServer
	opts SpeakerOptions

	mu     sync.Mutex
	peers  map[netip.Addr]PeerConfig
	routes map[netip.Prefix]announced
	// down: the sessions are administratively shut (drained).
	down bool
}

type announced struct {
	attrs Attrs
	id    uuid.UUID
}

// NewSpeaker starts a GoBGP server. It does not listen on the BGP port:
// xlb opens the sessions to its routers.
func NewSpeaker(opts SpeakerOptions) (*Speaker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !opts.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router id %v is not an IPv4 address", opts.RouterID)
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	srv := server.NewBgpServer(server.LoggerOption(opts.Logger.With("component", "gobgp"), lvl))
	go srv.Serve()
	s := &Speaker{log: opts.Logger, srv: srv, opts: opts, peers: map[netip.Addr]PeerConfig{}, routes: map[netip.Prefix]announced{}}
	err := srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: opts.ASN, RouterId: opts.RouterID.String(), ListenPort: -1,
	}})
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	err = srv.WatchEvent(context.Background(), server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type == apiutil.PEER_EVENT_STATE {
				p := ev.Peer
				s.log.Info("BGP session", "peer", p.Conf.NeighborAddress, "state", strings.ToLower(strings.TrimPrefix(p.State.SessionState.String(), "BGP_FSM_")),
					"admin_down", p.State.AdminState == api.PeerState_ADMIN_STATE_DOWN, "reason", p.State.DisconnectMessage)
			}
		},
	}, server.WatchPeer())
	if err != nil {
		srv.Stop()
		return nil, fmt.Errorf("bgp: watch: %w", err)
	}
	return s, nil
}

// SetPeers makes the peers those given: new ones are added, removed ones
// deleted (Cease / Peer De-configured), and only those whose session
// settings changed are reset. A change of MED, LOCAL_PREF or communities
// only re-sends the routes to that peer.
func (s *Speaker) SetPeers(ctx context.Context, peers []PeerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[netip.Addr]PeerConfig{}
	for _, p := range peers {
		want[p.Address] = p
	}
	var errs []error
	var resend []netip.Addr
	policyChanged := false
	for addr, old := range s.peers {
		p, ok := want[addr]
		if ok && equalPeer(old.session(), p.session()) {
			if !old.attrs().Equal(p.attrs()) {
				s.peers[addr] = p
				resend = append(resend, addr)
				policyChanged = true
			}
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: remove peer %s: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		policyChanged = policyChanged || !old.attrs().Equal(Attrs{})
		s.log.Info("BGP peer removed", "peer", addr)
	}
	var added []PeerConfig
	for _, addr := range sortedAddrs(want) {
		if _, ok := s.peers[addr]; !ok {
			added = append(added, want[addr])
			policyChanged = policyChanged || !want[addr].attrs().Equal(Attrs{})
		}
	}
	// Policies first, so that a new peer gets its attributes from its
	// first UPDATE.
	if policyChanged {
		for _, p := range added {
			s.peers[p.Address] = p
		}
		err := s.setPolicies(ctx)
		for _, p := range added {
			delete(s.peers, p.Address)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range added {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: add peer %s: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.log.Info("BGP peer added", "peer", p.Address, "asn", p.ASN, "bfd", p.BFD)
	}
	for _, addr := range resend {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: re-send routes to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

func equalPeer(a, b PeerConfig) bool {
	return a.Address == b.Address && a.ASN == b.ASN && a.Port == b.Port && a.HoldTime == b.HoldTime && a.BFD == b.BFD &&
		a.BFDInterval == b.BFDInterval && a.BFDMultiplier == b.BFDMultiplier && a.Password == b.Password
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// apiPeer is GoBGP's configuration of p.
func (s *Speaker) apiPeer(p PeerConfig) *api.Peer {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		fam.Afi = api.Family_AFI_IP6
	}
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	hold := uint64(p.HoldTime / time.Second)
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password, AdminDown: s.down},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: hold / 3, ConnectRetry: 2, IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: port},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}},
	}
	if hold == 0 {
		// GoBGP's zero means its default (90s): RFC 4271's zero (no
		// keepalives) is not configurable; take the smallest wait instead.
		ap.Timers.Config.HoldTime, ap.Timers.Config.KeepaliveInterval = 65535, 21845
	}
	if s.opts.RestartTime > 0 {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(s.opts.RestartTime / time.Second),
			DeferralTime:    5,
			LocalRestarting: s.opts.Restarting,
		}
		ap.AfiSafis[0].MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	if p.BFD {
		us := uint32(p.BFDInterval / time.Microsecond)
		ap.Bfd = &api.BfdPeerConfig{
			Enabled: true, Port: 3784, DesiredMinimumTxInterval: us, RequiredMinimumReceive: us,
			DetectionMultiplier: uint32(p.BFDMultiplier),
		}
	}
	return ap
}

// policyName names the export policy of a peer's attributes.
func policyName(a netip.Addr) string { return "xlb-peer-" + a.String() }

// setPolicies installs one export policy per peer with attributes (a
// neighbour set matching the peer, actions setting MED, LOCAL_PREF and
// adding communities) as the global export policy. Routes already sent
// are re-sent by the caller (soft reset out of the peers concerned).
func (s *Speaker) setPolicies(ctx context.Context) error {
	// Unassign, delete ours, add the new ones, assign.
	err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}})
	if err != nil {
		return fmt.Errorf("bgp: export policy: %w", err)
	}
	var old []string
	_ = s.srv.ListPolicy(ctx, &api.ListPolicyRequest{}, func(p *api.Policy) {
		if strings.HasPrefix(p.Name, "xlb-peer-") {
			old = append(old, p.Name)
		}
	})
	for _, name := range old {
		if err := s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true}); err != nil {
			return fmt.Errorf("bgp: export policy %s: %w", name, err)
		}
		_ = s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{
			DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: name}, All: true,
		})
	}
	var policies []*api.Policy
	for _, addr := range sortedAddrs(s.peers) {
		p := s.peers[addr]
		if p.attrs().Equal(Attrs{}) {
			continue
		}
		name := policyName(addr)
		err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: name, List: []string{netip.PrefixFrom(addr, addr.BitLen()).String()},
		}})
		if err != nil {
			return fmt.Errorf("bgp: neighbour set %s: %w", name, err)
		}
		acts := &api.Actions{}
		if p.MED != nil {
			acts.Med = &api.MedAction{Type: api.MedAction_TYPE_REPLACE, Value: int64(*p.MED)}
		}
		if p.LocalPref != nil {
			acts.LocalPref = &api.LocalPrefAction{Value: *p.LocalPref}
		}
		if len(p.Communities) > 0 {
			var cs []string
			for _, c := range p.Communities {
				cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
			acts.Community = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: cs}
		}
		pol := &api.Policy{Name: name, Statements: []*api.Statement{{
			Name:       name,
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: name}},
			Actions:    acts,
		}}}
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
			return fmt.Errorf("bgp: export policy %s: %w", name, err)
		}
		policies = append(policies, &api.Policy{Name: name})
	}
	err = s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT, Policies: policies,
		DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}})
	if err != nil {
		return fmt.Errorf("bgp: export policy: %w", err)
	}
	return nil
}

// Announce makes the originated routes those given: a new route or one
// whose attributes changed is added (an UPDATE replaces the previous one),
// a route no longer given is deleted (a withdrawal). Nothing else is sent.
func (s *Speaker) Announce(routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[netip.Prefix]Route{}
	for _, r := range routes {
		want[r.Prefix] = r
	}
	var errs []error
	for pfx, a := range s.routes {
		if _, ok := want[pfx]; ok {
			continue
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: []uuid.UUID{a.id}}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw %s: %w", pfx, err))
			continue
		}
		delete(s.routes, pfx)
		s.log.Info("BGP route withdrawn", "prefix", pfx)
	}
	for _, pfx := range sortedPrefixes(want) {
		r := want[pfx]
		if a, ok := s.routes[pfx]; ok && a.attrs.Equal(r.Attrs) {
			continue
		}
		path, err := originate(r)
		if err == nil {
			var res []apiutil.AddPathResponse
			res, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
			if err == nil {
				s.routes[pfx] = announced{attrs: r.Attrs, id: res[0].UUID}
				s.log.Info("BGP route announced", "prefix", pfx, "communities", communityStrings(r.Attrs.Communities))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("bgp: announce %s: %w", pfx, err))
	}
	return errors.Join(errs...)
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

func communityStrings(cs []uint32) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%d:%d", c>>16, c&0xffff)
	}
	return out
}

// originate builds the path of a route: origin IGP, an empty AS_PATH (the
// local AS is prepended towards eBGP peers), the next hop left to GoBGP
// (the session's local address), and the route's attributes.
func originate(r Route) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{}),
	}
	if r.Prefix.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	if r.Attrs.MED != nil {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(*r.Attrs.MED))
	}
	if r.Attrs.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*r.Attrs.LocalPref))
	}
	if len(r.Attrs.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(slices.Clone(r.Attrs.Communities)))
	}
	fam := bgp.RF_IPv4_UC
	if r.Prefix.Addr().Is6() {
		fam = bgp.RF_IPv6_UC
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// Shutdown closes every session with a Cease / Administrative Shutdown
// NOTIFICATION carrying msg (RFC 8203) and keeps them closed (also for
// peers added later) until Resume.
func (s *Speaker) Shutdown(ctx context.Context, msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = true
	var errs []error
	for _, addr := range sortedAddrs(s.peers) {
		if err := s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr.String(), Communication: msg}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: shut down session with %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Resume opens the sessions Shutdown closed.
func (s *Speaker) Resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down {
		return nil
	}
	s.down = false
	// Each peer is configured anew rather than enabled: GoBGP keeps a
	// disabled peer's BFD session, whose stale discriminators a router
	// that made a new one (BIRD) refuses, and the new BGP session would be
	// reset as "BFD is down" again and again.
	var errs []error
	for _, addr := range sortedAddrs(s.peers) {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: open session with %s: %w", addr, err))
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(s.peers[addr])}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: open session with %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Stop stops the speaker. With restart (graceful restart configured),
// the sessions are closed without a NOTIFICATION, so that routers keep
// this director's routes for the restart time (RFC 4724): the daemon
// restarts and the dataplane keeps forwarding. Otherwise each peer gets
// a Cease.
func (s *Speaker) Stop(ctx context.Context, restart bool) error {
	err := s.srv.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: restart && s.opts.RestartTime > 0})
	s.srv.Stop()
	return err
}

// PeerStatus is one peer's session.
type PeerStatus struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is the session's FSM state (idle, connect, active, opensent,
	// openconfirm, established); AdminDown while drained.
	State     string    `json:"state"`
	AdminDown bool      `json:"admin_down,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	// BFD is the BFD session's state (up, down, init, admin_down), ""
	// without BFD.
	BFD string `json:"bfd,omitempty"`
	// Advertised counts the prefixes sent to the peer.
	Advertised uint64 `json:"advertised"`
	// Received counts the prefixes the peer sent (ignored).
	Received uint64 `json:"received"`
	// LastError is why the session went down last.
	LastError string `json:"last_error,omitempty"`
	// Opens counts OPEN messages received: each is a new session.
	Opens uint64 `json:"opens"`
}

// Peers returns the state of every peer, sorted by address.
func (s *Speaker) Peers(ctx context.Context) []PeerStatus {
	var out []PeerStatus
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := PeerStatus{Address: p.Conf.NeighborAddress, ASN: p.Conf.PeerAsn}
		if p.State != nil {
			st.State = stateName(p.State.SessionState)
			st.AdminDown = p.State.AdminState == api.PeerState_ADMIN_STATE_DOWN
			st.LastError = p.State.DisconnectMessage
			if p.State.Messages != nil && p.State.Messages.Received != nil {
				st.Opens = p.State.Messages.Received.Open
			}
			if b := p.State.BfdState; b != nil && p.Bfd != nil && p.Bfd.Enabled {
				st.BFD = strings.ToLower(strings.TrimPrefix(b.SessionState.String(), "BFD_SESSION_STATE_"))
			}
		}
		if p.Timers != nil && p.Timers.State != nil {
			t := p.Timers.State.Uptime
			if st.State != "established" {
				t = p.Timers.State.Downtime
			}
			if t != nil && t.Seconds > 0 {
				st.Since = t.AsTime()
			}
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				st.Advertised += af.State.Advertised
				st.Received += af.State.Received
			}
		}
		out = append(out, st)
	})
	sort.Slice(out, func(i, j int) bool {
		a, _ := netip.ParseAddr(out[i].Address)
		b, _ := netip.ParseAddr(out[j].Address)
		return a.Less(b)
	})
	return out
}

func stateName(s api.PeerState_SessionState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SESSION_STATE_"))
}
