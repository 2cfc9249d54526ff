package scale

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xlb-dev/xlb/test/nettest"
)

// Over a veth, the receiving end's processing runs in the sender's
// context: a director's TCP check runs the real server's side of the
// handshake inside its own connect(), and the real server's answer is
// processed in whatever context sent it. To tell the director's cost from
// the real server's, the check scenarios measure a second window with the
// receive side of the director's and the real server's veths in kernel
// threads of their own (GRO on gives a veth NAPI; threaded NAPI runs it in
// a kthread, napi/DEV-ID): the director's cost is then its daemon and its
// thread, the real server's its thread. The lab switch's ports facing them
// get threads too: a packet the director sends is otherwise bridged to the
// real server in the daemon's context (the port's NAPI runs in the
// softirq the send raises), work a real switch does.

// napiThreads are the pids of the threaded-NAPI kernel threads.
func napiThreads() []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.HasPrefix(string(b), "napi/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// threadNAPI moves dev's receive processing in ns, and that of its peer
// (the lab switch's port), into kernel threads and returns their pids. A
// veth hands a packet to its peer's NAPI only if the sending end has no
// TSO (veth_skb_is_eligible_for_gro): it is turned off on dev's peer.
func (bn *bench) threadNAPI(ns *nettest.NS, dev string) (devThreads, portThreads []int) {
	iflink := strings.TrimSpace(ns.MustRun(bn.b, "cat", "/sys/class/net/"+dev+"/iflink"))
	var port string
	for _, line := range strings.Split(bn.l.Switch.MustRun(bn.b, "ip", "-o", "link", "show"), "\n") {
		if idx, rest, ok := strings.Cut(line, ": "); ok && idx == iflink {
			port, _, _ = strings.Cut(rest, "@")
			port, _, _ = strings.Cut(port, ":")
		}
	}
	if port == "" {
		bn.b.Fatalf("%s in %s: no switch port with ifindex %s", dev, ns.Name, iflink)
	}
	bn.l.Switch.MustRun(bn.b, "ethtool", "-K", port, "tso", "off")
	nettest.GRO(bn.b, ns, dev)
	devThreads = bn.threaded(ns, dev)
	portThreads = bn.threaded(bn.l.Switch, port) // GRO and an XDP program on already: lab.New
	return devThreads, portThreads
}

// threaded turns threaded NAPI on for dev in ns and returns the threads
// that appeared.
func (bn *bench) threaded(ns *nettest.NS, dev string) []int {
	before := napiThreads()
	ns.MustRun(bn.b, "sh", "-c", fmt.Sprintf("echo 1 > /sys/class/net/%s/threaded", dev))
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var added []int
		for _, p := range napiThreads() {
			if !slices.Contains(before, p) {
				added = append(added, p)
			}
		}
		if len(added) > 0 {
			return added
		}
	}
	bn.b.Fatalf("%s in %s: no NAPI thread after threaded NAPI was turned on", dev, ns.Name)
	return nil
}

// taskCPU is the CPU time of tasks (user and system).
func taskCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		if u, s := procCPU(pid); u >= 0 {
			total += u + s
		}
	}
	return total
}

// checkCPUSplit measures the director's and the real server's shares of a
// core over d with their veths' receive side in threads, and the daemon's
// user mode share. With XLB_SCALE_PROFILES, the daemon's CPU profile of
// the window is saved as cpu-napi.
func (bn *bench) checkCPUSplit(s shape, x *daemon, d time.Duration) (daemon, user, dirThread, rsThread, swThreads float64) {
	if bn.napiDir == nil {
		var p1, p2 []int
		bn.napiDir, p1 = bn.threadNAPI(bn.d.NS, "eth1")
		bn.napiRS, p2 = bn.threadNAPI(bn.l.Reals[0].NS, "eth0")
		bn.napiSwitch = append(p1, p2...)
	}
	if bn.prof != "" {
		go bn.profile(s, "cpu-napi", fmt.Sprintf("profile?seconds=%d", int(d/time.Second)-5))
	}
	u0, s0 := x.cpu()
	d0, r0, w0 := taskCPU(bn.napiDir), taskCPU(bn.napiRS), taskCPU(bn.napiSwitch)
	t0 := time.Now()
	time.Sleep(d)
	u1, s1 := x.cpu()
	d1, r1, w1 := taskCPU(bn.napiDir), taskCPU(bn.napiRS), taskCPU(bn.napiSwitch)
	el := float64(time.Since(t0))
	return float64(u1-u0+s1-s0) / el, float64(u1-u0) / el, float64(d1-d0) / el, float64(r1-r0) / el, float64(w1-w0) / el
}
