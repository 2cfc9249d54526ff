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
	}} {
		t.Run(s.name, s.run)
	}
}
