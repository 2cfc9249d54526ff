package lab_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xlb-dev/xlb/test/lab"
)

// TestBuildTags: the Makefile builds xlb with lab.BuildTags, and with them
// nothing in the binary calls reflect's Method or MethodByName (the
// linker's dump marks such a function <ReflectMethod>). One such call,
// reachable from anywhere (golang.org/x/net/trace's templates, through
// gRPC, were), makes the linker keep every exported method of every type
// that reaches an interface: 8 MB more binary, 3 MiB more RSS at scale.
func TestBuildTags(t *testing.T) {
	root := filepath.Join("..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^BUILD_TAGS[ \t]*:?=[ \t]*(.*)$`).FindSubmatch(mk)
	if m == nil || strings.TrimSpace(string(m[1])) != lab.BuildTags {
		t.Fatalf("the Makefile's BUILD_TAGS (%q) is not lab.BuildTags, %q: keep them the same", m, lab.BuildTags)
	}
	cmd := exec.Command("go", "build", "-tags", lab.BuildTags, "-ldflags=-dumpdep", "-o", os.DevNull, "./cmd/xlb")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build -ldflags=-dumpdep: %v\n%.2000s", err, out)
	}
	if !strings.Contains(string(out), " -> ") {
		t.Fatalf("go build -ldflags=-dumpdep printed no dependencies:\n%.2000s", out)
	}
	var marked []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "<ReflectMethod>") {
			marked = append(marked, strings.TrimSpace(line))
		}
	}
	if len(marked) > 0 {
		t.Errorf("the linker keeps every exported method: %d dependencies marked <ReflectMethod>, of which %q", len(marked), marked[:min(5, len(marked))])
	}
}
