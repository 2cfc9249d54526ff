package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xlb-dev/xlb/dataplane/flock"
)

// lockSocket takes the lock of the control socket's path, a file next to
// it (PATH.lock, holding the owner's pid), before the daemon touches
// anything: a second `xlb run` of the same configuration is refused before
// it opens the dataplane. (The XDP dataplane locks its pin path likewise:
// a copy of the configuration with its own socket is refused there.) The
// kernel releases the lock when the process exits, crash included.
func lockSocket(path string) (*flock.Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := flock.File(path + ".lock")
	if errors.Is(err, flock.ErrHeld) {
		return nil, fmt.Errorf("control socket %s: another xlb is running, %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}
