package control

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// peerOf says who is at the other end of a control-socket connection, for
// the log of the changes it asks for: the socket is root's only (mode
// 0600), so it is root, and the process is named by its pid and command
// line (SO_PEERCRED, /proc/PID/cmdline), as far as they can be read.
func peerOf(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return "unknown"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "unknown"
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return "unknown"
	}
	who := fmt.Sprintf("uid %d pid %d", cred.Uid, cred.Pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cred.Pid)); err == nil && len(b) > 0 {
		cmd := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		if len(cmd) > 200 {
			cmd = cmd[:200] + "..."
		}
		who += " (" + cmd + ")"
	}
	return who
}
