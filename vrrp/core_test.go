package vrrp

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The state machine, driven with explicit times and fake adverts. Each
// step is an input (a tiny language, see apply) at a time offset, the
// actions it must produce, in order, and optionally the states after it.

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type step struct {
	at     time.Duration
	input  string
	want   []string
	states string // "a=MASTER b=BACKUP", checked when set
}

type scenario struct {
	name   string
	cfg    Config
	locals map[string]string // instance -> local address (default 10.0.0.1)
	steps  []step
}

func baseInst(name string, prio uint8, mods ...func(*InstanceConfig)) InstanceConfig {
	ic := InstanceConfig{Name: name, Interface: "eth0", VRID: 51, Priority: prio, AdvertInterval: time.Second, Version: 3,
		VIPs:                    []VIP{{Prefix: netip.MustParsePrefix("10.0.0.100/24")}},
		GARP:                    GARPConfig{MasterDelay: -1},
		SplitBrainProbeInterval: -1}
	for _, m := range mods {
		m(&ic)
	}
	return ic
}

func cfgOf(insts ...InstanceConfig) Config { return Config{Instances: insts} }

type harness struct {
	t   *testing.T
	c   *core
	cfg Config
}

func newHarness(t *testing.T, cfg Config, locals map[string]string) *harness {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	h := &harness{t: t, c: newCore(cfg), cfg: cfg}
	for _, in := range h.c.insts {
		l := "10.0.0.1"
		if s, ok := locals[in.name()]; ok {
			l = s
		}
		h.c.handle(t0, sourceAddr{in.name(), netip.MustParseAddr(l)})
	}
	return h
}

// input parses one step's input into the core's input:
//
//	start | tick | shutdown | reload (the same configuration)
//	adv <inst> <src> <prio> [int=<duration>] [ttl=N] [ver=N] [pass=S] [auth=N] [addrs=a,b]
//	    (an advert for the virtual router of inst, as inst would send it, changed by the options)
//	link <ifname> up|down
//	script <name> ok|fail
//	claim <ip>
func (h *harness) input(s string) input {
	h.t.Helper()
	f := strings.Fields(s)
	switch f[0] {
	case "start":
		return startUp{}
	case "tick":
		return timersDue{}
	case "shutdown":
		return shutDown{}
	case "reload":
		return configChanged{h.cfg}
	case "adv":
		in := h.c.byName[f[1]]
		prio, _ := strconv.Atoi(f[3])
		a := in.advert(uint8(prio))
		p := rxPacket{Advert: a, Src: netip.MustParseAddr(f[2]), Dst: MulticastGroup4, TTL: 255}
		for _, kv := range f[4:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "int":
				p.Interval, _ = time.ParseDuration(v)
			case "ttl":
				p.TTL, _ = strconv.Atoi(v)
			case "ver":
				p.Version, _ = strconv.Atoi(v)
			case "pass":
				p.AuthData = [8]byte{}
				copy(p.AuthData[:], v)
			case "auth":
				t, _ := strconv.Atoi(v)
				p.AuthType = uint8(t)
			case "addrs":
				p.Addrs = nil
				for _, s := range strings.Split(v, ",") {
					p.Addrs = append(p.Addrs, netip.MustParseAddr(s))
				}
			default:
				h.t.Fatalf("bad adv option %q", kv)
			}
		}
		return advertReceived{ifname: in.cfg.Interface, v6: in.cfg.is6(), pkt: p}
	case "link":
		return linkChanged{f[1], f[2] == "up"}
	case "script":
		return scriptRan{name: f[1], script: h.c.scripts[f[1]].cfg.Script, ok: f[2] == "ok"}
	case "claim":
		return vipClaimed{netip.MustParseAddr(f[1])}
	}
	h.t.Fatalf("bad input %q", s)
	return nil
}

// apply runs one input at now.
func (h *harness) apply(now time.Time, s string) []action {
	h.t.Helper()
	return h.c.handle(now, h.input(s))
}

func (h *harness) checkStates(want string) {
	h.t.Helper()
	for _, kv := range strings.Fields(want) {
		name, st, _ := strings.Cut(kv, "=")
		in := h.c.byName[name]
		if in == nil {
			h.t.Fatalf("no instance %q", name)
		}
		if in.state.String() != st {
			h.t.Errorf("instance %s is %s, want %s", name, in.state, st)
		}
	}
}

func strs(acts []action) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.String()
	}
	return out
}

func (s scenario) run(t *testing.T) {
	h := newHarness(t, s.cfg, s.locals)
	for i, st := range s.steps {
		got := strs(h.apply(t0.Add(st.at), st.input))
		want := st.want
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d (%v %q):\n got %s\nwant %s", i, st.at, st.input, fmtList(got), fmtList(want))
		}
		if st.states != "" {
			h.checkStates(st.states)
		}
	}
}

func fmtList(s []string) string {
	if len(s) == 0 {
		return "(nothing)"
	}
	return "\n  " + strings.Join(s, "\n  ")
}

const ms = time.Millisecond

// Reusable expectations.
var (
	startBackup  = []string{"a del-vips", "a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100"}
	becomeMaster = func(reason string) []string {
		return []string{"a advert prio=100", "a add-vips", "a announce x5", "a notify MASTER prio=100",
			"a transition BACKUP->MASTER (" + reason + ") prio=100"}
	}
	yield = []string{"a del-vips", "a notify BACKUP prio=100", "a transition MASTER->BACKUP (higher_priority) prio=100"}
)

func TestStateMachine(t *testing.T) {
	for _, s := range []scenario{{
		// RFC 5798 6.4.1 and 6.4.2: Master_Down_Interval = 3 * 1s + (256-100)*100cs/256 = 3.6s.
		name: "backup takes over when the master is silent",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, "a=BACKUP"},
			{3599 * ms, "tick", nil, "a=BACKUP"},
			{3600 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
			{4599 * ms, "tick", nil, ""},
			{4600 * ms, "tick", []string{"a advert prio=100"}, ""},
			{5600 * ms, "tick", []string{"a advert prio=100"}, ""},
		},
	}, {
		name: "adverts of a better master reset the Master_Down_Timer",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3000 * ms, "adv a 10.0.0.2 150", nil, ""},
			{6599 * ms, "tick", nil, "a=BACKUP"},
			{6600 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name:   "equal priority keeps the backup whatever the addresses",
		cfg:    cfgOf(baseInst("a", 100)),
		locals: map[string]string{"a": "10.0.0.9"},
		steps: []step{
			{0, "start", startBackup, ""},
			{3000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{6599 * ms, "tick", nil, "a=BACKUP"},
		},
	}, {
		// RFC 5798 6.4.2: priority 0 sets the Master_Down_Timer to Skew_Time (600ms).
		name: "priority 0 from the master: take over after Skew_Time",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{1000 * ms, "adv a 10.0.0.2 150", nil, ""},
			{2000 * ms, "adv a 10.0.0.2 0", nil, ""},
			{2599 * ms, "tick", nil, "a=BACKUP"},
			{2600 * ms, "tick", becomeMaster("priority_zero"), "a=MASTER"},
		},
	}, {
		// Master_Down_Interval for 150: 3s + 106*100/256 cs = 3.41s.
		name: "preempt: a lower-priority master is ignored until the timer runs out",
		cfg:  cfgOf(baseInst("a", 150)),
		steps: []step{
			{0, "start", []string{"a del-vips", "a notify BACKUP prio=150", "a transition INIT->BACKUP (startup) prio=150"}, ""},
			{1000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{2000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{3000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{3409 * ms, "tick", nil, "a=BACKUP"},
			{3410 * ms, "tick", []string{"a advert prio=150", "a add-vips", "a announce x5", "a notify MASTER prio=150",
				"a transition BACKUP->MASTER (preempt) prio=150"}, "a=MASTER"},
			// The lower master is still there: it is told at once and our VIPs re-announced.
			{3500 * ms, "adv a 10.0.0.2 100", []string{"a advert prio=150", "a announce x5"}, "a=MASTER"},
			// At most once a second.
			{3600 * ms, "adv a 10.0.0.2 100", []string{"a advert prio=150"}, ""},
		},
	}, {
		name: "nopreempt: a better backup leaves a live lower-priority master alone",
		cfg:  cfgOf(baseInst("a", 150, func(ic *InstanceConfig) { ic.NoPreempt = true })),
		steps: []step{
			{0, "start", []string{"a del-vips", "a notify BACKUP prio=150", "a transition INIT->BACKUP (startup) prio=150"}, ""},
			{1000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{2000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{3000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{4000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{7409 * ms, "tick", nil, "a=BACKUP"},
			// But it takes over when that master dies.
			{7410 * ms, "tick", []string{"a advert prio=150", "a add-vips", "a announce x5", "a notify MASTER prio=150",
				"a transition BACKUP->MASTER (master_down) prio=150"}, "a=MASTER"},
		},
	}, {
		// The first lower advert at 1s starts a 5s delay: adverts until
		// then keep the timer; from 6s on they are ignored: 5s + 3.41s.
		name: "preempt_delay",
		cfg:  cfgOf(baseInst("a", 150, func(ic *InstanceConfig) { ic.PreemptDelay = 5 * time.Second })),
		steps: []step{
			{0, "start", []string{"a del-vips", "a notify BACKUP prio=150", "a transition INIT->BACKUP (startup) prio=150"}, ""},
			{1000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{2000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{3000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{4000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{5000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{6000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{7000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{8000 * ms, "adv a 10.0.0.2 100", nil, ""},
			{8409 * ms, "tick", nil, "a=BACKUP"},
			{8410 * ms, "tick", []string{"a advert prio=150", "a add-vips", "a announce x5", "a notify MASTER prio=150",
				"a transition BACKUP->MASTER (preempt) prio=150"}, "a=MASTER"},
		},
	}, {
		name: "master yields to a higher priority (RFC 5798 6.4.3)",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{4000 * ms, "adv a 10.0.0.2 101", yield, "a=BACKUP"},
			// And is a normal backup again: 3.6s later it takes over.
			{7599 * ms, "tick", nil, "a=BACKUP"},
			{7600 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name:   "equal priority: the higher primary address wins",
		cfg:    cfgOf(baseInst("a", 100)),
		locals: map[string]string{"a": "10.0.0.5"},
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{3700 * ms, "adv a 10.0.0.2 100", []string{"a advert prio=100", "a announce x5"}, "a=MASTER"},
			{3800 * ms, "adv a 10.0.0.9 100", yield, "a=BACKUP"},
		},
	}, {
		name: "master answers priority 0 at once",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{3700 * ms, "adv a 10.0.0.2 0", []string{"a advert prio=100"}, "a=MASTER"},
			{4699 * ms, "tick", nil, ""}, // adver timer restarted at 3.7s
			{4700 * ms, "tick", []string{"a advert prio=100"}, ""},
		},
	}, {
		name: "address owner starts as master (RFC 5798 6.4.1)",
		cfg:  cfgOf(baseInst("a", 255)),
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x5", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, "a=MASTER"},
			{1000 * ms, "tick", []string{"a advert prio=255"}, ""},
		},
	}, {
		// RFC 5798 7.1 has the owner discard adverts; keepalived (whose
		// behaviour we keep) handles them as any master: a lower priority
		// is told at once, and a second owner is a configuration error:
		// it lowers its own priority to 254 (until a reload) and yields,
		// whatever the addresses (ours, 10.0.0.5, is the higher one).
		name:   "address owner hearing adverts: lower ones told, a second owner makes it yield at 254 (keepalived)",
		cfg:    cfgOf(baseInst("a", 255)),
		locals: map[string]string{"a": "10.0.0.5"},
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x5", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, "a=MASTER"},
			{500 * ms, "adv a 10.0.0.2 100", []string{"a advert prio=255", "a announce x5"}, "a=MASTER"},
			{600 * ms, "adv a 10.0.0.2 0", []string{"a advert prio=255"}, "a=MASTER"},
			{700 * ms, "adv a 10.0.0.2 255", []string{"a owner-conflict prio=254 from 10.0.0.2", "a del-vips",
				"a notify BACKUP prio=254", "a transition MASTER->BACKUP (higher_priority) prio=254"}, "a=BACKUP"},
			// A backup at 254: 3s + 2*100/256 cs (0) after the last advert.
			{1700 * ms, "adv a 10.0.0.2 255", nil, "a=BACKUP"},
			{4699 * ms, "tick", nil, "a=BACKUP"},
			{4700 * ms, "tick", []string{"a advert prio=254", "a add-vips", "a announce x5", "a notify MASTER prio=254",
				"a transition BACKUP->MASTER (master_down) prio=254"}, "a=MASTER"},
			// Still 254: the other owner wins again, no new conflict.
			{5000 * ms, "adv a 10.0.0.2 255", []string{"a del-vips", "a notify BACKUP prio=254",
				"a transition MASTER->BACKUP (higher_priority) prio=254"}, "a=BACKUP"},
			// A reload gives 255 back: the next advert says so.
			{5100 * ms, "reload", nil, "a=BACKUP"},
			{8000 * ms, "tick", []string{"a advert prio=255", "a add-vips", "a announce x5", "a notify MASTER prio=255",
				"a transition BACKUP->MASTER (master_down) prio=255"}, "a=MASTER"},
		},
	}, {
		name: "initial state MASTER takes over after one interval (keepalived 2.x)",
		cfg:  cfgOf(baseInst("a", 100, func(ic *InstanceConfig) { ic.InitialState = Master })),
		steps: []step{
			{0, "start", startBackup, ""},
			{999 * ms, "tick", nil, ""},
			{1000 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		// 3 * 200ms + (156*20/256=12cs) = 720ms after the advert.
		name: "v3 backup uses the master's advertisement interval",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{1000 * ms, "adv a 10.0.0.2 150 int=200ms", nil, ""},
			{1719 * ms, "tick", nil, "a=BACKUP"},
			{1720 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "shutdown: the master resigns with priority 0",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{4000 * ms, "shutdown", []string{"a advert prio=0", "a del-vips", "a notify STOP prio=100",
				"a transition MASTER->INIT (shutdown) prio=100"}, "a=INIT"},
			{9000 * ms, "tick", nil, ""},
		},
	}, {
		name: "a backup shutting down sends nothing",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{1000 * ms, "shutdown", []string{"a notify STOP prio=100", "a transition BACKUP->INIT (shutdown) prio=100"}, "a=INIT"},
		},
	}, {
		name: "track scripts: wait for results, weights, fault",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) {
				ic.TrackScripts = []TrackScript{{Name: "alive"}, {Name: "load"}}
			})},
			Scripts: []ScriptConfig{{Name: "alive", Script: "true"}, {Name: "load", Script: "true", Weight: -60}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, "a=INIT"},
			{10 * ms, "script alive ok", nil, "a=INIT"},
			{20 * ms, "script load ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100"}, "a=BACKUP"},
			{3620 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
			{4000 * ms, "script load fail", nil, "a=MASTER"},
			{4620 * ms, "tick", []string{"a advert prio=40"}, ""},
			{5000 * ms, "script alive fail", []string{"a advert prio=0", "a del-vips", "a notify FAULT prio=40",
				"a transition MASTER->FAULT (tracking) prio=40"}, "a=FAULT"},
			{5500 * ms, "adv a 10.0.0.2 0", nil, "a=FAULT"},
			{9000 * ms, "tick", nil, "a=FAULT"},
			{10000 * ms, "script alive ok", []string{"a notify BACKUP prio=40", "a transition FAULT->BACKUP (tracking) prio=40"}, "a=BACKUP"},
			{11000 * ms, "script load ok", nil, "a=BACKUP"},
		},
	}, {
		name: "track script fall and rise",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "s"}} })},
			Scripts:   []ScriptConfig{{Name: "s", Script: "true", Fall: 2, Rise: 3}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, ""},
			{1 * ms, "script s ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100"}, ""},
			{2 * ms, "script s fail", nil, "a=BACKUP"},
			{3 * ms, "script s ok", nil, "a=BACKUP"},
			{4 * ms, "script s fail", nil, "a=BACKUP"},
			{5 * ms, "script s fail", []string{"a notify FAULT prio=100", "a transition BACKUP->FAULT (tracking) prio=100"}, "a=FAULT"},
			{6 * ms, "script s ok", nil, "a=FAULT"},
			{7 * ms, "script s ok", nil, "a=FAULT"},
			{8 * ms, "script s ok", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
		},
	}, {
		name: "script weight override and positive weight",
		cfg: Config{
			Instances: []InstanceConfig{baseInst("a", 100, func(ic *InstanceConfig) {
				w := 20
				ic.TrackScripts = []TrackScript{{Name: "s", Weight: &w}}
				ic.InitialState = Master
			})},
			Scripts: []ScriptConfig{{Name: "s", Script: "true"}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips"}, ""},
			{1 * ms, "script s ok", []string{"a notify BACKUP prio=120", "a transition INIT->BACKUP (startup) prio=120"}, ""},
			{1001 * ms, "tick", []string{"a advert prio=120", "a add-vips", "a announce x5", "a notify MASTER prio=120",
				"a transition BACKUP->MASTER (master_down) prio=120"}, ""},
			{1500 * ms, "script s fail", nil, ""},
			{2001 * ms, "tick", []string{"a advert prio=100"}, ""},
		},
	}, {
		name: "interfaces: own interface down is FAULT, tracked one weighs",
		cfg: cfgOf(baseInst("a", 100, func(ic *InstanceConfig) {
			ic.TrackInterfaces = []TrackInterface{{Name: "eth1", Weight: -30}, {Name: "eth2"}}
		})),
		steps: []step{
			{0, "start", startBackup, ""},
			{100 * ms, "link eth0 down", []string{"a notify FAULT prio=100", "a transition BACKUP->FAULT (tracking) prio=100"}, "a=FAULT"},
			{200 * ms, "link eth0 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
			{300 * ms, "link eth1 down", nil, "a=BACKUP"},
			// A priority change does not re-arm the running timer (as keepalived).
			{3799 * ms, "tick", nil, ""},
			{3800 * ms, "tick", []string{"a advert prio=70", "a add-vips", "a announce x5", "a notify MASTER prio=70",
				"a transition BACKUP->MASTER (master_down) prio=70"}, "a=MASTER"},
			{4000 * ms, "link eth2 down", []string{"a advert prio=0", "a del-vips", "a notify FAULT prio=70",
				"a transition MASTER->FAULT (tracking) prio=70"}, "a=FAULT"},
			{4100 * ms, "link eth1 up", nil, "a=FAULT"},
			{4200 * ms, "link eth2 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100"}, "a=BACKUP"},
		},
	}, {
		name: "sync group: master, backup and fault together",
		cfg: Config{
			Instances: []InstanceConfig{
				baseInst("a", 100),
				baseInst("b", 100, func(ic *InstanceConfig) {
					ic.Interface, ic.VRID = "eth1", 52
					ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
					ic.AdvertInterval = 2 * time.Second
				}),
			},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}}},
		},
		// The group's notify runs once all members are in the new state.
		steps: []step{
			{0, "start", append(slices.Clone(startBackup),
				"b del-vips", "b notify BACKUP prio=100", "b transition INIT->BACKUP (startup) prio=100",
				"group g notify BACKUP"), "a=BACKUP b=BACKUP"},
			{3600 * ms, "tick", append(becomeMaster("master_down"),
				"b advert prio=100", "b add-vips", "b announce x5", "b notify MASTER prio=100",
				"b transition BACKUP->MASTER (sync_group) prio=100", "group g notify MASTER"), "a=MASTER b=MASTER"},
			{4000 * ms, "adv a 10.0.0.2 200", append(slices.Clone(yield),
				"b del-vips", "b notify BACKUP prio=100", "b transition MASTER->BACKUP (sync_group) prio=100",
				"group g notify BACKUP"), "a=BACKUP b=BACKUP"},
			{4100 * ms, "link eth1 down", []string{"b notify FAULT prio=100", "b transition BACKUP->FAULT (tracking) prio=100",
				"a notify FAULT prio=100", "a transition BACKUP->FAULT (sync_group) prio=100", "group g notify FAULT"}, "a=FAULT b=FAULT"},
			{4200 * ms, "link eth1 up", []string{"a notify BACKUP prio=100", "a transition FAULT->BACKUP (tracking) prio=100",
				"b notify BACKUP prio=100", "b transition FAULT->BACKUP (tracking) prio=100", "group g notify BACKUP"}, "a=BACKUP b=BACKUP"},
			// notify_stop of the group after the instances' own (keepalived's notify_shutdown).
			{4300 * ms, "shutdown", []string{"a notify STOP prio=100", "a transition BACKUP->INIT (shutdown) prio=100",
				"b notify STOP prio=100", "b transition BACKUP->INIT (shutdown) prio=100", "group g notify STOP"}, "a=INIT b=INIT"},
		},
	}, {
		name: "sync group notify waits for every member, and a reload repeats nothing",
		cfg: Config{
			Instances: []InstanceConfig{
				baseInst("a", 100, func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "alive"}} }),
				baseInst("b", 100, func(ic *InstanceConfig) {
					ic.Interface, ic.VRID = "eth1", 52
					ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.1.0.100/24")}}
				}),
			},
			Scripts:    []ScriptConfig{{Name: "alive", Script: "true"}},
			SyncGroups: []SyncGroupConfig{{Name: "g", Instances: []string{"a", "b"}}},
		},
		steps: []step{
			{0, "start", []string{"a del-vips", "b del-vips", "b notify BACKUP prio=100",
				"b transition INIT->BACKUP (startup) prio=100"}, "a=INIT b=BACKUP"},
			{10 * ms, "script alive ok", []string{"a notify BACKUP prio=100", "a transition INIT->BACKUP (startup) prio=100",
				"group g notify BACKUP"}, "a=BACKUP b=BACKUP"},
			{20 * ms, "reload", nil, "a=BACKUP b=BACKUP"},
			{30 * ms, "script alive ok", nil, ""},
		},
	}, {
		// Issue 11: one forged advert with a higher priority and the
		// longest interval. RFC 5798 6.4.2 has the backup wait 3 x 40.95s
		// + 24.95s of skew (150.3s here); learning at most 3 intervals it
		// waits 3 x 3s + 1.82s (156*300/256 cs).
		name: "a forged advert with 40.95s: the backup learns at most 3 intervals",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{1000 * ms, "adv a 10.0.0.2 150", nil, ""},
			{2500 * ms, "adv a 10.0.0.66 200 int=40.95s", []string{"a interval-limit from 10.0.0.66: interval 40.95s, bounded to 3s (3 x 1s)"}, "a=BACKUP"},
			// The real master yielded to it: silence.
			{13319 * ms, "tick", nil, "a=BACKUP"},
			{13320 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "a forged advert with 40.95s makes the master yield; it takes over again after 3 bounded intervals",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{3600 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
			{4000 * ms, "adv a 10.0.0.66 255 int=40.95s", append([]string{"a interval-limit from 10.0.0.66: interval 40.95s, bounded to 3s (3 x 1s)"},
				yield...), "a=BACKUP"},
			{14819 * ms, "tick", nil, "a=BACKUP"},
			{14820 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "no limit (LearnedIntervalMaxFactor < 0): RFC 5798, 150.3s",
		cfg:  cfgOf(baseInst("a", 100, func(ic *InstanceConfig) { ic.LearnedIntervalMaxFactor = -1 })),
		steps: []step{
			{0, "start", startBackup, ""},
			{2500 * ms, "adv a 10.0.0.66 200 int=40.95s", nil, "a=BACKUP"},
			{150299 * ms, "tick", nil, "a=BACKUP"},
			{150300 * ms, "tick", becomeMaster("master_down"), "a=MASTER"},
		},
	}, {
		name: "dual master: each node masters one instance",
		cfg: cfgOf(baseInst("a", 200), baseInst("b", 100, func(ic *InstanceConfig) {
			ic.VRID = 52
			ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.0.0.101/24")}}
		})),
		steps: []step{
			{0, "start", []string{"a del-vips", "a notify BACKUP prio=200", "a transition INIT->BACKUP (startup) prio=200",
				"b del-vips", "b notify BACKUP prio=100", "b transition INIT->BACKUP (startup) prio=100"}, ""},
			{1000 * ms, "adv b 10.0.0.2 200", nil, ""},
			{2000 * ms, "adv b 10.0.0.2 200", nil, ""},
			// a: 3s + 56*100/256 = 21cs.
			{3210 * ms, "tick", []string{"a advert prio=200", "a add-vips", "a announce x5", "a notify MASTER prio=200",
				"a transition BACKUP->MASTER (master_down) prio=200"}, "a=MASTER b=BACKUP"},
			{4000 * ms, "adv b 10.0.0.2 200", nil, "a=MASTER b=BACKUP"},
		},
	}, {
		name: "GARP bursts: repeat, interval, delayed burst and refresh",
		cfg: cfgOf(baseInst("a", 255, func(ic *InstanceConfig) {
			ic.GARP = GARPConfig{MasterDelay: 5 * time.Second, MasterRepeat: 3, Interval: 100 * ms, MasterRefresh: 10 * time.Second, MasterRefreshRepeat: 2}
		})),
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x1", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, ""},
			{100 * ms, "tick", []string{"a announce x1"}, ""},
			{200 * ms, "tick", []string{"a announce x1"}, ""},
			{300 * ms, "tick", nil, ""},
			{5000 * ms, "tick", []string{"a advert prio=255", "a announce x1"}, ""},
			{5100 * ms, "tick", []string{"a announce x1"}, ""},
			{5200 * ms, "tick", []string{"a announce x1"}, ""},
			{9999 * ms, "tick", []string{"a advert prio=255"}, ""}, // adverts at 6..9s were skipped: late timer, no burst
			{10000 * ms, "tick", []string{"a announce x2"}, ""},
			{10999 * ms, "tick", []string{"a advert prio=255"}, ""},
			{20000 * ms, "tick", []string{"a advert prio=255", "a announce x2"}, ""},
		},
	}, {
		// Window: a third of the interval (333.3ms).
		name: "split brain: probe rounds, detection, heal and re-announce",
		cfg:  cfgOf(baseInst("a", 255, func(ic *InstanceConfig) { ic.SplitBrainProbeInterval = 2 * time.Second })),
		steps: []step{
			{0, "start", []string{"a advert prio=255", "a add-vips", "a announce x5", "a notify MASTER prio=255",
				"a transition INIT->MASTER (startup) prio=255"}, ""},
			{1000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{2000 * ms, "tick", []string{"a advert prio=255", "a probe"}, ""},
			{2334 * ms, "tick", nil, ""}, // no answer
			{3000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{4000 * ms, "tick", []string{"a advert prio=255", "a probe"}, ""},
			{4010 * ms, "claim 10.0.0.100", nil, ""},
			{4334 * ms, "tick", []string{"a split-brain detected", "a notify SPLIT_BRAIN prio=255", "a probe"}, ""},
			{4400 * ms, "claim 10.0.0.100", nil, ""},
			{4668 * ms, "tick", []string{"a probe"}, ""}, // still split: no new episode
			{5000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{5002 * ms, "tick", []string{"a split-brain healed", "a announce x5"}, ""},
			{6000 * ms, "tick", []string{"a advert prio=255"}, ""},
			{6668 * ms, "tick", []string{"a probe"}, ""}, // normal cadence again
			{7000 * ms, "tick", []string{"a advert prio=255"}, ""},
		},
	}, {
		name: "a claim starts a round; a master that yields has no split brain",
		cfg:  cfgOf(baseInst("a", 100)),
		steps: []step{
			{0, "start", startBackup, ""},
			{100 * ms, "claim 10.0.0.100", nil, ""}, // backups do not care
			{3600 * ms, "tick", becomeMaster("master_down"), ""},
			{3700 * ms, "claim 10.0.0.100", []string{"a probe"}, ""},
			{3701 * ms, "claim 10.0.0.99", nil, ""}, // not our VIP
			{3702 * ms, "adv a 10.0.0.2 200", yield, ""},
			{4100 * ms, "tick", nil, "a=BACKUP"},
		},
	}} {
		t.Run(s.name, s.run)
	}
}

func TestStateMachineReceiveChecks(t *testing.T) {
	cfg := cfgOf(baseInst("a", 100, func(ic *InstanceConfig) {
		ic.Version, ic.AuthPass = 2, "s3cr3t"
		ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	}))
	h := newHarness(t, cfg, nil)
	h.apply(t0, "start")
	for _, tc := range []struct{ input, reason string }{
		{"adv a 10.0.0.3 150 ttl=64", RxPeer}, // a routed TTL is accepted from a peer only
		{"adv a 10.0.0.2 150 ver=3", RxVersion},
		{"adv a 10.0.0.2 150 pass=wrong", RxAuth},
		{"adv a 10.0.0.2 150 auth=0", RxAuth},
		{"adv a 10.0.0.2 150 int=2s", RxInterval},
		{"adv a 10.0.0.2 150 addrs=10.0.0.100,10.0.0.101", RxAddrList},
		{"adv a 10.0.0.2 150 addrs=10.0.0.99", RxAddrList},
		{"adv a 10.0.0.3 150", RxPeer},
	} {
		before := h.c.byName["a"].status()
		if acts := h.apply(t0.Add(time.Second), tc.input); len(acts) != 0 {
			t.Errorf("%s: actions %v", tc.input, acts)
		}
		after := h.c.byName["a"].status()
		for _, r := range RxErrorReasons {
			want := before.RxErrors[r]
			if r == tc.reason {
				want++
			}
			if after.RxErrors[r] != want {
				t.Errorf("%s: rx errors %s = %d, want %d", tc.input, r, after.RxErrors[r], want)
			}
		}
		if after.AdvertsReceived != 0 {
			t.Errorf("%s: counted as received", tc.input)
		}
	}
	// The good one is accepted, and its own packet is ignored.
	h.apply(t0.Add(time.Second), "adv a 10.0.0.2 150")
	h.apply(t0.Add(time.Second), "adv a 10.0.0.1 150")
	if st := h.c.byName["a"].status(); st.AdvertsReceived != 1 || st.MasterAddr != netip.MustParseAddr("10.0.0.2") || st.MasterPriority != 150 {
		t.Fatalf("status after a good advert: %+v", st)
	}
	// Timer was reset by the good advert: 1s + 3.609375s (v2 skew 156/256 s).
	if next := h.c.next(); next != t0.Add(time.Second+3*time.Second+156*time.Second/256) {
		t.Fatalf("next timer at %v", next.Sub(t0))
	}
}

// TestStateMachineTTL: TTL / hop limit 255 is required in multicast mode
// (RFC 5798 7.1); with unicast peers, as keepalived 2.x, any TTL is
// accepted from a configured peer, which may be routed.
func TestStateMachineTTL(t *testing.T) {
	v6 := func(ic *InstanceConfig) { ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("fd00::100/64")}} }
	peer := func(p string) func(*InstanceConfig) {
		return func(ic *InstanceConfig) { ic.UnicastPeers = []netip.Addr{netip.MustParseAddr(p)} }
	}
	for _, tc := range []struct {
		name   string
		inst   InstanceConfig
		local  string
		input  string
		reason string // "" accepted
	}{
		{"multicast, 255", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150", ""},
		{"multicast, 254", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150 ttl=254", RxTTL},
		{"multicast, 64", baseInst("a", 100), "10.0.0.1", "adv a 10.0.0.2 150 ttl=64", RxTTL},
		{"multicast IPv6, hop limit 1", baseInst("a", 100, v6), "fe80::1", "adv a fe80::2 150 ttl=1", RxTTL},
		{"unicast peer, 255", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150", ""},
		{"unicast peer, 64", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150 ttl=64", ""},
		{"unicast peer, 1", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.2 150 ttl=1", ""},
		{"unicast, not a peer, 64", baseInst("a", 100, peer("10.0.0.2")), "10.0.0.1", "adv a 10.0.0.3 150 ttl=64", RxPeer},
		{"unicast IPv6 peer, hop limit 62", baseInst("a", 100, v6, peer("fd00::2")), "fd00::1", "adv a fd00::2 150 ttl=62", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfgOf(tc.inst), map[string]string{"a": tc.local})
			h.apply(t0, "start")
			h.apply(t0.Add(time.Second), tc.input)
			st := h.c.byName["a"].status()
			for _, r := range RxErrorReasons {
				want := uint64(0)
				if r == tc.reason {
					want = 1
				}
				if st.RxErrors[r] != want {
					t.Errorf("rx errors %s = %d, want %d", r, st.RxErrors[r], want)
				}
			}
			accepted := tc.reason == ""
			if got := st.AdvertsReceived == 1 && st.MasterPriority == 150; got != accepted {
				t.Fatalf("accepted %v, want %v: %+v", got, accepted, st)
			}
			// An accepted advert restarts the Master_Down_Timer (3.6s
			// from the advert at 1s); a rejected one leaves it.
			want := t0.Add(3600 * ms)
			if accepted {
				want = t0.Add(4600 * ms)
			}
			if next := h.c.next(); next != want {
				t.Fatalf("Master_Down_Timer at %v, want %v", next.Sub(t0), want.Sub(t0))
			}
		})
	}
}

func TestReconfigureKeepsState(t *testing.T) {
	vip2 := VIP{Prefix: netip.MustParsePrefix("10.0.0.101/24")}
	base := cfgOf(baseInst("a", 100), baseInst("b", 100, func(ic *InstanceConfig) {
		ic.VRID, ic.VIPs = 52, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.200/24")}}
	}))
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
		states string
	}{
		{"unchanged", func(*Config) {}, nil, "a=MASTER b=BACKUP"},
		{"VIP added to a master", func(c *Config) { c.Instances[0].VIPs = append(c.Instances[0].VIPs, vip2) },
			[]string{"a add-vips [10.0.0.101/24]", "a announce x5 [10.0.0.101/24]"}, "a=MASTER b=BACKUP"},
		{"VIP replaced on a master", func(c *Config) { c.Instances[0].VIPs = []VIP{vip2} },
			[]string{"a del-vips [10.0.0.100/24]", "a add-vips [10.0.0.101/24]", "a announce x5 [10.0.0.101/24]"}, "a=MASTER"},
		{"master removed", func(c *Config) { c.Instances = c.Instances[1:] },
			[]string{"a advert prio=0", "a del-vips", "a notify DELETED prio=100", "a transition MASTER->INIT (removed) prio=100"}, "b=BACKUP"},
		{"VRID changed: a new router", func(c *Config) { c.Instances[0].VRID = 60 },
			append([]string{"a advert prio=0", "a del-vips", "a notify DELETED prio=100", "a transition MASTER->INIT (removed) prio=100"},
				startBackup...), "a=BACKUP b=BACKUP"},
		{"priority lowered on the master", func(c *Config) { c.Instances[0].Priority = 50 }, nil, "a=MASTER"},
		{"instance added", func(c *Config) {
			c.Instances = append(c.Instances, baseInst("c", 100, func(ic *InstanceConfig) {
				ic.VRID, ic.VIPs = 53, []VIP{{Prefix: netip.MustParsePrefix("10.0.0.201/24")}}
			}))
		}, []string{"c del-vips", "c notify BACKUP prio=100", "c transition INIT->BACKUP (startup) prio=100"}, "a=MASTER b=BACKUP c=BACKUP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, base, nil)
			h.apply(t0, "start")
			h.apply(t0.Add(1000*ms), "adv b 10.0.0.2 200")
			h.apply(t0.Add(3600*ms), "tick")
			h.checkStates("a=MASTER b=BACKUP")
			next := h.c.next()
			cfg := cloneConfig(base)
			for i := range cfg.Instances {
				cfg.Instances[i].VIPs = slices.Clone(cfg.Instances[i].VIPs)
			}
			tc.change(&cfg)
			cfg, err := cfg.normalize()
			if err != nil {
				t.Fatal(err)
			}
			got := strs(h.c.handle(t0.Add(4000*ms), configChanged{cfg}))
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("reconfigure:\n got %s\nwant %s", fmtList(got), fmtList(tc.want))
			}
			h.checkStates(tc.states)
			if tc.name == "unchanged" && h.c.next() != next {
				t.Fatalf("timers moved: %v -> %v", next.Sub(t0), h.c.next().Sub(t0))
			}
			if tc.name == "priority lowered on the master" {
				if got := strs(h.c.handle(t0.Add(4600*ms), timersDue{})); got[0] != "a advert prio=50" {
					t.Fatalf("advert after the change: %v", got)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := baseInst("a", 100)
	for _, tc := range []struct {
		name string
		mod  func(*InstanceConfig)
		want string
	}{
		{"AH", func(ic *InstanceConfig) { ic.AuthType = AuthAH }, "AH authentication is not supported"},
		{"no VIP", func(ic *InstanceConfig) { ic.VIPs = nil }, "no virtual addresses"},
		{"vrid 0", func(ic *InstanceConfig) { ic.VRID = 0 }, "VRID"},
		{"v3 5ms", func(ic *InstanceConfig) { ic.AdvertInterval = 5 * ms }, "multiple of 10ms"},
		{"v3 15ms", func(ic *InstanceConfig) { ic.AdvertInterval = 15 * ms }, "multiple of 10ms"},
		{"v2 100ms", func(ic *InstanceConfig) { ic.Version = 2; ic.AdvertInterval = 100 * ms }, "whole seconds"},
		{"v2 ipv6", func(ic *InstanceConfig) {
			ic.Version = 2
			ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("2001:db8::1/64")}}
		}, "IPv4 only"},
		{"mixed families", func(ic *InstanceConfig) {
			ic.VIPs = append(ic.VIPs, VIP{Prefix: netip.MustParsePrefix("2001:db8::1/64")})
		}, "one family"},
		{"v3 auth", func(ic *InstanceConfig) { ic.AuthPass = "x" }, "needs VRRPv2"},
		{"unknown script", func(ic *InstanceConfig) { ic.TrackScripts = []TrackScript{{Name: "nope"}} }, "not defined"},
		{"peer family", func(ic *InstanceConfig) { ic.UnicastPeers = []netip.Addr{netip.MustParseAddr("fe80::1")} }, "unicast peer"},
		{"state", func(ic *InstanceConfig) { ic.InitialState = Fault }, "initial state"},
		{"interface", func(ic *InstanceConfig) { ic.Interface = "" }, "interface name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := good
			ic.VIPs = slices.Clone(good.VIPs)
			tc.mod(&ic)
			err := cfgOf(ic).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := cfgOf(good).Validate(); err != nil {
		t.Fatal(err)
	}
	// 10ms, the v3 minimum, is accepted.
	ic := good
	ic.AdvertInterval = 10 * ms
	if err := cfgOf(ic).Validate(); err != nil {
		t.Fatal(err)
	}
	dup := cfgOf(good, good)
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Fatalf("duplicate: %v", err)
	}
	_, err := NewNode(cfgOf(baseInst("a", 1, func(ic *InstanceConfig) { ic.AuthType = AuthAH })), Options{})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("NewNode with AH: %v", err)
	}
}

// TestStartupBackupTentative: the BACKUP entered at start-up is tentative
// until the instance's own Master_Down_Timer runs out, plus a margin
// (Event.TentativeUntil); no other transition is. The daemon used to take
// 3 intervals plus 1s, before the timer for a long VRRPv3 interval.
func TestStartupBackupTentative(t *testing.T) {
	for _, tc := range []struct {
		name string
		inst InstanceConfig
		want time.Duration // after the start
	}{
		{"Master_Down_Interval 3.6s", baseInst("a", 100), 3600*ms + time.Second},
		{"initial state MASTER: one interval and the smallest skew", baseInst("a", 100, func(ic *InstanceConfig) { ic.InitialState = Master }), 1000*ms + time.Second},
		{"10s: 30s and 6.09s of skew", baseInst("a", 100, func(ic *InstanceConfig) { ic.AdvertInterval = 10 * time.Second }), 36090*ms + time.Second},
		{"VRRPv2 priority 1: 3s and 255/256s of skew", baseInst("a", 1, func(ic *InstanceConfig) { ic.Version = 2 }), 3*time.Second + 255*time.Second/256 + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfgOf(tc.inst), nil)
			acts := h.apply(t0, "start")
			var got []time.Time
			for _, a := range acts {
				if a.kind == actTransition {
					got = append(got, a.until)
				}
			}
			if len(got) != 1 || !got[0].Equal(t0.Add(tc.want)) {
				t.Fatalf("tentative until %v, want %v after the start", got, tc.want)
			}
			for _, in := range []string{"link eth0 down", "link eth0 up"} {
				for _, a := range h.apply(t0.Add(time.Second), in) {
					if !a.until.IsZero() {
						t.Fatalf("%s: %s is tentative", in, a)
					}
				}
			}
		})
	}
}

// TestResignGrace: how long forwarding goes on after the stop: 3 intervals
// of the instances that resigned plus 200ms, at most 4s; nothing when no
// instance was master.
func TestResignGrace(t *testing.T) {
	b := func(iv time.Duration) func(*InstanceConfig) {
		return func(ic *InstanceConfig) {
			ic.VRID, ic.AdvertInterval = 52, iv
			ic.VIPs = []VIP{{Prefix: netip.MustParsePrefix("10.0.0.101/24")}}
		}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"owner at 1s, backup at 2s", cfgOf(baseInst("a", 255), baseInst("b", 100, b(2*time.Second))), 3200 * ms},
		{"owners at 1s and 100ms", cfgOf(baseInst("a", 255), baseInst("b", 255, b(100*ms))), 3200 * ms},
		{"owner at 2s: at most 4s", cfgOf(baseInst("a", 255, func(ic *InstanceConfig) { ic.AdvertInterval = 2 * time.Second })), 4 * time.Second},
		{"backup only", cfgOf(baseInst("a", 100)), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg, nil)
			h.apply(t0, "start")
			h.apply(t0.Add(time.Second), "shutdown")
			if h.c.resignGrace != tc.want {
				t.Fatalf("resign grace %v, want %v", h.c.resignGrace, tc.want)
			}
		})
	}
}
