package bridge

import (
	"context"
	"errors"
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
	// Bind hands the gateway the LUN's hooks, once, before the LUN
	// serves: drain waits for the writes in flight and syncs the file;
	// changed reports a change of the local ALUA state. The gateway calls
	// changed(active/optimized) before that state is visible to commands
	// and stays out of it while changed fails (the LUN could not drop
	// its cache of the file).
	Bind(drain func(context.Context) error, changed func(scsi.AccessState) error)
	// Info describes the gateway's view of its group now.
	Info() GatewayInfo
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
// sense, and the initiator retries on another path). It counts the
// operations in flight for drain.
type fencedBackend struct {
	*fileBackend
	fence    func() error
	inFlight atomic.Int64
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
		return err
	}
	if err := b.fence(); err != nil {
		return fmt.Errorf("gateway: ownership lost during the write: %w", err)
	}
	return nil
}

func (b *fencedBackend) WriteAt(bufs [][]byte, off int64) (n int, err error) {
	err = b.guard(func() error {
		n, err = b.fileBackend.WriteAt(bufs, off)
		return err
	})
	return n, err
}

func (b *fencedBackend) Sync(off, n int64) error {
	return b.guard(func() error { return b.fileBackend.Sync(off, n) })
}

func (b *fencedBackend) Unmap(off, n int64) error {
	return b.guard(func() error { return b.fileBackend.Unmap(off, n) })
}

func (b *fencedBackend) WriteZeroes(off, n int64) error {
	return b.guard(func() error { return b.fileBackend.WriteZeroes(off, n) })
}

// CopyFrom copies with copy_file_range between this LUN's file and
// another LUN's (fenced or not).
func (b *fencedBackend) CopyFrom(src scsi.Backend, srcOff, dstOff, n int64) error {
	if s, ok := src.(*fencedBackend); ok {
		src = s.fileBackend
	}
	return b.guard(func() error { return b.fileBackend.CopyFrom(src, srcOff, dstOff, n) })
}

// drain waits until no fenced operation is in flight, then syncs the
// whole file. The gateway refuses new writes before it calls drain.
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
	return b.fileBackend.Sync(0, 0)
}

// gatewayChanged raises ASYMMETRIC ACCESS STATE CHANGED and, when this
// gateway becomes the owner, drops the page cache of the backing file:
// another gateway may have written the file since those pages were read.
func (l *LUN) gatewayChanged(s scsi.AccessState) error {
	l.disk.AccessStateChanged()
	if s != scsi.StateActiveOptimized {
		return nil
	}
	err := unix.Fadvise(l.be.fd, 0, 0, unix.FADV_DONTNEED)
	if l.be.direct != nil {
		err = errors.Join(err, unix.Fadvise(int(l.be.direct.Fd()), 0, 0, unix.FADV_DONTNEED))
	}
	if err != nil {
		l.log.Warn("gateway: drop the page cache of the backing file", "path", l.path, "err", err)
	}
	l.log.Info("gateway: now the owner of the backing file")
	return nil
}

// gatewayInfo is LUNInfo.Gateway.
func (l *LUN) gatewayInfo() *GatewayInfo {
	if l.gateway == nil {
		return nil
	}
	g := l.gateway.Info()
	return &g
}
