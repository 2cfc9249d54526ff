package control

import "golang.org/x/sys/unix"

// mountBPFFS mounts a bpffs on path.
func mountBPFFS(path string) error {
	return unix.Mount("bpf", path, "bpf", 0, "mode=0700")
}
