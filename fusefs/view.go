// SPDX-License-Identifier: Apache-2.0

package fusefs

import (
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/bridge"
)

// DefaultMountpoint is where lunbridge mounts the view unless told otherwise.
const DefaultMountpoint = "/run/lunbridge"

// LUNs is what the view needs from the daemon.
type LUNs interface {
	// List returns every LUN, sorted by name, with Stats filled in.
	List() []bridge.LUNInfo
	// Control executes one canonical command line (see the package
	// documentation) on the LUN called name, or on the daemon when name is
	// empty. Errors wrap bridge.ErrNotFound, bridge.ErrInvalid or
	// bridge.ErrExists, or are other failures.
	Control(ctx context.Context, name, line string) error
}

// Options configure a View.
type Options struct {
	// Mountpoint is the directory to mount on; DefaultMountpoint if empty.
	// It is created if missing.
	Mountpoint string
	// AllowOther lets users other than root see the view (FUSE
	// allow_other). Mode bits still apply: only root can write.
	AllowOther bool
	// Version is the content of /version.
	Version string
	// Logger receives rejected writes, mount events and, with Debug, the
	// FUSE protocol trace. Nil discards.
	Logger *slog.Logger
	// Debug traces every FUSE request at slog.LevelDebug.
	Debug bool
}

// View is the mounted FUSE view of a set of LUNs. Create it with New and
// serve it with Run.
type View struct {
	luns  LUNs
	opts  Options
	log   *slog.Logger
	uid   uint32
	gid   uint32
	ready chan struct{}
	// refresh wakes the goroutine that tells the kernel about LUNs that
	// came or went; capacity 1, so Refresh never blocks.
	refresh chan struct{}
}

// New returns a View of luns. Nothing is mounted until Run.
func New(luns LUNs, opts Options) *View {
	if opts.Mountpoint == "" {
		opts.Mountpoint = DefaultMountpoint
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &View{
		luns:    luns,
		opts:    opts,
		log:     log,
		uid:     uint32(os.Geteuid()),
		gid:     uint32(os.Getegid()),
		ready:   make(chan struct{}),
		refresh: make(chan struct{}, 1),
	}
}

// Ready returns a channel that is closed once the view is mounted and
// serving. It stays open if Run fails before that.
func (v *View) Ready() <-chan struct{} { return v.ready }

// Refresh tells the view that LUNs were added or removed. Lookups always
// consult LUNs.List, so a new LUN is visible at once; Refresh additionally
// invalidates the kernel's cached entries, so a removed LUN's directory also
// disappears for processes that hold it (as a working directory, say). It
// never blocks and may be called from within LUNs.Control.
func (v *View) Refresh() {
	select {
	case v.refresh <- struct{}{}:
	default: // a refresh is already pending; it will see this change too
	}
}

// Run mounts the view and serves it until ctx is done, then unmounts it. A
// stale mount left on the mountpoint by a killed daemon (its stat fails with
// ENOTCONN) is detached first. If a process holds a file open at shutdown,
// the mount is detached lazily and the FUSE connection aborted, so Run does
// not wait for that process. Run returns after every goroutine it started has
// exited; it returns an error if the view cannot be mounted or is unmounted
// by someone else. Run may be called once.
func (v *View) Run(ctx context.Context) error {
	mnt, err := filepath.Abs(v.opts.Mountpoint)
	if err != nil {
		return fmt.Errorf("fusefs: mountpoint: %w", err)
	}
	if err := v.prepareMountpoint(mnt); err != nil {
		return err
	}

	// Entries and attributes are never cached by the kernel: each path walk
	// asks LUNs.List, so the tree cannot go stale even if the daemon forgets
	// to call Refresh. The view is small and rarely walked, so the extra
	// LOOKUPs cost nothing that matters.
	var zero time.Duration
	fsOpts := &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: v.opts.AllowOther,
			// default_permissions makes the kernel enforce the mode bits
			// for users other than root (with allow_other); Open enforces
			// them for root, whom the kernel lets through.
			Options: []string{"default_permissions"},
			FsName:  "lunbridge",
			Name:    "lunbridge",
			// The daemon is root and mounts with mount(2); a normal
			// user (the unit tests) falls back to fusermount, as
			// go-fuse's own tests do.
			DirectMount:   true,
			DisableXAttrs: true,
			Debug:         v.opts.Debug,
			Logger:        slog.NewLogLogger(v.log.Handler(), slog.LevelDebug),
		},
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		UID:             v.uid,
		GID:             v.gid,
		Logger:          slog.NewLogLogger(v.log.Handler(), slog.LevelWarn),
	}
	root := &rootNode{v: v}
	server, err := fuse.NewServer(fs.NewNodeFS(root, fsOpts), mnt, &fsOpts.MountOptions)
	if err != nil {
		return fmt.Errorf("fusefs: mount %s: %w", mnt, err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		uerr := v.unmount(server, mnt, 0, served)
		return errors.Join(fmt.Errorf("fusefs: mount %s: %w", mnt, err), uerr)
	}
	// The FUSE connection's id in fusectl is the mount's anonymous device
	// number, needed to abort the connection at shutdown.
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		uerr := v.unmount(server, mnt, 0, served)
		return errors.Join(fmt.Errorf("fusefs: stat %s: %w", mnt, err), uerr)
	}
	connID := unix.Minor(st.Dev)
	v.log.Info("fusefs: mounted", "path", mnt, "allow_other", v.opts.AllowOther)
	close(v.ready)

	var wg sync.WaitGroup
	notifyCtx, stopNotify := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		root.notifyLoop(notifyCtx)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case <-served:
		runErr = fmt.Errorf("fusefs: %s was unmounted from outside", mnt)
	}
	stopNotify()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	if err := v.unmount(server, mnt, connID, served); err != nil {
		return err
	}
	v.log.Info("fusefs: unmounted", "path", mnt)
	return nil
}

// prepareMountpoint creates mnt if needed and detaches stale FUSE mounts
// from it: when a FUSE daemon dies without unmounting, its mount stays and
// every access fails with ENOTCONN (ECONNABORTED once aborted via fusectl).
func (v *View) prepareMountpoint(mnt string) error {
	var st unix.Stat_t
	err := unix.Stat(mnt, &st)
	// Stale mounts may be stacked (several crashes in a row): detach them
	// one at a time, with a bound so a broken kernel cannot loop us.
	for i := 0; i < 16 && (errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)); i++ {
		v.log.Warn("fusefs: detaching stale mount", "path", mnt, "err", err)
		if uerr := unix.Unmount(mnt, unix.MNT_DETACH); uerr != nil {
			return fmt.Errorf("fusefs: detach stale mount %s: %w", mnt, uerr)
		}
		err = unix.Stat(mnt, &st)
	}
	if errors.Is(err, iofs.ErrNotExist) {
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return fmt.Errorf("fusefs: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("fusefs: stat %s: %w", mnt, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("fusefs: mountpoint %s: %w", mnt, syscall.ENOTDIR)
	}
	// A live FUSE mount here is another daemon's view (or our own from a
	// daemon that still runs): stacking on it would hide it, so refuse.
	var sfs unix.Statfs_t
	var parent unix.Stat_t
	if unix.Statfs(mnt, &sfs) == nil && sfs.Type == unix.FUSE_SUPER_MAGIC &&
		unix.Stat(filepath.Dir(mnt), &parent) == nil && parent.Dev != st.Dev {
		return fmt.Errorf("fusefs: %s is already a live FUSE mount (is another lunbridge running?): %w",
			mnt, syscall.EBUSY)
	}
	return nil
}

// unmount unmounts mnt and waits until served is closed. If the mount is
// busy because a process holds a file open, it detaches the mount (new
// opens fail at once) and aborts the FUSE connection through fusectl, so
// the holder gets ENOTCONN instead of keeping the server alive. connID 0
// means unknown (no abort possible).
func (v *View) unmount(server *fuse.Server, mnt string, connID uint32, served <-chan struct{}) error {
	// Server.Unmount retries umount(2) for a while; success means the
	// kernel has released the connection and the serve loops end.
	err := server.Unmount()
	if err == nil {
		<-served
		return nil
	}
	v.log.Warn("fusefs: mount busy; detaching it and aborting the connection", "path", mnt, "err", err)
	var errs []error
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: no longer a mountpoint, which is what we want.
		errs = append(errs, fmt.Errorf("fusefs: detach %s: %w", mnt, err))
	}
	if connID != 0 {
		if err := abortConn(connID); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Without an abort the serve loops end only when the last
		// holder closes its file; do not wait for that.
		return errors.Join(errs...)
	}
	<-served
	return nil
}

// fusectlDir is where systemd mounts fusectl.
const fusectlDir = "/sys/fs/fuse/connections"

// abortConn aborts FUSE connection id by writing to its fusectl abort file
// (Documentation/filesystems/fuse.rst, "Aborting a filesystem
// connection"). If fusectl is not mounted (minimal systems, the test
// guest), it mounts a private instance on a temporary directory for the
// write and unmounts it again.
func abortConn(id uint32) error {
	write := func(dir string) error {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(id), "abort"), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.Write([]byte("1"))
		return errors.Join(err, f.Close())
	}
	err := write(fusectlDir)
	if err == nil || !errors.Is(err, iofs.ErrNotExist) {
		if err != nil {
			return fmt.Errorf("fusefs: abort connection %d: %w", id, err)
		}
		return nil
	}
	dir, err := os.MkdirTemp("", "lunbridge-fusectl-")
	if err != nil {
		return fmt.Errorf("fusefs: abort connection %d: %w", id, err)
	}
	defer os.Remove(dir)
	if err := unix.Mount("fusectl", dir, "fusectl", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("fusefs: abort connection %d: mount fusectl: %w", id, err)
	}
	err = write(dir)
	if uerr := unix.Unmount(dir, 0); uerr != nil {
		err = errors.Join(err, fmt.Errorf("unmount fusectl: %w", uerr))
	}
	if err != nil {
		return fmt.Errorf("fusefs: abort connection %d: %w", id, err)
	}
	return nil
}

// errno maps an error to the errno a FUSE operation returns: an Errno in the
// chain as is, the bridge sentinels to their meaning, EIO otherwise.
func errno(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return e
	case errors.Is(err, bridge.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, bridge.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, bridge.ErrExists):
		return syscall.EEXIST
	}
	return syscall.EIO
}
