package fabric

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Default roots, overridable per target so that tests run on a temporary
// directory.
const (
	DefaultConfigfsRoot = "/sys/kernel/config"
	DefaultSysfsRoot    = "/sys"
	DefaultDevRoot      = "/dev"
)

// fsys is the file-system surface the package drives configfs and sysfs
// through: osFS in production, a fake kernel in unit tests.
type fsys interface {
	Mkdir(path string) error
	Rmdir(path string) error
	// Symlink links newname to oldname. In configfs this is how a LUN
	// gets its backstore and an ACL its mapped LUN; the kernel resolves
	// oldname itself, so it must be absolute.
	Symlink(oldname, newname string) error
	Readlink(path string) (string, error)
	// Unlink removes a symlink.
	Unlink(path string) error
	// WriteFile writes an existing attribute in one write(2).
	WriteFile(path, data string) error
	ReadFile(path string) (string, error)
	ReadDir(path string) ([]string, error)
	Stat(path string) (fs.FileInfo, error)
}

type osFS struct{}

func (osFS) Mkdir(path string) error               { return os.Mkdir(path, 0o755) }
func (osFS) Rmdir(path string) error               { return syscall.Rmdir(path) }
func (osFS) Symlink(oldname, newname string) error { return os.Symlink(oldname, newname) }
func (osFS) Readlink(path string) (string, error)  { return os.Readlink(path) }
func (osFS) Unlink(path string) error              { return syscall.Unlink(path) }
func (osFS) Stat(path string) (fs.FileInfo, error) { return os.Stat(path) }

func (osFS) WriteFile(path, data string) error {
	// No O_CREATE: a missing attribute is an error, not a file to make.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(data)
	return errors.Join(werr, f.Close())
}

func (osFS) ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func (osFS) ReadDir(path string) ([]string, error) {
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

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
