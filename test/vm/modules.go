package vm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// module is a kernel module to ship: its path under lib/modules/<release>
// as shipped (always an uncompressed .ko), its contents, and what its
// .modinfo says.
type module struct {
	name    string
	rel     string
	data    []byte
	deps    []string // module names
	aliases []string
	// softPre and softPost are the softdep names (module names or
	// aliases) to load before and after this module.
	softPre, softPost []string
}

// moduleSet reads a kernel's modules directory.
type moduleSet struct {
	dir     string
	paths   map[string]string   // module name -> path relative to dir
	depFile map[string][]string // from modules.dep when the package has one
	builtin map[string]bool
	aliases map[string][]string // alias -> module names, built on first need
}

// modName is the name modprobe uses for a module file: the base name
// without .ko and compression suffixes, dashes as underscores.
func modName(path string) string {
	b := filepath.Base(path)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

func readModuleSet(dir string) (*moduleSet, error) {
	ms := &moduleSet{dir: dir, paths: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			rel, _ := filepath.Rel(dir, p)
			ms.paths[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list modules: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			ms.builtin[modName(line)] = true
		}
	}
	// Debian's package ships no modules.dep (its postinst runs depmod); use
	// one when present, else each module's .modinfo, as depmod does.
	if b, err := os.ReadFile(filepath.Join(dir, "modules.dep")); err == nil {
		ms.depFile = map[string][]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			mod, deps, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			var names []string
			for _, d := range strings.Fields(deps) {
				names = append(names, modName(d))
			}
			ms.depFile[modName(mod)] = names
		}
	}
	return ms, nil
}

// available returns names without the optional modules (a name ending in
// "?") the kernel has neither as a module nor built in, and without the
// "?" of the others.
func (ms *moduleSet) available(names []string) []string {
	var out []string
	for _, m := range names {
		if name, optional := strings.CutSuffix(m, "?"); optional {
			n := strings.ReplaceAll(name, "-", "_")
			if _, ok := ms.paths[n]; !ok && !ms.builtin[n] {
				continue
			}
			m = name
		}
		out = append(out, m)
	}
	return out
}

// resolve returns the named modules and everything they depend on, each
// after its dependencies. Built-in modules are left out; unknown ones are
// an error.
func (ms *moduleSet) resolve(names []string) ([]*module, error) {
	var out []*module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		if ms.builtin[name] {
			state[name] = 2
			return nil
		}
		rel, ok := ms.paths[name]
		if !ok {
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is not in %s", name, from, ms.dir)
			}
			return fmt.Errorf("module %s is neither built in nor in %s", name, ms.dir)
		}
		state[name] = 1
		m, err := ms.load(name, rel)
		if err != nil {
			return err
		}
		if deps, ok := ms.depFile[name]; ok {
			m.deps = deps
		}
		// A pre softdep (libcrc32c's "pre: crc32c") is loaded first: ship
		// it and make it a dependency, since busybox's modprobe ignores
		// softdeps. Post softdeps are shipped and loaded on demand.
		for _, soft := range m.softPre {
			d, err := ms.byNameOrAlias(soft)
			if err != nil {
				return fmt.Errorf("module %s: softdep %s: %w", name, soft, err)
			}
			if d != "" {
				m.deps = append(m.deps, d)
			}
		}
		for _, d := range m.deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, m)
		for _, soft := range m.softPost {
			d, err := ms.byNameOrAlias(soft)
			if err != nil {
				return fmt.Errorf("module %s: softdep %s: %w", name, soft, err)
			}
			if d != "" {
				if err := visit(d, name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// load reads a module, decompressing it, and parses its .modinfo.
func (ms *moduleSet) load(name, rel string) (*module, error) {
	p := filepath.Join(ms.dir, rel)
	var data []byte
	var err error
	switch {
	case strings.HasSuffix(rel, ".ko"):
		data, err = os.ReadFile(p)
	case strings.HasSuffix(rel, ".ko.xz"):
		data, err = exec.Command("xz", "-dc", p).Output()
	case strings.HasSuffix(rel, ".ko.zst"):
		data, err = exec.Command("zstd", "-dcq", p).Output()
	case strings.HasSuffix(rel, ".ko.gz"):
		data, err = exec.Command("gzip", "-dc", p).Output()
	default:
		return nil, fmt.Errorf("module %s: unknown file type %s", name, rel)
	}
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", rel, err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", rel, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo", rel)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", rel, err)
	}
	m := &module{name: name, rel: rel[:strings.Index(rel, ".ko")+3], data: data}
	for _, kv := range bytes.Split(info, []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					m.deps = append(m.deps, d)
				}
			}
		case "alias":
			m.aliases = append(m.aliases, v)
		case "softdep":
			// "pre: a b post: c"
			var list *[]string
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					list = &m.softPre
				case "post:":
					list = &m.softPost
				default:
					if list != nil {
						*list = append(*list, w)
					}
				}
			}
		}
	}
	return m, nil
}

// modulesDep renders modules.dep for the shipped modules: each module's
// dependencies, transitively, the first to load last (as depmod writes
// them, and modprobe reads them).
func modulesDep(mods []*module) []byte {
	byName := map[string]*module{}
	order := map[string]int{}
	for i, m := range mods {
		byName[m.name] = m
		order[m.name] = i
	}
	var buf bytes.Buffer
	for _, m := range mods {
		seen := map[string]bool{}
		var closure []*module
		var walk func(*module)
		walk = func(x *module) {
			for _, d := range x.deps {
				dm := byName[strings.ReplaceAll(d, "-", "_")]
				if dm == nil || seen[dm.name] {
					continue // built in
				}
				seen[dm.name] = true
				closure = append(closure, dm)
				walk(dm)
			}
		}
		walk(m)
		// mods is in load order; modules.dep lists the last to load first.
		slices.SortFunc(closure, func(a, b *module) int { return order[b.name] - order[a.name] })
		buf.WriteString(m.rel + ":")
		for _, d := range closure {
			buf.WriteString(" " + d.rel)
		}
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// modulesAlias renders modules.alias, so that the kernel's on-demand
// loads (rtnl-link-veth, net-pf-...) find shipped modules.
func modulesAlias(mods []*module) []byte {
	var buf bytes.Buffer
	for _, m := range mods {
		for _, a := range m.aliases {
			fmt.Fprintf(&buf, "alias %s %s\n", a, m.name)
		}
	}
	return buf.Bytes()
}

// byNameOrAlias returns the module a softdep names: a module of that name,
// else one with that alias (a built-in one gives ""). The alias index takes
// reading every module's .modinfo, so it is built only when needed.
func (ms *moduleSet) byNameOrAlias(name string) (string, error) {
	n := strings.ReplaceAll(name, "-", "_")
	if _, ok := ms.paths[n]; ok || ms.builtin[n] {
		return n, nil
	}
	if ms.aliases == nil {
		ms.aliases = map[string][]string{}
		if b, err := os.ReadFile(filepath.Join(ms.dir, "modules.alias")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 3 && f[0] == "alias" {
					ms.aliases[f[1]] = append(ms.aliases[f[1]], f[2])
				}
			}
		} else {
			var buf bytes.Buffer
			for mod, rel := range ms.paths {
				m, err := ms.load(mod, rel)
				if err != nil {
					return "", err
				}
				for _, a := range m.aliases {
					ms.aliases[a] = append(ms.aliases[a], mod)
					fmt.Fprintf(&buf, "alias %s %s\n", a, mod)
				}
			}
			// Keep the index with the cached kernel for the next runs; a
			// rename is atomic for concurrent readers.
			tmp := filepath.Join(ms.dir, fmt.Sprintf(".modules.alias.%d", os.Getpid()))
			if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err == nil {
				_ = os.Rename(tmp, filepath.Join(ms.dir, "modules.alias"))
			}
		}
	}
	if mods, ok := ms.aliases[name]; ok {
		return pickAlias(mods), nil
	}
	if ms.builtinAlias(name) {
		return "", nil
	}
	return "", fmt.Errorf("no module is named or aliased %s", name)
}

// pickAlias chooses among the modules that provide an alias: the generic
// implementation when there is one (crc32c_intel needs SSE 4.2, which
// qemu's default CPU lacks; crc32c_generic runs anywhere), else the first
// by name, so that the choice does not depend on map order.
func pickAlias(mods []string) string {
	mods = slices.Sorted(slices.Values(mods))
	for _, m := range mods {
		if strings.HasSuffix(m, "_generic") {
			return m
		}
	}
	return mods[0]
}

// builtinAlias reports whether a built-in module has the alias, from
// modules.builtin.modinfo.
func (ms *moduleSet) builtinAlias(name string) bool {
	b, err := os.ReadFile(filepath.Join(ms.dir, "modules.builtin.modinfo"))
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		// "module.alias=name"
		if _, v, ok := strings.Cut(string(kv), ".alias="); ok && v == name {
			return true
		}
	}
	return false
}
