package control

import (
	"strings"
	"testing"
)

const syncIPVS = "[sync]\nprotocol = \"ipvs\"\ninterface = \"eth0\"\n"

// [sync] is added or removed only by a restart: a reload that does either
// is refused, names why, and changes nothing.
func TestDaemonSyncReload(t *testing.T) {
	for _, tc := range []struct{ name, before, after string }{
		{"add", "", syncIPVS},
		{"remove", syncIPVS, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metrics := freeLoopbackPort(t)
			r := startDaemon(t, func(sock string) string { return daemonConfig(sock, metrics, 1, tc.before) }, nil)
			waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
			writeFile(t, r.path, daemonConfig(r.sock, metrics, 3, tc.after))
			_, err := Call(r.sock, Request{Command: "reload"})
			if err == nil || !strings.Contains(err.Error(), "[sync] needs a restart") {
				t.Fatalf("reload: %v, want [sync] needs a restart", err)
			}
			if got := r.dp.Changes(); len(got) != 0 {
				t.Errorf("a refused reload changed the dataplane: %v", got)
			}
			if (r.d.Config().Sync == nil) != (tc.before == "") {
				t.Errorf("running [sync] %+v after a refused reload", r.d.Config().Sync)
			}
		})
	}
}

// On a dataplane without connection sync (the fake, as IPVS), [sync] is
// off: the director is sync_ready (BGP's SyncReady, VRRP's preemption not
// held) and its status has no Sync section.
func TestDaemonSyncWithoutConnSyncer(t *testing.T) {
	metrics := freeLoopbackPort(t)
	r := startDaemon(t, func(sock string) string { return daemonConfig(sock, metrics, 1, syncIPVS) }, nil)
	waitChanges(t, r.dp, "create tcp/10.0.0.3:80", "create tcp/10.0.0.3:443")
	if !r.d.SyncReady(ServiceSpec{}) {
		t.Error("SyncReady false on a dataplane without connection sync")
	}
	resp, err := Call(r.sock, Request{Command: "status"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Sync != nil {
		t.Errorf("status has a Sync section: %+v", resp.Status.Sync)
	}
}
