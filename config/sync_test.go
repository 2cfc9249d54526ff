package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSyncKey: the key file must be root's (or the daemon's user's) and
// unreadable by others; a trailing new line is not part of the key.
func TestSyncKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "0123456789abcdef0123\n", 0o600)
	if k, err := SyncKey(good); err != nil || string(k) != "0123456789abcdef0123" {
		t.Errorf("good key: %q, %v", k, err)
	}
	for _, c := range []struct {
		path, want string
	}{
		{write("open", "0123456789abcdef0123", 0o644), "mode 0644 lets others read it"},
		{write("short", "short\n", 0o600), "5 bytes, at least 16"},
		{write("long", strings.Repeat("k", 5000), 0o600), "longer than 4 KiB"},
		{dir, "not a regular file"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		if _, err := SyncKey(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
}
