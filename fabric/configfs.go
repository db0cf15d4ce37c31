// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// Default roots, overridable per target so that tests run on a temporary
// directory.
const (
	DefaultConfigfsRoot = "/sys/kernel/config"
	DefaultSysfsRoot    = "/sys"
	DefaultDevRoot      = "/dev"
)

// fsys is the file-system surface the package drives configfs and sysfs
// through: the one configfs layer, configfs.OS in production and
// configfs.Fake in unit tests.
type fsys = configfs.FS

// opKind is what undoing a recorded step does.
type opKind int

const (
	opRmdir  opKind = iota // the step was a mkdir
	opUnlink               // the step was a symlink
	opWrite                // the step set an attribute; undo writes value
)

// step is one configfs change, recorded so that teardown removes exactly
// what was created, in reverse order.
type step struct {
	kind  opKind
	path  string
	value string // for opWrite: the value to restore
}

// journal is an ordered record of changes.
type journal []step

// undo reverts the steps newest first, skipping what is already gone
// (fs.ErrNotExist), and returns every other error joined.
func (j journal) undo(fsys fsys) error {
	var errs []error
	for i := len(j) - 1; i >= 0; i-- {
		s := j[i]
		var err error
		switch s.kind {
		case opRmdir:
			err = fsys.Rmdir(s.path)
		case opUnlink:
			err = fsys.Unlink(s.path)
		case opWrite:
			err = fsys.WriteFile(s.path, s.value)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("fabric: undo %s: %w", s.path, err))
		}
	}
	return errors.Join(errs...)
}

// cfs wraps fsys with error context and a journal of what it changed.
type cfs struct {
	fsys fsys
	j    *journal
}

// mkdir creates dir and records it. found is true when dir already
// existed; it is then not recorded (it is not ours to remove).
func (c cfs) mkdir(dir string) (found bool, err error) {
	err = c.fsys.Mkdir(dir)
	if errors.Is(err, fs.ErrExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("fabric: mkdir %s: %w", dir, err)
	}
	*c.j = append(*c.j, step{kind: opRmdir, path: dir})
	return false, nil
}

func (c cfs) symlink(target, link string) error {
	if err := c.fsys.Symlink(target, link); err != nil {
		return fmt.Errorf("fabric: link %s -> %s: %w", link, target, err)
	}
	*c.j = append(*c.j, step{kind: opUnlink, path: link})
	return nil
}

// write sets an attribute. When restore is non-empty, undo writes it
// back (for attributes of a group that outlives the journal).
func (c cfs) write(path, value, restore string) error {
	if err := c.fsys.WriteFile(path, value); err != nil {
		return fmt.Errorf("fabric: write %q to %s: %w", value, path, err)
	}
	if restore != "" {
		*c.j = append(*c.j, step{kind: opWrite, path: path, value: restore})
	}
	return nil
}

// writeSecret is write for credentials: the value never appears in an
// error or log.
func (c cfs) writeSecret(path, value string) error {
	if err := c.fsys.WriteFile(path, value); err != nil {
		return fmt.Errorf("fabric: write <secret> to %s: %w", path, err)
	}
	return nil
}

func (c cfs) read(path string) (string, error) {
	s, err := c.fsys.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("fabric: read %s: %w", path, err)
	}
	return strings.TrimRight(s, "\n\x00"), nil
}

// linkTo returns the target of the first symlink in dir (a LUN directory
// holds at most one, to its backstore), or "" when there is none.
func linkTo(fsys fsys, dir string) (link, target string, err error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return "", "", err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if t, err := fsys.Readlink(p); err == nil {
			return p, t, nil
		}
	}
	return "", "", nil
}

// sameDir reports whether two configfs paths name the same directory,
// tolerating a trailing slash or a relative link target.
func sameDir(linkDir, target, want string) bool {
	if !filepath.IsAbs(target) {
		target = filepath.Join(linkDir, target)
	}
	return filepath.Clean(target) == filepath.Clean(want)
}
