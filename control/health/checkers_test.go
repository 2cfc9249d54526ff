package health

import (
	"testing"

	"github.com/xlb-dev/xlb/control/health/checktype"
)

// Every type of checktype.Table has a checker, and nothing else does.
func TestCheckersCoverTable(t *testing.T) {
	for _, s := range checktype.Table {
		if checkers[s.Type] == nil {
			t.Errorf("check type %q of checktype.Table has no constructor in checkers", s.Type)
		}
	}
	for typ := range checkers {
		if _, ok := typ.Spec(); !ok {
			t.Errorf("checkers builds %q, which checktype.Table does not declare", typ)
		}
	}
}
