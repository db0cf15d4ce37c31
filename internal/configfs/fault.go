// SPDX-License-Identifier: Apache-2.0

package configfs

import (
	"fmt"
	"io/fs"
	"sync"
	"syscall"
)

// Faulty wraps an FS (normally a Fake) and fails one call, so that a test
// can fail each step of a multi-step constructor in turn and check that
// what the constructor acquired before the failing step is released.
//
// The calls that count are those that acquire or read: Mkdir, Symlink,
// WriteFile, ReadFile, ReadDir, Readlink and Stat. Call number FailAt
// (from 0) of those fails with EIO; a negative FailAt fails none. Rmdir
// and Unlink, the release steps, always go through: a cleanup that cannot
// release proves nothing about the code that should have called it.
//
// After, when set, is called after every counted call that succeeded
// (with the operation and path), so that a test can change the world
// between two steps: replace a UIO device file, say.
type Faulty struct {
	FS
	FailAt int
	After  func(op, path string)

	mu sync.Mutex
	// calls and failed are protected by mu.
	calls  int
	failed string
}

var _ FS = (*Faulty)(nil)

// Failed returns the call that was failed ("Mkdir /x/y"), or "" if the
// count never reached FailAt.
func (f *Faulty) Failed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Calls returns how many counted calls were made.
func (f *Faulty) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// fault counts a call and reports the error it must return, if any.
func (f *Faulty) fault(op, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.calls
	f.calls++
	if f.FailAt < 0 || n != f.FailAt {
		return nil
	}
	f.failed = op + " " + path
	return &fs.PathError{Op: op, Path: path, Err: fmt.Errorf("injected fault: %w", syscall.EIO)}
}

func (f *Faulty) after(op, path string) {
	if f.After != nil {
		f.After(op, path)
	}
}

// Mkdir fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) Mkdir(path string) error {
	if err := f.fault("mkdir", path); err != nil {
		return err
	}
	err := f.FS.Mkdir(path)
	if err == nil {
		f.after("mkdir", path)
	}
	return err
}

// Symlink fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) Symlink(oldname, newname string) error {
	if err := f.fault("symlink", newname); err != nil {
		return err
	}
	err := f.FS.Symlink(oldname, newname)
	if err == nil {
		f.after("symlink", newname)
	}
	return err
}

// WriteFile fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) WriteFile(path, data string) error {
	if err := f.fault("write", path); err != nil {
		return err
	}
	err := f.FS.WriteFile(path, data)
	if err == nil {
		f.after("write", path)
	}
	return err
}

// ReadFile fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) ReadFile(path string) (string, error) {
	if err := f.fault("read", path); err != nil {
		return "", err
	}
	v, err := f.FS.ReadFile(path)
	if err == nil {
		f.after("read", path)
	}
	return v, err
}

// ReadDir fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) ReadDir(path string) ([]string, error) {
	if err := f.fault("readdir", path); err != nil {
		return nil, err
	}
	v, err := f.FS.ReadDir(path)
	if err == nil {
		f.after("readdir", path)
	}
	return v, err
}

// Readlink fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) Readlink(path string) (string, error) {
	if err := f.fault("readlink", path); err != nil {
		return "", err
	}
	v, err := f.FS.Readlink(path)
	if err == nil {
		f.after("readlink", path)
	}
	return v, err
}

// Stat fails when its turn comes, else calls the wrapped FS.
func (f *Faulty) Stat(path string) (fs.FileInfo, error) {
	if err := f.fault("stat", path); err != nil {
		return nil, err
	}
	v, err := f.FS.Stat(path)
	if err == nil {
		f.after("stat", path)
	}
	return v, err
}
