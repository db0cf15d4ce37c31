// SPDX-License-Identifier: Apache-2.0

package configfs

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// DefaultRoot is where configfs is mounted.
const DefaultRoot = "/sys/kernel/config"

// FS is the file-system surface through which lunbridge drives configfs
// and sysfs.
type FS interface {
	Mkdir(path string) error
	Rmdir(path string) error
	// Symlink links newname to oldname. In configfs this is how a LUN
	// gets its backstore and an ACL its mapped LUN; the kernel resolves
	// oldname itself, so it must be absolute.
	Symlink(oldname, newname string) error
	Readlink(path string) (string, error)
	// Unlink removes a symlink.
	Unlink(path string) error
	// WriteFile writes an existing attribute in one write(2) call, as
	// configfs requires (each write is parsed on its own).
	WriteFile(path, data string) error
	ReadFile(path string) (string, error)
	// ReadDir returns the names in a directory, sorted.
	ReadDir(path string) ([]string, error)
	Stat(path string) (fs.FileInfo, error)
}

// Or returns fsys, or OS when fsys is nil.
func Or(fsys FS) FS {
	if fsys == nil {
		return OS{}
	}
	return fsys
}

// OS is FS over the real file system.
type OS struct{}

var _ FS = OS{}

// Mkdir makes a directory (a configfs object).
func (OS) Mkdir(path string) error { return os.Mkdir(path, 0o755) }

// Rmdir removes a directory, never a file: rmdir(2), not unlink(2).
func (OS) Rmdir(path string) error {
	if err := syscall.Rmdir(path); err != nil {
		return &fs.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}

// Symlink makes newname a link to oldname.
func (OS) Symlink(oldname, newname string) error { return os.Symlink(oldname, newname) }

// Readlink returns a link's target.
func (OS) Readlink(path string) (string, error) { return os.Readlink(path) }

// Unlink removes a symlink.
func (OS) Unlink(path string) error {
	if err := syscall.Unlink(path); err != nil {
		return &fs.PathError{Op: "unlink", Path: path, Err: err}
	}
	return nil
}

// WriteFile writes data to an existing attribute in one write(2).
func (OS) WriteFile(path, data string) error {
	// No O_CREATE: configfs attributes exist as soon as their group does,
	// and a missing one is an error (ENOENT), not a file to create.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(data)
	return errors.Join(werr, f.Close())
}

// ReadFile reads an attribute.
func (OS) ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// ReadDir returns the sorted names in a directory.
func (OS) ReadDir(path string) ([]string, error) {
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

// Stat follows links, as configfs paths are resolved by the kernel.
func (OS) Stat(path string) (fs.FileInfo, error) { return os.Stat(path) }
