// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/scsi"
)

// Gateway makes a LUN one of several gateways exporting one shared file
// (docs/scale-out.md). Package lease implements it; bridge only calls it.
type Gateway interface {
	scsi.ALUA
	// CheckWrite reports whether this gateway may acknowledge a write
	// now: nil, or the *scsi.Error to complete the write with.
	CheckWrite() error
	// CheckRead is CheckWrite for data read from the file: a read that
	// finishes after the gateway's validity ended may hold data older
	// than writes a new owner has acknowledged since.
	CheckRead() error
	// Bind hands the gateway the LUN's hooks, once, before the LUN
	// serves: drain waits for the writes in flight and syncs the file;
	// changed reports a change of the local ALUA state. The gateway calls
	// changed(active/optimized) before that state is visible to commands
	// and stays out of it while changed fails (the LUN could not drop
	// its cache of the file).
	Bind(drain func(context.Context) error, changed func(scsi.AccessState) error)
	// Info describes the gateway's view of its group now.
	Info() GatewayInfo
	// Lost tells the gateway that this gateway's file system client lost
	// the backing file (err is one that lostErr accepts): it fences
	// itself for good (no write or read is acknowledged under its epoch
	// any more, its state becomes unavailable, it gives up ownership) and
	// returns the *scsi.Error to complete the command with, one that
	// Linux fails as a path error so that multipath retries elsewhere.
	Lost(err error) error
}

// GatewayStates are the ALUA states a gateway's disk supports, for
// reports that list every state (metrics).
var GatewayStates = []scsi.AccessState{
	scsi.StateActiveOptimized, scsi.StateActiveNonOptimized, scsi.StateStandby,
	scsi.StateUnavailable, scsi.StateTransitioning,
}

// GatewayInfo is a gateway LUN's view of its group (LUNInfo.Gateway).
type GatewayInfo struct {
	Group uint16           // this gateway's target port group
	State scsi.AccessState // its ALUA state
	Owner bool             // it owns the file and acknowledges writes
	// Epoch is the ownership epoch: this gateway's while it owns the
	// file, else the last one it read.
	Epoch uint64
	// OwnerGroup is the owner's group, if OwnerKnown.
	OwnerGroup uint16
	OwnerKnown bool
}

// fencedBackend checks the gateway's write fence before and after every
// operation that changes the backing file: before, so that a gateway that
// is no longer sure to own the file issues no write; after, so that it
// never acknowledges one (the command then fails with the gateway's
// sense, and the initiator retries on another path). Reads get the
// after-check too. It counts the operations in flight for drain.
//
// Every change is durable before its after-check (write-through): an
// acknowledged write that sat in this gateway's file system client
// (page cache, Gluster write-behind) would be missing when another
// gateway takes over, since a SYNCHRONIZE CACHE sent there syncs only
// that gateway's client. The disk also reports WCE=0; MODE SELECT may set
// WCE=1, which changes nothing here.
type fencedBackend struct {
	*fileBackend
	fence     func() error
	readFence func() error
	// lost is Gateway.Lost.
	lost     func(error) error
	inFlight atomic.Int64
	// syncFile, if set, replaces the fdatasync of the file (tests: a
	// file system that fails it).
	syncFile func() error
}

// sync makes the whole file durable.
func (b *fencedBackend) sync() error {
	if b.syncFile != nil {
		return b.syncFile()
	}
	return b.fileBackend.Sync(0, 0)
}

var (
	_ scsi.Zeroer = (*fencedBackend)(nil)
	_ scsi.Copier = (*fencedBackend)(nil)
)

// guard runs op between two checks of the fence.
func (b *fencedBackend) guard(op func() error) error {
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	if err := b.fence(); err != nil {
		return fmt.Errorf("gateway: not the owner: %w", err)
	}
	if err := op(); err != nil {
		return b.gone(err)
	}
	if err := b.fence(); err != nil {
		return fmt.Errorf("gateway: ownership lost during the write: %w", err)
	}
	return nil
}

// gone turns an error of the file that says this gateway's file system
// client lost it (lostErr: ENOTCONN, ECONNABORTED, ESTALE, ENODEV) into
// the gateway's fence (Gateway.Lost): the command fails with the
// gateway's sense, which the initiator takes as a path error, instead of
// NOT READY, MANUAL INTERVENTION REQUIRED for the whole LUN; the other
// gateways still have the file. Other errors pass unchanged (an EIO
// stays a MEDIUM ERROR: on a shared file it may be the file's own).
func (b *fencedBackend) gone(err error) error {
	if !lostErr(err) {
		return err
	}
	return fmt.Errorf("gateway: backing file lost (%w): %w", err, b.lost(err))
}

// durably runs op, then syncs the file.
func (b *fencedBackend) durably(op func() error) error {
	if err := op(); err != nil {
		return err
	}
	return b.sync()
}

func (b *fencedBackend) WriteAt(bufs [][]byte, off int64) (n int, err error) {
	err = b.guard(func() error {
		return b.durably(func() error {
			n, err = b.fileBackend.WriteAt(bufs, off)
			return err
		})
	})
	return n, err
}

// Sync only checks the fence: every change was synced before it
// completed.
func (b *fencedBackend) Sync(off, n int64) error {
	return b.guard(func() error { return nil })
}

func (b *fencedBackend) Unmap(off, n int64) error {
	return b.guard(func() error { return b.durably(func() error { return b.fileBackend.Unmap(off, n) }) })
}

func (b *fencedBackend) WriteZeroes(off, n int64) error {
	return b.guard(func() error { return b.durably(func() error { return b.fileBackend.WriteZeroes(off, n) }) })
}

// ReadAt reads, then checks the read fence: data read by a gateway whose
// validity ended meanwhile is not returned.
func (b *fencedBackend) ReadAt(bufs [][]byte, off int64) (int, error) {
	n, err := b.fileBackend.ReadAt(bufs, off)
	if err != nil {
		return n, b.gone(err)
	}
	if err := b.readFence(); err != nil {
		return 0, fmt.Errorf("gateway: ownership lost during the read: %w", err)
	}
	return n, nil
}

// ReadAtNowait is ReadAt from the page cache only (scsi.NowaitReader),
// with the same after-check.
func (b *fencedBackend) ReadAtNowait(bufs [][]byte, off int64) (int, error) {
	n, err := b.fileBackend.ReadAtNowait(bufs, off)
	if err != nil {
		return n, b.gone(err)
	}
	if err := b.readFence(); err != nil {
		return 0, fmt.Errorf("gateway: ownership lost during the read: %w", err)
	}
	return n, nil
}

// CopyFrom copies with copy_file_range between this LUN's file and
// another LUN's (fenced or not).
func (b *fencedBackend) CopyFrom(src scsi.Backend, srcOff, dstOff, n int64) error {
	if s, ok := src.(*fencedBackend); ok {
		src = s.fileBackend
	}
	return b.guard(func() error {
		return b.durably(func() error { return b.fileBackend.CopyFrom(src, srcOff, dstOff, n) })
	})
}

// drain waits until no fenced operation is in flight, then syncs the
// whole file. The gateway refuses new writes before it calls drain. A
// failed sync is returned: the gateway must not hand the file over then
// (lease makes the LUN unavailable).
func (b *fencedBackend) drain(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for b.inFlight.Load() != 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway: drain: %d writes still in flight: %w", b.inFlight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	if err := b.sync(); err != nil {
		return fmt.Errorf("gateway: drain: %w", err)
	}
	return nil
}

// gatewayChanged raises ASYMMETRIC ACCESS STATE CHANGED and, before this
// gateway becomes the owner (the gateway calls it before the state is
// visible to commands), drops the page cache of the backing file and
// checks that no page is left: another gateway may have written the file
// since those pages were read, and a READ must not return them.
// FADV_DONTNEED keeps dirty and mapped pages silently; the sync first
// cleans the former, the check catches the latter.
func (l *LUN) gatewayChanged(s scsi.AccessState) error {
	if s != scsi.StateActiveOptimized {
		l.disk.AccessStateChanged()
		return nil
	}
	if err := l.be.Sync(0, 0); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := unix.Fadvise(l.be.fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("gateway: drop the page cache of %s: %w", l.path, err)
	}
	n, err := residentPages(l.be.fd)
	if err == nil && n != 0 && inMemoryFS(l.be.fd) {
		// tmpfs keeps the file in the page cache, which is then the
		// file itself, shared by every gateway of this kernel: nothing
		// there can be stale.
		n = 0
	}
	if err != nil {
		return fmt.Errorf("gateway: check the page cache of %s: %w", l.path, err)
	}
	if n != 0 {
		return fmt.Errorf("gateway: %d pages of %s stay cached after FADV_DONTNEED (mapped by another process?)", n, l.path)
	}
	if err := l.adoptFileSize(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	l.disk.AccessStateChanged()
	l.log.Info("gateway: now the owner of the backing file")
	return nil
}

// adoptFileSize grows the LUN to the backing file's size, in whole
// blocks, if the file is larger: the previous owner may have resized it
// since this gateway read its size. The new owner then reports the
// capacity the initiator last saw, not the one it started with. It never
// shrinks the LUN (a smaller file is the LUN's own business: reads past
// its end fail as they would before).
func (l *LUN) adoptFileSize() error {
	l.resizeMu.Lock()
	defer l.resizeMu.Unlock()
	st, err := l.be.f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return err
	}
	bs := int64(l.disk.Config().BlockSize)
	size := st.Size() / bs * bs
	if size <= l.Size() {
		return nil
	}
	if l.resizeHook != nil {
		if err := l.resizeHook(size); err != nil {
			return fmt.Errorf("adopt the size %d of %s: %w", size, l.path, err)
		}
	}
	l.be.sizeBytes.Store(size)
	l.disk.SetCapacity(uint64(size / bs))
	l.log.Info("gateway: adopted the backing file's size", "size", size)
	return nil
}

// inMemoryFS reports whether fd is on tmpfs or ramfs, whose pages
// FADV_DONTNEED never drops.
func inMemoryFS(fd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}

// residentPages counts the pages of the file fd that are in the page
// cache, with mincore(2) over read-only shared mappings of at most 1 GiB
// (a mapping faults nothing in).
func residentPages(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("fstat: %w", err)
	}
	const window = 1 << 30
	page := int64(unix.Getpagesize())
	vec := make([]byte, window/page)
	var n int64
	for off := int64(0); off < st.Size; off += window {
		size := min(window, st.Size-off)
		m, err := unix.Mmap(fd, off, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return 0, fmt.Errorf("mmap: %w", err)
		}
		v := vec[:(size+page-1)/page]
		err = mincore(m, v)
		if uerr := unix.Munmap(m); err == nil && uerr != nil {
			err = fmt.Errorf("munmap: %w", uerr)
		}
		if err != nil {
			return 0, fmt.Errorf("mincore: %w", err)
		}
		for _, b := range v {
			n += int64(b & 1)
		}
	}
	return n, nil
}

// gatewayInfo is LUNInfo.Gateway.
func (l *LUN) gatewayInfo() *GatewayInfo {
	if l.gateway == nil {
		return nil
	}
	g := l.gateway.Info()
	return &g
}
