// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"fmt"
	"io"
	"path"
	"sort"
)

// cpioWriter writes the "newc" (SVR4, no CRC) cpio format that the kernel's
// initramfs unpacker reads (Documentation/driver-api/early-userspace/
// buffer-format.rst). It is written here rather than by running cpio(1) so the
// image is byte-for-byte reproducible: every mtime, uid and inode number is
// fixed.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true}}
}

const (
	cpioModeDir  = 0o040000 // S_IFDIR
	cpioModeFile = 0o100000 // S_IFREG
	cpioModeLink = 0o120000 // S_IFLNK
)

// header writes one entry: the 110-byte ASCII header, the NUL-terminated
// name padded to a multiple of 4, then the data padded to a multiple of 4.
func (c *cpioWriter) header(name string, mode uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4+len(data)+3)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	_, c.err = c.w.Write(buf)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// mkdirAll writes directory entries for dir and its missing parents.
func (c *cpioWriter) mkdirAll(dir string) {
	dir = path.Clean(dir)
	if c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.header(dir, cpioModeDir|0o755, nil)
}

// file writes a regular file (and its parent directories).
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.mkdirAll(path.Dir(name))
	c.header(name, cpioModeFile|perm, data)
}

// symlink writes a symbolic link name -> target.
func (c *cpioWriter) symlink(name, target string) {
	c.mkdirAll(path.Dir(name))
	c.header(name, cpioModeLink|0o777, []byte(target))
}

// close writes the trailer entry.
func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, nil)
	return c.err
}

// sortedKeys returns m's keys in order, so images do not depend on map order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
