package config

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// checkScripts checks the script user and group, and the program of every
// command written in the file as keepalived's check_script_secure
// (core/notify.c) does: found as the runner finds it (an absolute path, or
// in PATH) and with symbolic links followed, neither the file nor a
// directory on its path may be owned by a non-root user, or writable by a
// non-root group or by everyone (a directory with the sticky bit excepted),
// else a non-root user can change what xlb runs. With
// enable_script_security that is an error, and so is a program that cannot
// be checked (not found, not a regular file); without it an insecure
// program is a warning. Each command is reported at its own line.
func (d *decoder) checkScripts(c *Config, m *meta, env ScriptEnv) {
	g := c.Global
	if g.ScriptUser != "" {
		if err := env.LookupUser(g.ScriptUser); err != nil {
			m.global.errorf("script_user", "script_user: %v", err)
		}
	}
	if g.ScriptGroup != "" {
		if err := env.LookupGroup(g.ScriptGroup); err != nil {
			m.global.errorf("script_group", "script_group: %v", err)
		}
	}
	type finding struct {
		msg      string
		insecure bool
	}
	seen := map[string]finding{}
	for _, ca := range d.commands {
		argv := ca.cmd.Argv()
		if argv == nil {
			continue // reported when decoded
		}
		f, ok := seen[argv[0]]
		if !ok {
			f.msg, f.insecure = inspectProgram(env, argv[0])
			seen[argv[0]] = f
		}
		key := ca.p[len(ca.p)-1]
		switch {
		case f.msg == "":
		case g.EnableScriptSecurity:
			d.errorf(ca.p, "%s: %s: enable_script_security: %s", ca.label, key, f.msg)
		case f.insecure:
			d.warnAt(ca.p, ca.label, "%s: %s: a non-root user can change what xlb runs (enable_script_security refuses it)", key, f.msg)
		}
	}
}

// inspectProgram finds prog and checks it; it returns what is wrong ("" if
// nothing), and whether that is insecurity rather than a program that
// cannot be checked.
func inspectProgram(env ScriptEnv, prog string) (string, bool) {
	path := prog
	if !strings.Contains(prog, "/") {
		p, err := env.LookPath(prog)
		if err != nil {
			return err.Error(), false
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err.Error(), false
	}
	name := prog
	if abs != prog {
		name = fmt.Sprintf("%s (%s)", prog, abs)
	}
	// As keepalived, both the directory the program is named in and the
	// file it resolves to, each with links followed.
	dir, err := env.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return err.Error(), false
	}
	file, err := env.EvalSymlinks(abs)
	if err != nil {
		return err.Error(), false
	}
	for _, p := range []string{dir, file} {
		cur := "/"
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i := -1; i < len(parts); i++ {
			if i >= 0 {
				cur = filepath.Join(cur, parts[i])
			}
			if msg, insecure := inspectPath(env, cur, p == file && i == len(parts)-1); insecure {
				return name + " is not secure: " + msg, true
			} else if msg != "" {
				return msg, false
			}
		}
	}
	return "", false
}

// inspectPath checks one component of a program's path: a directory, or
// the program itself (file) (keepalived's check_security).
func inspectPath(env ScriptEnv, path string, file bool) (string, bool) {
	fi, err := env.Lstat(path)
	if err != nil {
		return err.Error(), false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode()
	what := "directory " + path
	switch {
	case !ok:
		return "cannot tell the owner of " + path, false
	case file && !mode.IsRegular():
		return path + " is not a regular file", false
	case !file && !mode.IsDir():
		return path + " is not a directory", false
	case file:
		what = "file " + path
	}
	// In a directory with the sticky bit, others cannot replace what they
	// do not own.
	unprotected := mode.IsRegular() || mode&fs.ModeSticky == 0
	switch {
	case st.Uid != 0:
		return fmt.Sprintf("%s is owned by uid %d (mode %v)", what, st.Uid, mode), true
	case unprotected && st.Gid != 0 && mode&0o020 != 0:
		return fmt.Sprintf("%s is writable by group %d (mode %v)", what, st.Gid, mode), true
	case unprotected && mode&0o002 != 0:
		return fmt.Sprintf("%s is writable by everyone (mode %v)", what, mode), true
	}
	return "", false
}
