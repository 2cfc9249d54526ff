package health

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// TestUpdateKeepsChecks: an Update keeps the check of every key it had,
// whether the key is where it was in the last list (no index by key is
// made) or has moved (from the first moved entry on, they are looked up
// by key); a key given twice is one check; a key no longer given is gone.
func TestUpdateKeepsChecks(t *testing.T) {
	spec := &Spec{Type: checktype.TCP, Interval: time.Hour, Timeout: time.Second, Fall: 1, Rise: 1}
	other := *spec
	other.ConnectIP = netip.MustParseAddr("10.201.1.1") // another probe: the check is made anew
	m := NewManager(Options{})
	checks := map[string]*check{} // the check each key had after the last update
	for _, step := range []struct {
		name  string
		list  string // keys; a key with a ' has the other Spec
		fresh string // the keys whose checks are new
	}{
		{"first", "a b c d", "a b c d"},
		{"the same list", "a b c d", ""},
		{"one inserted, the last removed", "a b x c", "x"},
		{"reordered", "c a x b", ""},
		{"a key twice", "a a b", ""},
		{"the same list with the key twice", "a a b", ""},
		{"the twice given key once", "a b", ""},
		{"a key twice with two Specs: the first entry's", "a a' b", ""},
		{"a new key twice", "a w w b", "w"},
		{"a new Spec where it was", "a b'", "b"},
		{"back to the first Spec, and two new", "y a b z", "y b z"},
	} {
		var list []Check
		keys := strings.Fields(step.list)
		for i, k := range keys {
			s := spec
			if strings.HasSuffix(k, "'") {
				k, s = strings.TrimSuffix(k, "'"), &other
				keys[i] = k
			}
			target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 201, 0, k[0]}), 8080)
			list = append(list, Check{Key: k, Spec: s, Target: target})
		}
		if err := m.UpdateChecks(list); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		m.mu.Lock()
		got, n := m.checks, m.n
		m.mu.Unlock()
		if len(got) != len(keys) {
			t.Fatalf("%s: %d checks in the list, want %d", step.name, len(got), len(keys))
		}
		fresh := strings.Fields(step.fresh)
		now := map[string]*check{}
		for i, c := range got {
			k := keys[i]
			if c.key != k || c.gone {
				t.Errorf("%s: entry %d is the check of %q (gone %v), want %q's", step.name, i, c.key, c.gone, k)
			}
			if prev := now[k]; prev != nil && prev != c {
				t.Errorf("%s: %q given twice has two checks", step.name, k)
			}
			now[k] = c
			isNew := checks[k] == nil || checks[k] != c
			if want := contains(fresh, k); isNew != want {
				t.Errorf("%s: %q's check new: %v, want %v", step.name, k, isNew, want)
			}
		}
		if n != len(now) {
			t.Errorf("%s: the Manager counts %d checks, want %d", step.name, n, len(now))
		}
		for k, c := range checks {
			if now[k] != c && !c.gone {
				t.Errorf("%s: %q's old check is not gone", step.name, k)
			}
		}
		checks = now
		// The lookup by key agrees.
		states, errs := make([]State, len(keys)+1), make([]error, len(keys)+1)
		m.Lookup(append(append([]string(nil), keys...), "gone"), states, errs)
		for i, k := range keys {
			if states[i] != StateUnknown || errs[i] != nil {
				t.Errorf("%s: looked up %q: %v %v", step.name, k, states[i], errs[i])
			}
		}
		if st := m.States(); len(st) != len(now) {
			t.Errorf("%s: States has %d checks, want %d", step.name, len(st), len(now))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
