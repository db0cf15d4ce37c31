// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/internal/uring"
	"github.com/lunbridge/lunbridge/lease"
	"github.com/lunbridge/lunbridge/scsi"
	"github.com/lunbridge/lunbridge/tcmu"
)

// Options describe a LUN.
type Options struct {
	Name string // validated by ValidName
	Path string // backing file or block device
	// Size is the LUN size in bytes. Zero means the backing file's size.
	// A missing file is created sparse with this size. A larger size than
	// the file's grows the file; a smaller one is refused unless Shrink.
	Size         int64
	Shrink       bool
	BlockSize    uint32 // 512 (default) or 4096
	ReadOnly     bool
	WriteThrough bool // WCE=0: every write is durable before it completes
	Workers      int  // I/O workers; default 2*GOMAXPROCS, at least 4
	// MaxTransfer is the largest transfer in bytes the disk advertises
	// (VPD B0), a multiple of BlockSize; the TCMU device's hw_max_sectors
	// must allow it. Default: DefaultMaxTransfer.
	MaxTransfer int64
	// Preallocate allocates every block of the file before serving, so
	// writes cannot fail for lack of space later. Progress, when not nil,
	// is called as it goes.
	Preallocate bool
	Progress    func(done, total int64)
	// DirectIO reads and writes aligned transfers with O_DIRECT, around
	// the page cache (falling back to buffered I/O for unaligned ones and
	// where the file system refuses O_DIRECT). Durability is unchanged:
	// SYNCHRONIZE CACHE and FUA still fdatasync.
	DirectIO bool
	// Peers resolves the NAA designators of EXTENDED COPY targets to the
	// disks of other LUNs of the same daemon (Daemon sets it).
	Peers func(designator []byte) (*scsi.Disk, bool)
	// Identity, if set, replaces Name as what the NAA designator and
	// serial number derive from: the gateways of one group show one disk
	// even where their LUN names differ (two gateways in one kernel).
	Identity string
	// Gateway, if set, makes this LUN one gateway of several that export
	// one shared file (gateway.go): it supplies the ALUA states and fences
	// every write.
	Gateway Gateway
	Logger  *slog.Logger

	// fallocate replaces fallocate(2) in tests (file systems that lie).
	fallocate fallocFunc
}

// DefaultMaxTransfer is the default largest transfer: 1 MiB, so that a
// 1 MiB I/O is one command (Linux's sd takes max_sectors_kb from the Block
// Limits VPD, up to 1280 KiB; at 512 KiB each 1 MiB I/O was two commands,
// two round trips through the ring). The kernel's default TCMU data area
// (max_data_area_mb 1024 on 6.1) holds hw_queue_depth (128) such commands.
const DefaultMaxTransfer = 1 << 20

// MaxNameLen bounds LUN names: they become configfs object names, FUSE
// directory names and parts of IQNs.
const MaxNameLen = 64

// ValidName reports whether name can name a LUN: 1 to MaxNameLen bytes of
// letters, digits, '.', '_' and '-', not starting with '.' or '-'. (The
// FUSE view reserves the names of its own files: fusefs.ReservedName.)
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("LUN name %q: length must be 1 to %d: %w", name, MaxNameLen, ErrInvalid)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("LUN name %q: must not start with '.' or '-': %w", name, ErrInvalid)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("LUN name %q: only letters, digits, '.', '_' and '-' are allowed: %w", name, ErrInvalid)
		}
	}
	return nil
}

// LUN is one backing file served as a SCSI disk. Create it with Open, serve
// it with Serve (or Run, which also creates its TCMU device), and Close it
// when Serve has returned.
type LUN struct {
	name    string
	path    string
	log     *slog.Logger
	workers int
	disk    *scsi.Disk
	be      *fileBackend
	stats   counters
	start   time.Time
	state   atomic.Uint32  // State
	gateway Gateway        // Options.Gateway; nil if not a gateway
	fenced  *fencedBackend // the disk's backend if a gateway, else nil

	// infoMu guards the fields below, which describe the LUN's place in
	// the kernel for LUN.Info.
	infoMu     sync.Mutex
	uio        string  // protected by infoMu
	fabric     string  // protected by infoMu
	fabricPath string  // protected by infoMu
	srv        *server // protected by infoMu; the current Serve, if any
	reason     string  // protected by infoMu; why the LUN failed (lost.go)
	// hold is the ownership claim on the backing file (lease.Claim);
	// reclaim (lost.go) renews it. Protected by infoMu.
	hold *lease.Hold

	// workerGrace and stalledAfter: see defaultWorkerGrace and
	// defaultStalledAfter (tests shorten them).
	workerGrace  time.Duration
	stalledAfter time.Duration
	// inline says which commands run on the ring's UIO waiter; tests
	// and benchmarks change it.
	inline inlineMode

	// lifeMu guards the bookkeeping of workers Serve left behind (see
	// lifetime.go).
	lifeMu  sync.Mutex
	stuck   []chan struct{} // protected by lifeMu; one per Serve left
	pending []func() error  // protected by lifeMu; releases to run after

	// resizeHook updates the kernel's idea of the size (configfs dev_size)
	// when the LUN grows. Set by Run.
	resizeHook func(int64) error

	// resizeMu serializes Resize: two concurrent grows would otherwise
	// race between the file, the kernel and the disk's capacity.
	resizeMu sync.Mutex

	// snaps are the LUN's snapshots (snapshot.go).
	snaps snapSet
}

// Open opens or creates the backing file, claims it (lease.Claim: a
// second exporter of the same file, here or on another client of a shared
// file system, is refused) and builds the disk. It does not touch the
// kernel. On any error everything it acquired is released again.
func Open(o Options) (_ *LUN, err error) {
	if err := ValidName(o.Name); err != nil {
		return nil, err
	}
	if o.BlockSize == 0 {
		o.BlockSize = 512
	}
	if o.BlockSize != 512 && o.BlockSize != 4096 {
		return nil, fmt.Errorf("LUN %s: block size %d: must be 512 or 4096: %w", o.Name, o.BlockSize, ErrInvalid)
	}
	if o.Size < 0 || o.Size%int64(o.BlockSize) != 0 {
		return nil, fmt.Errorf("LUN %s: size %d is not a multiple of the block size %d: %w", o.Name, o.Size, o.BlockSize, ErrInvalid)
	}
	if o.Workers <= 0 {
		o.Workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if o.MaxTransfer == 0 {
		o.MaxTransfer = DefaultMaxTransfer
	}
	if o.MaxTransfer < int64(o.BlockSize) || o.MaxTransfer%int64(o.BlockSize) != 0 || o.MaxTransfer > 1<<30 {
		return nil, fmt.Errorf("LUN %s: max transfer %d is not a multiple of the block size %d up to 1 GiB: %w", o.Name, o.MaxTransfer, o.BlockSize, ErrInvalid)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkSnapshotFile(o.Path); err != nil {
		return nil, fmt.Errorf("LUN %s: %w", o.Name, err)
	}
	// Every resource acquired below is pushed on undo, which releases
	// them, newest first, unless Open succeeds.
	var undo cleanups
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	f, created, err := openBacking(o)
	if err != nil {
		return nil, err
	}
	undo.push(func() { f.Close() })
	hold, err := claim(f, o)
	if err != nil {
		if created && !errors.Is(err, lease.ErrHeld) {
			// Nobody else has the file we just created: take it back.
			// (A holder may be using it: then it stays.)
			removeIfSame(f, o.Path)
		}
		return nil, fmt.Errorf("LUN %s: %w", o.Name, err)
	}
	undo.push(func() { hold.Close() })
	if hold.RecordErr != nil {
		log.Debug("no owner record; the ownership lock holds all the same", "lun", o.Name, "path", o.Path, "err", hold.RecordErr)
	}
	if created {
		undo.push(func() { removeIfSame(f, o.Path) })
	}
	size, err := settleSize(f, o, created)
	if err != nil {
		return nil, err
	}
	if o.Gateway != nil && size < o.Size {
		log.Warn("gateway: the shared file is smaller than the size asked; serving its size (the owner's resize grows it)", "lun", o.Name, "path", o.Path, "size", size, "asked", o.Size)
	}
	if !o.Preallocate {
		warnSpace(log, f, o, size)
	}
	be := &fileBackend{f: f, fd: int(f.Fd()), falloc: o.fallocate}
	// On a memory file system reads and writes are copies that never
	// wait on a device: made as raw system calls (vectored).
	be.memory = backingFS(be.fd) == fsMemory
	if be.falloc == nil {
		be.falloc = unix.Fallocate
	}
	be.sizeBytes.Store(size)
	switch {
	case o.Gateway != nil:
		// Not mapped: a gateway drops the file's page cache when it
		// takes ownership (gateway.go), which a mapping would pin.
	case be.memory:
		// Its READs and WRITEs become copies between mappings
		// (filemap.go); without a mapping they are system calls.
		if err := be.mm.mapFile(be.fd, size, !be.readOnlyFile()); err != nil {
			log.Info("memory-backed file not mapped; reads and writes are system calls", "lun", o.Name, "path", o.Path, "err", err)
		}
	case !o.DirectIO && backingFS(be.fd) == fsPageCache:
		// READs of what is in the page cache become copies from the
		// mapping (ReadAtNowait); without it, preadv2(RWF_NOWAIT).
		if err := be.mm.mapFile(be.fd, size, false); err != nil {
			log.Info("backing file not mapped; page-cache reads are system calls", "lun", o.Name, "path", o.Path, "err", err)
		} else {
			be.cached = true
		}
		// Buffered writes one at a time (fileBackend.writeTurn),
		// through io_uring where the kernel offers it (fileBackend.ring).
		be.writeTurn = make(chan struct{}, 1)
		if !be.readOnlyFile() {
			if r, err := uring.New(writeRingEntries); err != nil {
				log.Info("io_uring not available; buffered writes are system calls", "lun", o.Name, "path", o.Path, "err", err)
			} else {
				be.ring = r
				undo.push(func() { r.Close() })
			}
		}
	}
	undo.push(func() { be.mm.close() }) // a no-op when nothing is mapped
	if testHookOpened != nil {
		testHookOpened()
	}
	if !o.ReadOnly {
		// Never trust a fallocate return code: see probeZeroing. When
		// the probe cannot run, every zeroing writes zeros.
		be.zero, err = probeBackingZeroing(f, be.falloc)
		if err != nil {
			log.Warn("zeroing probe failed; zeroing writes zeros", "lun", o.Name, "path", o.Path, "err", err)
		}
		// How UNMAP and WRITE SAME will zero, not a zeroing of the file.
		log.Info("zeroing method", "lun", o.Name, "path", o.Path, "method", be.zero.String())
	}
	if o.DirectIO {
		// Not every file system takes O_DIRECT (tmpfs, some FUSE ones):
		// then everything stays buffered, and the log says so.
		mode, err := openFlags(f)
		if err == nil {
			err = failStep("flags")
		}
		if err != nil {
			return nil, fmt.Errorf("LUN %s: %w", o.Name, err)
		}
		d, err := reopen(f, mode|syscall.O_DIRECT)
		if err != nil {
			log.Warn("direct I/O unavailable; using the page cache", "lun", o.Name, "path", o.Path, "err", err)
		} else {
			be.direct = d
			undo.push(func() { d.Close() })
		}
	}
	id := o.Name
	if o.Identity != "" {
		id = o.Identity
	}
	naa, serial := identity(id)
	var sbe scsi.Backend = be
	var fenced *fencedBackend
	if o.Gateway != nil {
		fenced = &fencedBackend{fileBackend: be, fence: o.Gateway.CheckWrite, readFence: o.Gateway.CheckRead, lost: o.Gateway.Lost}
		sbe = fenced
	}
	disk, err := scsi.NewDisk(scsi.Config{
		BlockSize:           o.BlockSize,
		Blocks:              uint64(size) / uint64(o.BlockSize),
		ReadOnly:            o.ReadOnly,
		WriteCache:          !o.WriteThrough && o.Gateway == nil, // gateway.go: write-through
		Serial:              serial,
		NAA:                 naa,
		MaxTransferBlocks:   uint32(o.MaxTransfer / int64(o.BlockSize)),
		MaxUnmapBlocks:      uint32(min(1<<30/int64(o.BlockSize), 1<<20)), // > 2^20 fails libiscsi's Inquiry.BlockLimits
		MaxUnmapDescriptors: 256,
		MaxWriteSameBlocks:  uint32(min(1<<30/int64(o.BlockSize), int64(^uint32(0)))),
		ThinProvisioning:    true,
		// target_core_mod answers PERSISTENT RESERVE IN/OUT itself for
		// TCMU devices (attrib/emulate_pr=1): list them as supported.
		KernelPR: true,
		Peers:    o.Peers,
		ALUA:     o.Gateway,
	}, sbe)
	if err == nil {
		err = failStep("disk")
	}
	if err != nil {
		return nil, fmt.Errorf("LUN %s: %w", o.Name, err)
	}
	l := &LUN{
		name:    o.Name,
		path:    o.Path,
		log:     log.With("lun", o.Name),
		workers: o.Workers,
		disk:    disk,
		be:      be,
		hold:    hold,
		start:   time.Now(),
		gateway: o.Gateway,
		fenced:  fenced,

		workerGrace:  defaultWorkerGrace,
		stalledAfter: defaultStalledAfter,
	}
	if o.Gateway != nil {
		o.Gateway.Bind(fenced.drain, l.gatewayChanged)
	}
	l.loadSnapshots()
	return l, nil
}

// cleanups is a stack of releases: run calls them newest first.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// testFailStep, when not nil, makes Open fail at the named step (tests
// check that every step's failure releases what came before).
var testFailStep func(step string) error

func failStep(step string) error {
	if testFailStep == nil {
		return nil
	}
	return testFailStep(step)
}

// claim takes the LUN's ownership lock on its backing file: exclusive,
// or shared with the other gateways of its group.
func claim(f *os.File, o Options) (*lease.Hold, error) {
	if err := failStep("claim"); err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return lease.Claim(f, lease.Owner{PID: os.Getpid(), Host: host, LUN: o.Name, Gateway: o.Gateway != nil})
}

// identity derives the LUN's NAA designator and serial number from its
// name, so that initiators see the same disk across restarts.
func identity(name string) (naa [16]byte, serial string) {
	h := fnv.New64a()
	h.Write([]byte("lunbridge\x00" + name))
	sum := h.Sum64()
	return scsi.NAAFromName(name), fmt.Sprintf("lb%016x", sum)
}

// openBacking opens the backing file, or creates it empty (created);
// settleSize gives it its size once the LUN owns it.
func openBacking(o Options) (f *os.File, created bool, err error) {
	if err := failStep("open"); err != nil {
		return nil, false, err
	}
	flags := os.O_RDWR
	f, err = os.OpenFile(o.Path, flags, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if o.Size == 0 {
			return nil, false, fmt.Errorf("LUN %s: %s does not exist; give a size to create it: %w", o.Name, o.Path, ErrInvalid)
		}
		// O_EXCL already refuses a symlink (even a dangling one) at
		// o.Path; O_NOFOLLOW says so.
		f, err = os.OpenFile(o.Path, flags|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			return f, true, nil
		}
	}
	if err != nil && o.ReadOnly && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		f, err = os.OpenFile(o.Path, os.O_RDONLY, 0)
	}
	if err != nil {
		return nil, false, fmt.Errorf("LUN %s: open backing file: %w", o.Name, err)
	}
	return f, false, nil
}

// settleSize gives the backing file the LUN's size (a created file is
// sized and, with Preallocate, allocated) and returns that size. The
// caller closes f on error.
func settleSize(f *os.File, o Options, created bool) (int64, error) {
	if err := failStep("size"); err != nil {
		return 0, err
	}
	if created {
		err := f.Truncate(o.Size)
		if err != nil {
			return 0, growError(o, err)
		}
		if o.Preallocate {
			err = preallocate(f, o.Size, o.Progress)
		}
		if err != nil {
			return 0, fmt.Errorf("LUN %s: create %s: %w", o.Name, o.Path, err)
		}
		return o.Size, nil
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("LUN %s: %w", o.Name, err)
	}
	var cur int64
	switch {
	case st.Mode().IsRegular():
		cur = st.Size()
	case st.Mode()&fs.ModeDevice != 0:
		cur, err = f.Seek(0, 2)
		if err != nil {
			return 0, fmt.Errorf("LUN %s: size of %s: %w", o.Name, o.Path, err)
		}
	default:
		return 0, fmt.Errorf("LUN %s: %s is not a regular file or block device: %w", o.Name, o.Path, ErrInvalid)
	}
	size := cur
	switch {
	case o.Size == 0:
	case o.Size > cur && st.Mode().IsRegular() && o.Gateway != nil:
		// Only the owner changes a shared file's size, and a gateway
		// owns nothing yet: it serves the size it finds (Open warns).
	case o.Size > cur && st.Mode().IsRegular():
		if err := f.Truncate(o.Size); err != nil {
			return 0, growError(o, err)
		}
		size = o.Size
	case o.Size < cur && !o.Shrink:
		return 0, fmt.Errorf("LUN %s: %s holds %d bytes; refusing to shrink it to %d: %w", o.Name, o.Path, cur, o.Size, ErrInvalid)
	case o.Size > cur:
		return 0, fmt.Errorf("LUN %s: block device %s holds only %d bytes: %w", o.Name, o.Path, cur, ErrInvalid)
	default:
		size = o.Size // a LUN smaller than its file or device: the tail is unused
	}
	if size == 0 {
		return 0, fmt.Errorf("LUN %s: %s is empty; give a size to grow it (--size, size): %w", o.Name, o.Path, ErrInvalid)
	}
	if bs := int64(o.BlockSize); size%bs != 0 {
		return 0, fmt.Errorf("LUN %s: size %d of %s is not a multiple of the block size %d: %w", o.Name, size, o.Path, bs, ErrInvalid)
	}
	if o.Preallocate && st.Mode().IsRegular() {
		if err := preallocate(f, size, o.Progress); err != nil {
			return 0, fmt.Errorf("LUN %s: preallocate %s: %w", o.Name, o.Path, err)
		}
	}
	return size, nil
}

// growError explains a failed truncate to the LUN's size: EFBIG means
// the file system cannot hold a file that large (ext4 with 4K blocks:
// 16 TiB).
func growError(o Options, err error) error {
	if errors.Is(err, syscall.EFBIG) {
		return fmt.Errorf("LUN %s: size %d: the file system of %s cannot hold a file that large (%w); give a smaller size", o.Name, o.Size, o.Path, err)
	}
	return fmt.Errorf("LUN %s: grow %s to %d: %w", o.Name, o.Path, o.Size, err)
}

// testStatfs replaces statfs(2) in warnSpace's tests.
var testStatfs func(fd int, st *unix.Statfs_t) error

// warnSpace warns when a sparse backing file could grow past the free
// space of its file system: thin provisioning is legitimate, so this is
// no refusal, but writes will fail (a SCSI space allocation error) once
// the file system is full, and the operator should know now.
func warnSpace(log *slog.Logger, f *os.File, o Options, size int64) {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	var fsst unix.Statfs_t
	statfs := unix.Fstatfs
	if testStatfs != nil {
		statfs = testStatfs
	}
	if statfs(int(f.Fd()), &fsst) != nil {
		return
	}
	allocated := sys.Blocks * 512
	free := int64(fsst.Bavail) * int64(fsst.Bsize)
	if need := size - allocated; need > free {
		log.Warn("sparse LUN larger than the free space of its file system: writes past the free space will fail; preallocate, or free space",
			"lun", o.Name, "path", o.Path, "size", size, "allocated", allocated, "unallocated", need, "free", free)
	}
}

// testHookOpened, when not nil, runs between the open of the backing file
// and its O_DIRECT reopen: tests swap the path there.
var testHookOpened func()

// reopen opens the file f is open on again with flags, by descriptor
// (/proc/self/fd/N), not by name: whatever the path names by now (a
// symlink swapped, a file renamed over it), the new descriptor is on the
// same inode, which it checks.
func reopen(f *os.File, flags int) (*os.File, error) {
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", f.Name(), err)
	}
	a, errA := f.Stat()
	b, errB := d.Stat()
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		d.Close()
		return nil, fmt.Errorf("reopen %s: not the same file (%w)", f.Name(), errors.Join(errA, errB, ErrInvalid))
	}
	return d, nil
}

// removeIfSame removes path when it still names the file f is open on:
// the cleanup of a failed create must not delete a file someone put
// there since.
func removeIfSame(f *os.File, path string) {
	a, err := f.Stat()
	if err != nil {
		return
	}
	if b, err := os.Lstat(path); err == nil && os.SameFile(a, b) {
		os.Remove(path)
	}
}

// preallocChunk is how much preallocate allocates between progress reports.
const preallocChunk = 256 << 20

// preallocate allocates [0, size) of f without changing its data
// (fallocate mode 0), reporting progress after each chunk.
func preallocate(f *os.File, size int64, progress func(done, total int64)) error {
	for off := int64(0); off < size; off += preallocChunk {
		n := min(preallocChunk, size-off)
		if err := unix.Fallocate(int(f.Fd()), 0, off, n); err != nil {
			return err
		}
		if progress != nil {
			progress(off+n, size)
		}
	}
	return nil
}

// Name returns the LUN's name.
func (l *LUN) Name() string { return l.name }

// Disk returns the SCSI disk the LUN emulates.
func (l *LUN) Disk() *scsi.Disk { return l.disk }

// Size returns the LUN size in bytes.
func (l *LUN) Size() int64 { return l.be.sizeBytes.Load() }

// Stats returns a snapshot of the LUN's counters.
func (l *LUN) Stats() Stats {
	var s Stats
	l.stats.snapshot(&s)
	s.Uptime = time.Since(l.start)
	return s
}

// Info returns a snapshot of the LUN's description and counters.
func (l *LUN) Info() LUNInfo {
	cfg := l.disk.Config()
	l.infoMu.Lock()
	uio, fab, fabPath := l.uio, l.fabric, l.fabricPath
	l.infoMu.Unlock()
	return LUNInfo{
		Name:       l.name,
		Path:       l.path,
		Size:       l.Size(),
		BlockSize:  cfg.BlockSize,
		Serial:     cfg.Serial,
		NAA:        fmt.Sprintf("%x", cfg.NAA[:]),
		UIO:        uio,
		Fabric:     fab,
		FabricPath: fabPath,
		State:      l.currentState(),
		Reason:     l.Reason(),
		ReadOnly:   cfg.ReadOnly,
		WriteCache: l.disk.WriteCache(),
		Stats:      l.Stats(),
		Gateway:    l.gatewayInfo(),
		Snapshots:  l.Snapshots(),
	}
}

// SetFabric records where the LUN is exported, for Info.
func (l *LUN) SetFabric(kind, path string) {
	l.infoMu.Lock()
	l.fabric, l.fabricPath = kind, path
	l.infoMu.Unlock()
}

func (l *LUN) setUIO(dev string) {
	l.infoMu.Lock()
	l.uio = dev
	l.infoMu.Unlock()
}

// SetReadOnly makes the LUN write-protected (07/27/00 on writes) or not.
func (l *LUN) SetReadOnly(ro bool) error {
	if !ro && l.be.readOnlyFile() {
		return fmt.Errorf("LUN %s: %s was opened read-only: %w", l.name, l.path, ErrInvalid)
	}
	l.disk.SetReadOnly(ro)
	l.log.Info("read-only changed", "read_only", ro)
	return nil
}

// SetOnline takes the LUN online or offline. Offline, media commands
// fail with NOT READY while INQUIRY still answers.
func (l *LUN) SetOnline(on bool) {
	st := StateOffline
	if on {
		st = StateOnline
	}
	l.disk.SetOnline(on)
	l.state.Store(uint32(st))
	l.log.Info("state changed", "state", st.String())
}

// Flush makes every completed write durable.
func (l *LUN) Flush() error { return l.be.Sync(0, 0) }

// ResetStats zeroes the counters.
func (l *LUN) ResetStats() { l.stats.reset() }

// Resize grows the LUN to size bytes: the file, the kernel's device size
// and the disk's capacity, which raises CAPACITY DATA HAS CHANGED for the
// initiator. Shrinking is refused. Calls are serialized.
func (l *LUN) Resize(size int64) error {
	l.resizeMu.Lock()
	defer l.resizeMu.Unlock()
	bs := int64(l.disk.Config().BlockSize)
	cur := l.Size()
	if l.gateway != nil {
		// Only the owner changes the shared file's size: a standby's
		// ftruncate could cut off what the owner has just grown.
		if err := l.gateway.CheckWrite(); err != nil {
			return fmt.Errorf("LUN %s: resize on a gateway that does not own the file: %w", l.name, err)
		}
	}
	switch {
	case size%bs != 0:
		return fmt.Errorf("LUN %s: size %d is not a multiple of the block size %d: %w", l.name, size, bs, ErrInvalid)
	case size < cur:
		return fmt.Errorf("LUN %s: refusing to shrink from %d to %d bytes: %w", l.name, cur, size, ErrInvalid)
	case size == cur:
		return nil
	}
	st, err := l.be.f.Stat()
	if err != nil {
		return fmt.Errorf("LUN %s: %w", l.name, err)
	}
	if st.Mode().IsRegular() && st.Size() < size {
		if err := l.be.f.Truncate(size); err != nil {
			return fmt.Errorf("LUN %s: grow %s: %w", l.name, l.path, err)
		}
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("LUN %s: %s is not a regular file: %w", l.name, l.path, ErrInvalid)
	}
	if l.resizeHook != nil {
		if err := l.resizeHook(size); err != nil {
			return fmt.Errorf("LUN %s: %w", l.name, err)
		}
	}
	l.be.sizeBytes.Store(size)
	l.disk.SetCapacity(uint64(size / bs))
	l.log.Info("resized", "size", size)
	return nil
}

// Control runs one canonical control line on the LUN: "online",
// "offline", "read-only 0|1", "resize BYTES", "flush", "reset-stats".
func (l *LUN) Control(line string) error {
	c, err := ParseControl(line)
	if err != nil {
		return fmt.Errorf("LUN %s: %w", l.name, err)
	}
	return l.apply(c)
}

// apply runs a parsed LUN control.
func (l *LUN) apply(c Control) error {
	switch c.Op {
	case OpOnline:
		return l.setOnline()
	case OpOffline:
		l.SetOnline(false)
	case OpReadOnly:
		return l.SetReadOnly(c.ReadOnly)
	case OpResize:
		return l.Resize(c.Size)
	case OpFlush:
		return l.Flush()
	case OpResetStats:
		l.ResetStats()
	case OpSnapshot:
		_, err := l.Snapshot(c.Name, c.Size)
		return err
	case OpDeleteSnapshot:
		return l.DeleteSnapshot(c.Name)
	default:
		return fmt.Errorf("LUN %s: control %q manages LUNs, not one: %w", l.name, c.String(), ErrInvalid)
	}
	return nil
}

// Close closes the backing file after a final fdatasync. Call it after
// Serve has returned. When Serve left workers blocked in the backing
// store, the file stays open (its descriptor number is not reused under
// them) and is closed, without the fdatasync that would block too, when
// the last of them returns; Close then returns nil at once.
func (l *LUN) Close() error {
	l.closeSnapshots()
	if l.WorkersStuck() {
		l.log.Warn("backing file stays open until the workers blocked in it return", "path", l.path)
		_, err := l.whenWorkersExit(l.closeFiles)
		return err
	}
	err := l.Flush()
	_, cerr := l.whenWorkersExit(l.closeFiles)
	return errors.Join(err, cerr)
}

// closeFiles closes the backing file's descriptors, and last releases
// its ownership lock: no other exporter may open it while a descriptor
// of this LUN could still write.
func (l *LUN) closeFiles() error {
	var err error
	if l.be.direct != nil {
		err = l.be.direct.Close()
	}
	l.infoMu.Lock()
	hold := l.hold
	l.hold = nil
	l.infoMu.Unlock()
	if l.be.ring != nil {
		err = errors.Join(err, l.be.ring.Close())
	}
	return errors.Join(err, l.be.mm.close(), l.be.f.Close(), hold.Close())
}

// writeRingEntries is the size of a LUN's io_uring (fileBackend.ring):
// its buffered writes take turns (writeTurn), so one is in flight at a
// time; a few more entries cost a page.
const writeRingEntries = 4

// openFlags returns the access mode f was opened with.
func openFlags(f *os.File) (int, error) {
	fl, err := unixFcntlFlags(int(f.Fd()))
	if err != nil {
		return 0, fmt.Errorf("fcntl(F_GETFL) %s: %w", f.Name(), err)
	}
	return fl & syscall.O_ACCMODE, nil
}

func (b *fileBackend) readOnlyFile() bool {
	fl, err := unixFcntlFlags(b.fd)
	return err == nil && fl&syscall.O_ACCMODE == syscall.O_RDONLY
}

// currentState is the stored state, or StateStalled while a command has
// been stuck in the backing store for longer than defaultStalledAfter.
func (l *LUN) currentState() State {
	st := State(l.state.Load())
	l.infoMu.Lock()
	srv := l.srv
	l.infoMu.Unlock()
	if st == StateOnline && srv != nil {
		if _, stuck := srv.stalled(); stuck {
			return StateStalled
		}
	}
	return st
}

func unixFcntlFlags(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
}

var (
	_ tcmu.Handler         = (*server)(nil)
	_ tcmu.ExecutorLimiter = (*server)(nil)
)
