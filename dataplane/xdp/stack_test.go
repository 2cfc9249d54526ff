package xdp

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// TestCallChainStack loads xlb_xdp, reads each function's stack depth from
// the verifier and the calls between them from the translated program, and
// checks the deepest chain against the 512-byte limit as older verifiers
// count it, each frame rounded up to 32 bytes (Debian 12's 6.1, which the
// VM tests run; recent kernels round JITed frames to 16 and accepted a
// chain 6.1 counted as 544 bytes).
func TestCallChainStack(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %+v", err)
	}
	defer coll.Close()
	prog := coll.Programs["xlb_xdp"]
	depths := verifierStackDepths(t, prog.VerifierLog)

	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := info.FuncInfos()
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) != len(depths) {
		t.Fatalf("%d functions in the program, %d stack depths in the verifier's log", len(funcs), len(depths))
	}
	insns, err := info.Instructions()
	if err != nil {
		t.Fatal(err)
	}
	// The function holding a raw instruction offset.
	funcAt := func(off asm.RawInstructionOffset) int {
		f := 0
		for i, fo := range funcs {
			if fo.Offset <= off {
				f = i
			}
		}
		return f
	}
	calls := make([]map[int]bool, len(funcs))
	for i := range calls {
		calls[i] = map[int]bool{}
	}
	iter := insns.Iterate()
	for iter.Next() {
		if !iter.Ins.IsFunctionCall() {
			continue
		}
		// The translated program keeps the relative offset of the callee
		// in the instruction's offset (its immediate is the callee's index).
		target := iter.Offset + asm.RawInstructionOffset(iter.Ins.Offset) + 1
		callee := slices.IndexFunc(funcs, func(fo btf.FuncOffset) bool { return fo.Offset == target })
		if callee <= 0 {
			t.Fatalf("call at instruction %d (%v) does not reach a function's start", iter.Offset, iter.Ins)
		}
		calls[funcAt(iter.Offset)][callee] = true
	}

	frame := func(f int) int { return (max(depths[f], 1) + 31) &^ 31 }
	var deepest []int
	var walk func(f, total int, chain []int)
	best := 0
	walk = func(f, total int, chain []int) {
		if slices.Contains(chain, f) {
			t.Fatalf("recursive call chain %v", append(chain, f)) // the verifier refuses those
		}
		total += frame(f)
		chain = append(chain, f)
		if total > best {
			best, deepest = total, append([]int(nil), chain...)
		}
		for g := range calls[f] {
			walk(g, total, chain)
		}
	}
	walk(0, 0, nil)
	var names []string
	for _, f := range deepest {
		names = append(names, fmt.Sprintf("%s(%d)", funcs[f].Func.Name, depths[f]))
	}
	t.Logf("deepest call chain: %s = %d bytes (frames rounded to 32)", strings.Join(names, " -> "), best)
	if best > 512 {
		t.Errorf("the deepest call chain needs %d bytes of stack as older verifiers count it, more than 512: %s",
			best, strings.Join(names, " -> "))
	}
}

// verifierStackDepths parses "stack depth 232+192+48" from a verifier log.
func verifierStackDepths(t *testing.T, log string) []int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^stack depth ([0-9+]+)$`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no stack depth in the verifier's log:\n%s", log)
	}
	var out []int
	for _, s := range strings.Split(m[1], "+") {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}
