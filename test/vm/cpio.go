package vm

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format the kernel unpacks
// as an initramfs. Parent directories are added as needed; a path added
// twice is an error.
type cpioWriter struct {
	w     *bufio.Writer
	ino   uint32
	names map[string]bool
	err   error
}

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioLink = 0o120000
)

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), names: map[string]bool{}}
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry checks and records name (absolute inside the archive) and adds
// its parents; it returns the archive name (without the leading slash).
func (c *cpioWriter) entry(name string) (string, bool) {
	if c.err != nil {
		return "", false
	}
	clean := path.Clean("/" + name)
	if clean == "/" {
		c.err = fmt.Errorf("cpio: bad name %q", name)
		return "", false
	}
	if c.names[clean] {
		c.err = fmt.Errorf("cpio: %s added twice", clean)
		return "", false
	}
	c.mkdirs(path.Dir(clean))
	c.names[clean] = true
	return strings.TrimPrefix(clean, "/"), c.err == nil
}

func (c *cpioWriter) mkdirs(dir string) {
	if dir == "/" || c.names[dir] {
		return
	}
	c.mkdirs(path.Dir(dir))
	c.names[dir] = true
	c.header(strings.TrimPrefix(dir, "/"), cpioDir|0o755, 0)
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string) {
	clean := path.Clean("/" + name)
	if !c.names[clean] {
		c.mkdirs(clean)
	}
}

// File adds a regular file with the given permission bits.
func (c *cpioWriter) File(name string, perm os.FileMode, data []byte) {
	n, ok := c.entry(name)
	if !ok {
		return
	}
	c.header(n, cpioFile|uint32(perm.Perm()), len(data))
	c.write(data)
	c.pad(len(data))
}

// CopyFile adds the host file src as name; perm zero keeps src's bits.
// Symbolic links are followed.
func (c *cpioWriter) CopyFile(name, src string, perm os.FileMode) {
	if c.err != nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		c.err = fmt.Errorf("cpio: %w", err)
		return
	}
	if perm == 0 {
		st, err := os.Stat(src)
		if err != nil {
			c.err = fmt.Errorf("cpio: %w", err)
			return
		}
		perm = st.Mode().Perm()
	}
	c.File(name, perm, b)
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	n, ok := c.entry(name)
	if !ok {
		return
	}
	c.header(n, cpioLink|0o777, len(target))
	c.write([]byte(target))
	c.pad(len(target))
}

// Has reports whether name was added.
func (c *cpioWriter) Has(name string) bool { return c.names[path.Clean("/"+name)] }

// Close writes the trailer and flushes; it returns the first error.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}
