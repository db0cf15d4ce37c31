// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Snapshots (docs/snapshots.md). A snapshot of a LUN is the file
// FILE@NAME beside its backing file FILE, holding the LUN's bytes as they
// were at one instant: every write acknowledged before it is in, none
// issued after it. The instant is fixed by the snapGate: every command
// that changes the file (WRITE, WRITE SAME, UNMAP, COMPARE AND WRITE,
// EXTENDED COPY into the LUN) passes through it, and the snapshot holds
// it shut while the writes in flight finish, the file is synced and
// either cloned (FICLONE: shared extents on XFS and Btrfs, done at once)
// or put under copy-before-write (a cowCopy, which a background copier
// then completes, paced). Reads are never held.
//
// A sidecar FILE@NAME.state (key value lines, replaced atomically) says
// where a snapshot stands; it reads "copying" until the copy is complete
// and synced, so a daemon killed during a copy finds it at the next start
// and reports the snapshot failed instead of serving half a copy.

// DefaultSnapshotRate is the default pace of a background copy in bytes
// per second: fast enough to copy 1 GiB in under 10 s, slow enough to
// leave a disk or a network file system most of its bandwidth for the
// LUN itself.
const DefaultSnapshotRate = 128 << 20

// Snapshot states and methods, as SnapshotInfo and the view show them.
const (
	SnapshotCopying = "copying"
	SnapshotReady   = "ready"
	SnapshotFailed  = "failed"

	MethodReflink = "reflink"
	MethodCopy    = "copy"
)

// snapSuffix names a snapshot's state sidecar.
const snapSuffix = ".state"

// SnapshotInfo describes one snapshot of a LUN (LUNInfo.Snapshots).
type SnapshotInfo struct {
	Name    string
	Path    string // FILE@NAME
	State   string // copying, ready or failed
	Reason  string // why failed; empty otherwise
	Method  string // reflink or copy
	Copied  int64  // bytes of the LUN in the snapshot so far
	Size    int64  // the LUN's size at the snapshot point
	Created time.Time
	// Pause is how long the LUN's writes were held to fix the point in
	// time.
	Pause time.Duration
}

// snapGate is the point every change of the backing file passes through
// (fileBackend's WriteAt, Unmap, WriteZeroes and CopyFrom): a snapshot
// holds mu exclusively to fix its point in time, and the copies in cows
// get the old bytes of a range before it changes.
type snapGate struct {
	mu   sync.RWMutex
	cows atomic.Pointer[[]*cowCopy]
}

// enter is called before [off, off+n) of the file changes; leave after.
func (g *snapGate) enter(off, n int64) {
	g.mu.RLock()
	if p := g.cows.Load(); p != nil {
		for _, c := range *p {
			c.before(off, n)
		}
	}
}

func (g *snapGate) leave() { g.mu.RUnlock() }

// setCow adds (on) or removes c from the active copies.
func (g *snapGate) setCow(c *cowCopy, on bool) {
	for {
		old := g.cows.Load()
		var l []*cowCopy
		if old != nil {
			l = slices.Clone(*old)
		}
		if on {
			l = append(l, c)
		} else {
			l = slices.DeleteFunc(l, func(x *cowCopy) bool { return x == c })
		}
		if g.cows.CompareAndSwap(old, &l) {
			return
		}
	}
}

// bufsLen is the byte count of a vectored transfer.
func bufsLen(bufs [][]byte) int64 {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}

// snapshot is one snapshot of a LUN.
type snapshot struct {
	name, path string
	created    time.Time
	size       int64
	method     string
	pause      time.Duration
	cow        *cowCopy // copy-before-write; nil for a reflink or a loaded one
	dst        *os.File // while copying
	cancel     context.CancelFunc
	done       chan struct{} // closed when the copier returned; nil if none

	mu     sync.Mutex
	state  string // protected by mu
	reason string // protected by mu
	copied int64  // protected by mu: when cow is nil
}

func (s *snapshot) info() SnapshotInfo {
	s.mu.Lock()
	st, reason, copied := s.state, s.reason, s.copied
	s.mu.Unlock()
	if s.cow != nil {
		copied = s.cow.copied.Load()
	}
	return SnapshotInfo{
		Name: s.name, Path: s.path, State: st, Reason: reason, Method: s.method,
		Copied: copied, Size: s.size, Created: s.created, Pause: s.pause,
	}
}

// set changes the state and persists it.
func (s *snapshot) set(state, reason string) error {
	s.mu.Lock()
	s.state, s.reason = state, reason
	if state == SnapshotReady {
		s.copied = s.size
	}
	s.mu.Unlock()
	return s.persist()
}

// persist writes the sidecar: a temporary file, synced, renamed over the
// old one, and the directory synced, so that a crash leaves the old or
// the new state, never half of one.
func (s *snapshot) persist() error {
	i := s.info()
	var b strings.Builder
	fmt.Fprintf(&b, "state %s\nmethod %s\ncreated %s\nsize %d\ncopied %d\npause_us %d\nreason %s\n",
		i.State, i.Method, i.Created.UTC().Format(time.RFC3339Nano), i.Size, i.Copied,
		i.Pause.Microseconds(), strings.ReplaceAll(i.Reason, "\n", " "))
	side := s.path + snapSuffix
	tmp := side + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", s.name, err)
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(tmp, side)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot %s: state file: %w", s.name, err)
	}
	if d, err := os.Open(filepath.Dir(side)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// snapSet is a LUN's snapshots.
type snapSet struct {
	// opMu serializes snapshot operations on the LUN (make, delete,
	// close). It is held across the wait for the gate, which a write
	// stuck in a hung file system can make long, so readers of the list
	// (Info, the view) take only mu.
	opMu sync.Mutex
	// mu guards m.
	mu sync.Mutex
	m  map[string]*snapshot // protected by mu
	wg sync.WaitGroup       // the copiers
}

func (ss *snapSet) get(name string) (*snapshot, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[name]
	return s, ok
}

func (ss *snapSet) put(s *snapshot) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*snapshot{}
	}
	ss.m[s.name] = s
}

func (ss *snapSet) all() []*snapshot {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	l := make([]*snapshot, 0, len(ss.m))
	for _, s := range ss.m {
		l = append(l, s)
	}
	return l
}

// ValidSnapshotName reports whether name can name a snapshot: a LUN name
// (ValidName: no '/', not starting with '.') without "..", since it
// becomes part of a file name beside the backing file.
func ValidSnapshotName(name string) error {
	if err := ValidName(name); err != nil {
		return fmt.Errorf("snapshot name: %w", err)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("snapshot name %q contains \"..\": %w", name, ErrInvalid)
	}
	return nil
}

// Snapshot makes the snapshot NAME of the LUN: the file FILE@NAME beside
// its backing file FILE. It returns once the point in time is fixed: at
// once done for a reflink; for a copy, a background copier paced at rate
// bytes per second (0: DefaultSnapshotRate) completes it, and until then
// every write to a range not yet copied copies the old bytes first.
func (l *LUN) Snapshot(name string, rate int64) (SnapshotInfo, error) {
	if err := ValidSnapshotName(name); err != nil {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: %w", l.name, err)
	}
	if st := l.currentState(); st != StateOnline {
		return SnapshotInfo{}, fmt.Errorf("LUN %s is %s: %w", l.name, st, ErrInvalid)
	}
	if rate <= 0 {
		rate = DefaultSnapshotRate
	}
	fi, err := l.be.f.Stat()
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: %w", l.name, err)
	}
	if !fi.Mode().IsRegular() {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: %s is not a regular file: %w", l.name, l.path, ErrInvalid)
	}
	ss := &l.snaps
	ss.opMu.Lock()
	defer ss.opMu.Unlock()
	if _, ok := ss.get(name); ok {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: snapshot %s: %w", l.name, name, ErrExists)
	}
	path := l.path + "@" + name
	if _, err := os.Lstat(path + snapSuffix); err == nil {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: snapshot %s: %s exists: %w", l.name, name, path+snapSuffix, ErrExists)
	}
	dst, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, os.ErrExist) {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: snapshot %s: %s exists: %w", l.name, name, path, ErrExists)
	}
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("LUN %s: snapshot %s: %w", l.name, name, err)
	}
	s := &snapshot{name: name, path: path, created: time.Now(), size: l.Size(), state: SnapshotCopying}
	undo := func(err error) (SnapshotInfo, error) {
		dst.Close()
		os.Remove(path)
		os.Remove(path + snapSuffix)
		return SnapshotInfo{}, fmt.Errorf("LUN %s: snapshot %s: %w", l.name, name, err)
	}
	if err := s.persist(); err != nil {
		return undo(err)
	}
	if err := l.fixPoint(s, dst, fi); err != nil {
		return undo(err)
	}
	ss.put(s)
	if s.cow == nil {
		// A clone shares the extents, durable once the clone is synced.
		err := dst.Sync()
		dst.Close()
		if err == nil {
			err = s.set(SnapshotReady, "")
		}
		if err != nil {
			s.set(SnapshotFailed, err.Error())
		}
		l.log.Info("snapshot", "snapshot", name, "path", path, "method", s.method, "pause_us", s.pause.Microseconds(), "err", err)
		return s.info(), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.dst, s.cancel, s.done = dst, cancel, make(chan struct{})
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer close(s.done)
		l.copySnapshot(ctx, s, rate)
	}()
	l.log.Info("snapshot", "snapshot", name, "path", path, "method", s.method, "pause_us", s.pause.Microseconds(), "rate", rate)
	return s.info(), nil
}

// fixPoint fixes the snapshot's point in time: with the gate shut (no
// change of the file in flight or starting), it syncs the file and clones
// it into dst, or, where the file system cannot clone, sizes dst and puts
// the range under copy-before-write. The pause is recorded in s.
//
// The pause is what the LUN's writes wait. Most of an fdatasync's cost is
// the dirty pages it writes back, so a first fdatasync runs before the
// gate shuts and the one inside it writes back only what came since:
// TestSnapshotReflink on XFS over a loop device, a 1 GiB file all dirty,
// paused the writes 2.5 s without it and 0.45 ms with it (the clone alone
// 0.1 ms).
func (l *LUN) fixPoint(s *snapshot, dst *os.File, fi os.FileInfo) error {
	if err := l.be.Sync(0, 0); err != nil {
		return err
	}
	g := &l.be.gate
	start := time.Now()
	g.mu.Lock()
	defer func() {
		g.mu.Unlock()
		s.pause = time.Since(start)
	}()
	if err := l.be.Sync(0, 0); err != nil {
		return err
	}
	err := unix.IoctlFileClone(int(dst.Fd()), l.be.fd)
	if err == nil {
		s.method = MethodReflink
		return nil
	}
	if !cloneUnsupported(err) {
		return fmt.Errorf("FICLONE %s: %w", dst.Name(), err)
	}
	// A copy skips zeros, so it needs at most the file's allocated
	// bytes (writes during the copy may want more: then the copy fails,
	// never the LUN).
	need := s.size
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		need = min(need, st.Blocks*512)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(dst.Fd()), &sfs); err == nil {
		if free := int64(sfs.Bavail) * sfs.Bsize; free < need {
			return fmt.Errorf("no space for the copy: it needs up to %d bytes, %d are free: %w", need, free, syscall.ENOSPC)
		}
	}
	if err := dst.Truncate(s.size); err != nil {
		return fmt.Errorf("size %s: %w", dst.Name(), err)
	}
	s.method = MethodCopy
	s.cow = newCowCopy(l.be.f, dst, s.size, cowChunk)
	g.setCow(s.cow, true)
	return nil
}

// cloneUnsupported reports whether FICLONE failed because the file system
// (or the pair of files) cannot share extents, rather than an I/O error.
func cloneUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) ||
		errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM)
}

// copySnapshot runs a snapshot's background copy to its end: complete
// and synced (ready), or failed with the reason. A failed or cancelled
// copy gives its space back (the file is truncated): a full file system
// must not stay full because of it.
func (l *LUN) copySnapshot(ctx context.Context, s *snapshot, rate int64) {
	c := s.cow
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for ctx.Err() == nil && c.step() {
		ahead := time.Duration(float64(c.copied.Load())/float64(rate)*float64(time.Second)) - time.Since(start)
		if ahead <= 0 {
			continue
		}
		t.Reset(ahead)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	if ctx.Err() != nil {
		c.fail(errCowCancelled)
	}
	l.be.gate.setCow(c, false)
	// A writer may still be copying a chunk it started before a
	// failure: the snapshot file is truncated and closed only after.
	c.idle()
	err := c.Err()
	if err == nil {
		err = s.dst.Sync()
	}
	if err != nil {
		s.dst.Truncate(0)
		s.dst.Close()
		if !errors.Is(err, errCowCancelled) {
			l.log.Warn("snapshot failed", "snapshot", s.name, "path", s.path, "err", err)
		}
		if perr := s.set(SnapshotFailed, err.Error()); perr != nil {
			l.log.Warn("snapshot state", "snapshot", s.name, "err", perr)
		}
		return
	}
	s.dst.Close()
	if err := s.set(SnapshotReady, ""); err != nil {
		l.log.Warn("snapshot state", "snapshot", s.name, "err", err)
		s.mu.Lock()
		s.state, s.reason = SnapshotFailed, err.Error()
		s.mu.Unlock()
		return
	}
	l.log.Info("snapshot ready", "snapshot", s.name, "path", s.path, "copied", c.copied.Load(), "took", time.Since(start))
}

// DeleteSnapshot removes the snapshot NAME: a copy in progress stops
// first; then the file and its state file go.
func (l *LUN) DeleteSnapshot(name string) error {
	if err := ValidSnapshotName(name); err != nil {
		return fmt.Errorf("LUN %s: %w", l.name, err)
	}
	ss := &l.snaps
	ss.opMu.Lock()
	defer ss.opMu.Unlock()
	s, ok := ss.get(name)
	if !ok {
		return fmt.Errorf("LUN %s: no snapshot %s: %w", l.name, name, ErrNotFound)
	}
	s.stop(errors.New("deleted during the copy"))
	err := os.Remove(s.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if e := os.Remove(s.path + snapSuffix); e != nil && !errors.Is(e, os.ErrNotExist) {
		err = errors.Join(err, e)
	}
	if err != nil {
		return fmt.Errorf("LUN %s: delete snapshot %s: %w", l.name, name, err)
	}
	ss.mu.Lock()
	delete(ss.m, name)
	ss.mu.Unlock()
	l.log.Info("snapshot deleted", "snapshot", name, "path", s.path)
	return nil
}

// stop ends a copy in progress with reason and waits for its copier.
func (s *snapshot) stop(reason error) {
	if s.done == nil {
		return
	}
	s.cow.fail(fmt.Errorf("%w: %w", errCowCancelled, reason))
	s.cancel()
	<-s.done
}

// Snapshots returns the LUN's snapshots, by name.
func (l *LUN) Snapshots() []SnapshotInfo {
	var list []SnapshotInfo
	for _, s := range l.snaps.all() {
		list = append(list, s.info())
	}
	slices.SortFunc(list, func(a, b SnapshotInfo) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// closeSnapshots stops the copies in progress (they are then failed: an
// unfinished copy is never served as complete) before the backing file
// closes.
func (l *LUN) closeSnapshots() {
	ss := &l.snaps
	ss.opMu.Lock()
	defer ss.opMu.Unlock()
	for _, s := range ss.all() {
		s.stop(errors.New("the LUN closed during the copy"))
	}
	ss.wg.Wait()
}

// loadSnapshots finds the snapshots of the LUN's file left by an earlier
// run from their state files. One still "copying" was interrupted (the
// daemon was killed or crashed): it is failed, and says so.
func (l *LUN) loadSnapshots() {
	dir, base := filepath.Split(l.path)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return
	}
	ss := &l.snaps
	for _, e := range ents {
		n := e.Name()
		name, ok := strings.CutPrefix(n, base+"@")
		if !ok {
			continue
		}
		if name, ok = strings.CutSuffix(name, snapSuffix); !ok || ValidSnapshotName(name) != nil {
			continue
		}
		s, err := readSnapshotState(name, l.path+"@"+name)
		if err != nil {
			l.log.Warn("snapshot state unreadable", "snapshot", name, "err", err)
			continue
		}
		if s.state == SnapshotCopying {
			s.state, s.reason = SnapshotFailed, "interrupted: the daemon stopped during the copy"
			if err := s.persist(); err != nil {
				l.log.Warn("snapshot state", "snapshot", name, "err", err)
			}
			l.log.Warn("snapshot interrupted", "snapshot", name, "path", s.path)
		}
		ss.put(s)
	}
}

// readSnapshotState reads a state file written by persist.
func readSnapshotState(name, path string) (*snapshot, error) {
	f, err := os.Open(path + snapSuffix)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &snapshot{name: name, path: path}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		switch k {
		case "state":
			s.state = v
		case "method":
			s.method = v
		case "created":
			s.created, _ = time.Parse(time.RFC3339Nano, v)
		case "size":
			s.size, _ = strconv.ParseInt(v, 10, 64)
		case "copied":
			s.copied, _ = strconv.ParseInt(v, 10, 64)
		case "pause_us":
			us, _ := strconv.ParseInt(v, 10, 64)
			s.pause = time.Duration(us) * time.Microsecond
		case "reason":
			s.reason = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch s.state {
	case SnapshotCopying, SnapshotReady, SnapshotFailed:
	default:
		return nil, fmt.Errorf("%s: state %q: %w", path+snapSuffix, s.state, ErrInvalid)
	}
	return s, nil
}

// checkSnapshotFile refuses to serve a snapshot file that is not complete:
// path is one when its state file exists, and then it must read ready.
func checkSnapshotFile(path string) error {
	if _, err := os.Lstat(path + snapSuffix); err != nil {
		return nil
	}
	dir, base := filepath.Split(path)
	s, err := readSnapshotState(base, filepath.Join(dir, base))
	if err != nil {
		return fmt.Errorf("%s is a snapshot whose state is unreadable: %w: %w", path, err, ErrInvalid)
	}
	if s.state != SnapshotReady {
		return fmt.Errorf("%s is a snapshot that is %s, not ready (%s): %w", path, s.state, s.reason, ErrInvalid)
	}
	return nil
}
