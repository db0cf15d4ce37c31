// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// One file, one writer (docs/ownership.md). Every LUN holds an open file
// description lock (F_OFD_SETLK, the lease's mechanism) on byte
// ownerLockOffset of its backing file itself, for the LUN's lifetime: a
// plain export a write lock, a gateway a read lock. Write locks exclude
// everything and read locks only write locks, so two plain exports of one
// file, or a plain export and a gateway, refuse each other, while the
// gateways of a group share the file and settle who writes through the
// sidecar lease. On a file system whose POSIX locks are cluster-wide
// (GlusterFS) this holds across machines. The lock is on the backing
// file's inode, not on a sidecar, so that removing or renaming a sidecar
// cannot let a second exporter in; it dies with its holder, so a killed
// daemon never blocks a restart. The owner record beside the file
// (path+".owner") only names the holder in the refusal: the lock decides.
const (
	// ownerLockOffset is the byte of the backing file the ownership lock
	// covers: the byte the lease locks in its sidecar. Locks are advisory,
	// so the data there is untouched.
	ownerLockOffset = 0
	// OwnerRecordSuffix names the owner record: the backing file's path
	// plus this suffix.
	OwnerRecordSuffix = ".owner"
	// maxOwnerRecord bounds what is read of an owner record.
	maxOwnerRecord = 512
)

// ErrHeld means another exporter holds the backing file. The error that
// wraps it is a *HeldError, which says who.
var ErrHeld = errors.New("lease: backing file held by another exporter")

// Owner identifies the holder of a backing file, as its owner record
// says.
type Owner struct {
	PID  int
	Host string
	LUN  string
	// Gateway says the holder is a gateway of a group, which shares the
	// file with the other gateways of its group.
	Gateway bool
	Since   time.Time
	// Path is the backing file, in a LUN name's lock file only.
	Path string
}

// String describes the owner for a message: "pid 12 on host-a, LUN d0,
// since 2026-12-05T05:00:00Z".
func (o Owner) String() string {
	s := fmt.Sprintf("pid %d on %s, LUN %s", o.PID, o.Host, o.LUN)
	if !o.Since.IsZero() {
		s += ", since " + o.Since.UTC().Format(time.RFC3339)
	}
	return s
}

func (o Owner) role() string {
	if o.Gateway {
		return "gateway"
	}
	return "export"
}

// encode is the owner record: one line of key=value words, readable with
// cat.
func (o Owner) encode() []byte {
	b := fmt.Appendf(nil, "lunbridge-owner pid=%d host=%s lun=%s role=%s since=%s\n",
		o.PID, o.Host, o.LUN, o.role(), o.Since.UTC().Format(time.RFC3339))
	if o.Path != "" {
		// A line of its own: a path may hold spaces.
		b = fmt.Appendf(b, "path %s\n", o.Path)
	}
	return b
}

// parseOwner reads an owner record; ok is false for anything else.
func parseOwner(b []byte) (o Owner, ok bool) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	if p, ok := bytes.CutPrefix(rest, []byte("path ")); ok {
		p, _, _ = bytes.Cut(p, []byte("\n"))
		o.Path = string(p)
	}
	words := strings.Fields(string(line))
	if len(words) == 0 || words[0] != "lunbridge-owner" {
		return Owner{}, false
	}
	var role string
	for _, w := range words[1:] {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "pid":
			o.PID, _ = strconv.Atoi(v)
		case "host":
			o.Host = v
		case "lun":
			o.LUN = v
		case "role":
			role = v
		case "since":
			o.Since, _ = time.Parse(time.RFC3339, v)
		}
	}
	o.Gateway = role == "gateway"
	return o, o.PID > 0 && o.Host != "" && (role == "gateway" || role == "export")
}

// HeldError is the refusal of Claim: path is held by another exporter.
type HeldError struct {
	Path string
	// Record is the owner record's path; empty for a block device.
	Record string
	// Self says whether the refused claim was a gateway's.
	Self bool
	// Gateways says the holders are gateways (a read lock), not a plain
	// export (a write lock).
	Gateways bool
	// Owner is the holder according to its owner record; nil when the
	// record is missing, unreadable, or names a process of this host
	// that no longer exists.
	Owner *Owner
}

func (e *HeldError) Error() string {
	who := "holder unknown"
	if e.Record != "" {
		who += ": no current owner record in " + e.Record
	}
	if e.Owner != nil {
		who = e.Owner.String()
	}
	switch {
	case e.Self && !e.Gateways:
		return fmt.Sprintf("%s is exported by a plain (non-gateway) lunbridge (%s); gateways cannot share it with one: stop that export first", e.Path, who)
	case e.Gateways:
		return fmt.Sprintf("%s is shared by the gateways of a group (%s); a plain export cannot join them: stop them, or export the file as one more gateway (--alua-group)", e.Path, who)
	}
	return fmt.Sprintf("%s is already exported by another lunbridge (%s); one file has one writer: stop that export first", e.Path, who)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Hold is a LUN's claim on its backing file: the ownership lock on an
// open file description of its own. Close releases it.
type Hold struct {
	f      *os.File
	path   string
	rec    string // the owner record's path
	self   Owner
	shared bool
	// RecordErr is why the owner record could not be written, if it
	// could not (a read-only directory): the lock holds all the same.
	RecordErr error
}

// Claim takes the ownership lock of the file f is open on, without
// waiting, and writes the owner record self (Since is set here). A
// gateway (self.Gateway) takes the shared lock; anything else the
// exclusive one, except where the file cannot be opened for writing at
// all (a read-only mount): a write lock needs a writable descriptor, so
// there the claim is shared and excludes writers only. A conflict is a
// *HeldError (errors.Is ErrHeld); any other lock failure (a file system
// without POSIX locks) is an error too, as ownership could not be
// proven.
func Claim(f *os.File, self Owner) (*Hold, error) {
	path := f.Name()
	lf, shared, err := openLockFile(f)
	if err != nil {
		return nil, err
	}
	// The record lies beside the file itself, not beside a symlink to
	// it: exporters that name one file by two paths find one record.
	rec := path + OwnerRecordSuffix
	if real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil && strings.HasPrefix(real, "/") && !strings.HasSuffix(real, " (deleted)") {
		rec = real + OwnerRecordSuffix
	}
	if st, err := lf.Stat(); err != nil || !st.Mode().IsRegular() {
		rec = "" // a block device: no record beside it in /dev
	}
	shared = shared || self.Gateway
	typ := int16(unix.F_WRLCK)
	if shared {
		typ = unix.F_RDLCK
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: ownerLockOffset, Len: 1}
	err = ofdLock(lf, unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		herr := &HeldError{Path: path, Record: rec, Self: self.Gateway}
		// Which kind of lock is in the way: F_OFD_GETLK reports the
		// first conflicting lock (a write lock asks about both kinds).
		probe := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: ownerLockOffset, Len: 1}
		if unix.FcntlFlock(lf.Fd(), unix.F_OFD_GETLK, &probe) == nil {
			herr.Gateways = probe.Type == unix.F_RDLCK
		}
		if o, ok := readOwner(rec); rec != "" && ok && o.Gateway == herr.Gateways && alive(o) {
			herr.Owner = &o
		}
		lf.Close()
		return nil, herr
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("lease: lock %s: %w (lunbridge needs POSIX locks on the backing file's file system to keep a second exporter out)", path, err)
	}
	self.Since = time.Now().Truncate(time.Second)
	h := &Hold{f: lf, path: path, rec: rec, self: self, shared: shared}
	if rec != "" {
		h.RecordErr = writeOwner(rec, self.encode())
	} else {
		h.RecordErr = fmt.Errorf("lease: no owner record for %s: not a regular file", path)
	}
	return h, nil
}

// Close removes the owner record of an exclusive claim (while the lock
// still keeps everyone else from writing one) and releases the lock.
// Gateways leave theirs: the other gateways of the group may still run.
func (h *Hold) Close() error {
	if h == nil || h.f == nil {
		return nil
	}
	if !h.shared && h.rec != "" {
		if b, err := os.ReadFile(h.rec); err == nil && bytes.Equal(b, h.self.encode()) {
			os.Remove(h.rec)
		}
	}
	err := h.f.Close()
	h.f = nil
	if err != nil {
		return fmt.Errorf("lease: release %s: %w", h.path, err)
	}
	return nil
}

// openLockFile opens the file f is open on again, by descriptor, for the
// lock's own open file description: read-write where it can, so that a
// write lock is possible; read-only (shared) on a read-only mount.
func openLockFile(f *os.File) (*os.File, bool, error) {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	shared := false
	lf, err := os.OpenFile(proc, os.O_RDWR|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		shared = true
		lf, err = os.OpenFile(proc, os.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, false, fmt.Errorf("lease: open %s for its ownership lock: %w", f.Name(), err)
	}
	a, errA := f.Stat()
	b, errB := lf.Stat()
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		lf.Close()
		return nil, false, fmt.Errorf("lease: open %s for its ownership lock: not the same file (%w)", f.Name(), errors.Join(errA, errB))
	}
	return lf, shared, nil
}

// readOwner reads an owner record; ok is false when there is none.
func readOwner(path string) (Owner, bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return Owner{}, false
	}
	defer f.Close()
	b := make([]byte, maxOwnerRecord)
	n, _ := f.ReadAt(b, 0)
	return parseOwner(b[:n])
}

// writeOwner replaces the owner record. It refuses to follow a symlink or
// write through a second hard link (a root daemon must not be tricked
// into overwriting another file).
func writeOwner(path string, rec []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("lease: owner record: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); !st.Mode().IsRegular() || (ok && sys.Nlink != 1) {
			err = fmt.Errorf("%s is not a plain file with one link", path)
		}
	}
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt(rec, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lease: owner record: %w", err)
	}
	return nil
}

// alive reports whether an owner record can still be current: a record of
// this host naming a process that no longer exists is stale (the lock is
// held by someone who did not write one).
func alive(o Owner) bool {
	if h, err := os.Hostname(); err != nil || h != o.Host {
		return true // another host's processes cannot be checked
	}
	return !errors.Is(unix.Kill(o.PID, 0), unix.ESRCH)
}

// NameHeldError is the refusal of ClaimName: another daemon on this
// machine serves a LUN of that name.
type NameHeldError struct {
	Name string
	// Owner is the holder according to its lock file; nil if unknown.
	Owner *Owner
}

func (e *NameHeldError) Error() string {
	who := "holder unknown"
	if o := e.Owner; o != nil {
		who = fmt.Sprintf("pid %d", o.PID)
		if o.Path != "" {
			who += ", file " + o.Path
		}
	}
	return fmt.Sprintf("LUN name %s is in use by another lunbridge on this machine (%s); choose another name (--name, or name in the config)", e.Name, who)
}

func (e *NameHeldError) Unwrap() error { return ErrHeld }

// ClaimName reserves a LUN name on this machine for the LUN's lifetime:
// an OFD write lock on dir/NAME.lock, whose content names the holder and
// its backing file. The kernel has one namespace of TCMU backstores, so a
// second daemon using the name would otherwise adopt the first one's
// backstore and only fail at its UIO device. Taken before anything in
// configfs is touched; released by Close, or by the holder's death.
func ClaimName(dir, name, path string) (*Hold, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lease: LUN name lock directory: %w", err)
	}
	lockPath := nameLockPath(dir, name)
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lease: LUN name lock: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	err = ofdLock(f, unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		herr := &NameHeldError{Name: name}
		b := make([]byte, maxOwnerRecord)
		n, _ := f.ReadAt(b, 0)
		if o, ok := parseOwner(b[:n]); ok {
			herr.Owner = &o
		}
		f.Close()
		return nil, herr
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lease: LUN name lock %s: %w", lockPath, err)
	}
	host, _ := os.Hostname()
	self := Owner{PID: os.Getpid(), Host: host, LUN: name, Path: path, Since: time.Now().Truncate(time.Second)}
	if err := f.Truncate(0); err == nil {
		f.WriteAt(self.encode(), 0)
	}
	// shared: Close leaves the file (removing it would let a newcomer
	// lock a new inode while a waiter still holds the old one).
	return &Hold{f: f, path: lockPath, self: self, shared: true}, nil
}

// NameHeld reports whether a LUN name lock of ClaimName is held on this
// machine (by this process or another), without taking it: F_OFD_GETLK
// on dir/NAME.lock. A missing lock file means nobody holds it.
func NameHeld(dir, name string) (bool, error) {
	f, err := os.OpenFile(nameLockPath(dir, name), os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease: LUN name lock: %w", err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 1}
	if err := ofdLock(f, unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("lease: LUN name lock %s: %w", f.Name(), err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// nameLockPath is the lock file of LUN name name in dir.
func nameLockPath(dir, name string) string { return filepath.Join(dir, name+".lock") }

// ofdLock is fcntl(f, cmd, lk) for an OFD lock command, retried on EINTR.
func ofdLock(f *os.File, cmd int, lk *unix.Flock_t) error {
	for {
		err := unix.FcntlFlock(f.Fd(), cmd, lk)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
