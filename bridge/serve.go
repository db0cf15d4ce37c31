// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/scsi"
	"github.com/lunbridge/lunbridge/tcmu"
)

// SAM status codes (SAM-5 table 39) the bridge completes commands with.
const (
	statusGood           = 0x00
	statusCheckCondition = 0x02
	statusBusy           = 0x08
	statusTaskAborted    = 0x40
)

// defaultWorkerGrace bounds how long Serve waits for the ring's executors
// after the ring has stopped. An executor blocked in a read from a hung
// file system cannot be interrupted; Serve then returns and leaves it
// behind rather than hang the daemon's shutdown.
const defaultWorkerGrace = 10 * time.Second

// inlineMode says which commands the LUN runs as if they cannot block
// (without tcmu.Ring.WillBlock): those run on the executor that took them
// from the ring while another one keeps waiting only if the watchdog
// finds one running long.
type inlineMode uint8

const (
	// inlineAuto: the commands that never touch the file; READ and
	// WRITE when the file lives in memory (tmpfs, ramfs); READ from the
	// page cache (RWF_NOWAIT) when it is on a local page-cache file
	// system (ext4, XFS, Btrfs); none of them with direct I/O. The
	// default.
	inlineAuto inlineMode = iota
	// inlineOff: every command announces that it may block.
	inlineOff
	// inlineAll: READ and WRITE as memory whatever the file system
	// (benchmarks on a null backend).
	inlineAll
	// inlineNowait: READ tried with RWF_NOWAIT whatever the file system
	// (tests and benchmarks).
	inlineNowait
)

// inlineIO is how READ and WRITE run, resolved from the inlineMode for the
// backing file by inlinePolicy.
type inlineIO uint8

const (
	// ioWorkers: READ and WRITE may block (WillBlock first).
	ioWorkers inlineIO = iota
	// ioNowaitReads: READ is tried with scsi.Disk.TryRead (the page
	// cache, RWF_NOWAIT) and announced as blocking only if it would
	// block; WRITE may block.
	ioNowaitReads
	// ioAll: READ and WRITE run from memory (memory-backed files).
	ioAll
)

// server connects one LUN to one ring: it is the ring's Handler.
//
// Scheduling: the ring's executors call Handle, each executing the command
// it took from the ring and completing it on its own goroutine (see
// tcmu.Ring); TMR runs with the ring locked and does not block. Before a
// command that may wait on the backing store, Handle calls WillBlock, so
// that another executor keeps serving the ring meanwhile (see inlineMode).
type server struct {
	l    *LUN
	ring *tcmu.Ring
	ctx  context.Context
	// io is how READ and WRITE run; inlineOn: whether anything runs
	// without WillBlock (see inlineMode).
	io       inlineIO
	inlineOn bool
	// lockThreads: each file operation runs on a thread locked and
	// marked PR_SET_IO_FLUSHER for it (flusherThread; only when the
	// whole process could not be marked).
	lockThreads bool
	// noFlusher is set once the kernel refused PR_SET_IO_FLUSHER.
	noFlusher atomic.Bool
	// epoch is when Serve started; clock counts from it.
	epoch time.Time
	// fails rate-limits the log of failed commands.
	fails failReport
}

// clock returns the monotonic nanoseconds since s.epoch, at least 1. It is
// one clock read where time.Now is two (wall and monotonic): in a guest
// whose clocksource has no vDSO support (hpet) each is a system call, and
// a command takes two readings.
func (s *server) clock() int64 {
	return max(int64(time.Since(s.epoch)), 1)
}

// Serve serves the LUN's SCSI commands from ring until ctx is done or the
// ring fails. It returns the ring's error (nil after a clean stop) once the
// ring has stopped and its executors have returned or a grace period
// (10 s) has passed.
func (l *LUN) Serve(ctx context.Context, ring *tcmu.Ring) error {
	s := &server{
		l:     l,
		ring:  ring,
		ctx:   ctx,
		epoch: time.Now(),
		// With every thread marked (MarkIOFlusher), executors are
		// plain goroutines; otherwise each locks a marked thread.
		lockThreads: !ioFlusherMarked.Load(),
	}
	s.inlineOn, s.io = l.inlinePolicy()
	if s.lockThreads && l.inline == inlineAuto {
		// Only threads marked around the I/O (flusherThread) may
		// write to the file: READ and WRITE never run as memory.
		s.io = ioWorkers
	}
	l.infoMu.Lock()
	l.srv = s
	l.infoMu.Unlock()
	l.stats.ring.serve(ring)
	defer l.stats.ring.serve(nil)
	err := ring.Run(ctx, s)
	if err != nil && !errors.Is(err, context.Canceled) {
		l.state.Store(uint32(StateFailed))
	}
	done := make(chan struct{})
	// Joined through done, or, when Serve leaves stuck executors
	// behind, by the release of what they hold (whenWorkersExit).
	go func() {
		<-ring.Done()
		close(done)
		l.workersExited(done)
	}()
	select {
	case <-done:
	case <-time.After(l.workerGrace):
		if l.leaveBehind(done) {
			l.log.Error("workers still blocked in the backing store after shutdown; leaving them, with the ring mapping and backing file open until they return", "path", l.path)
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// MaxExecutors implements tcmu.ExecutorLimiter: the LUN's workers (the
// commands that may block at once) and one more that waits for the kernel
// meanwhile.
func (s *server) MaxExecutors() int { return s.l.workers + 1 }

// flusherThread, when the process could not be marked an I/O flusher
// (MarkIOFlusher), locks the calling goroutine to its thread and marks
// that thread PR_SET_IO_FLUSHER for the I/O that follows; the returned
// func unlocks it. The mark stays on the thread, which is harmless for
// the goroutines it runs later: they only allocate without starting I/O
// in reclaim.
// If the kernel refuses the mark, it stops trying: nothing is gained by
// locking then.
func (s *server) flusherThread() (unlock func()) {
	if !s.lockThreads || s.noFlusher.Load() {
		return nop
	}
	runtime.LockOSThread()
	if err := tcmu.SetIOFlusher(); err != nil {
		s.noFlusher.Store(true)
		s.l.log.Debug("PR_SET_IO_FLUSHER not set", "err", err)
	}
	return runtime.UnlockOSThread
}

func nop() {}

// inlinePolicy resolves the LUN's inlineMode for this file: whether
// commands run inline at all, and what READ and WRITE do.
func (l *LUN) inlinePolicy() (on bool, io inlineIO) {
	switch l.inline {
	case inlineOff:
		return false, ioWorkers
	case inlineAll:
		return true, ioAll
	case inlineNowait:
		return true, ioNowaitReads
	}
	if l.be == nil || l.be.direct != nil {
		return true, ioWorkers
	}
	switch backingFS(l.be.fd) {
	case fsMemory:
		return true, ioAll
	case fsPageCache:
		return true, ioNowaitReads
	}
	return true, ioWorkers
}

// fsKind classifies the file system of a backing file for inlinePolicy.
type fsKind uint8

const (
	// fsOther: anything that may wait where we cannot tell (FUSE, a
	// network file system, an unknown one), and anything but a regular
	// file: a block device's node lives on devtmpfs, which fstatfs
	// reports as tmpfs whatever the device.
	fsOther fsKind = iota
	// fsMemory: a file system that keeps its files in memory (tmpfs,
	// ramfs): reads and writes never wait on a device. RWF_NOWAIT
	// cannot tell, as tmpfs refuses it (EOPNOTSUPP on Debian's 6.1, as
	// measured in the test VM, and on 6.18).
	fsMemory
	// fsPageCache: a local file system whose buffered reads honour
	// RWF_NOWAIT, a page-cache hit served at once and a miss EAGAIN.
	fsPageCache
)

// backingFS classifies the regular file fd by the type fstatfs gives.
func backingFS(fd int) fsKind {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fsOther
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fsOther
	}
	return fsKindOf(sfs.Type)
}

// fsKindOf classifies a file system by its magic number (statfs f_type).
// Page-cache file systems are a list of those known to honour RWF_NOWAIT
// for buffered reads, not a guess: FUSE (which waits on its server
// whatever the flag), NFS, CIFS/SMB, Ceph, 9p, overlayfs and anything
// unknown are fsOther. ext2 and ext3 share ext4's magic and driver.
func fsKindOf(typ int64) fsKind {
	switch uint32(typ) {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return fsMemory
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC:
		return fsPageCache
	}
	return fsOther
}

// fast reports whether c runs from memory: commands the disk answers from
// memory, and READ and WRITE on a memory-backed file (ioAll). Everything
// else may wait on the backing store.
func (s *server) fast(c *tcmu.Cmd) bool {
	if !s.inlineOn || len(c.CDB) == 0 {
		return false
	}
	switch scsi.Opcode(c.CDB[0]) {
	case scsi.OpTestUnitReady, scsi.OpInquiry, scsi.OpReadCapacity10,
		scsi.OpModeSense6, scsi.OpModeSense10, scsi.OpRequestSense:
		return true
	case scsi.OpServiceActionIn16:
		// READ CAPACITY(16) only: GET LBA STATUS seeks in the file.
		return len(c.CDB) > 1 && c.CDB[1]&0x1f == 0x10
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16,
		scsi.OpWrite6, scsi.OpWrite10, scsi.OpWrite12, scsi.OpWrite16:
		return s.io == ioAll
	}
	return false
}

// isRead reports whether cdb is a READ(6/10/12/16).
func isRead(cdb []byte) bool {
	if len(cdb) == 0 {
		return false
	}
	switch scsi.Opcode(cdb[0]) {
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16:
		return true
	}
	return false
}

// Handle executes c on the ring's executor that took it and completes it.
// A READ on a page-cache file system is first tried without blocking
// (RWF_NOWAIT); a command that may wait on the backing store asks the
// ring first (WillBlock), and if every blocking slot is taken returns
// without having done anything: the ring hands it back later.
func (s *server) Handle(c *tcmu.Cmd) {
	start := s.clock()
	if c.Aborted() {
		s.l.stats.begin()
		s.l.stats.end(KindOther, 0, s.since(start), false, 0)
		s.ring.Complete(c, tcmu.Response{Status: statusTaskAborted})
		return
	}
	if s.io == ioNowaitReads && isRead(c.CDB) {
		// TryRead leaves the disk as it was if it would block; Execute
		// then reads into the buffers again.
		res, err := s.l.disk.TryRead(c.CDB, c.Data)
		if !errors.Is(err, scsi.ErrWouldBlock) {
			s.l.stats.begin()
			s.l.stats.nowaitHits.Add(1)
			s.complete(c, start, res, err)
			return
		}
		if !s.ring.WillBlock(c) {
			return
		}
		s.l.stats.nowaitMisses.Add(1)
	} else if !s.fast(c) && !s.ring.WillBlock(c) {
		return
	}
	s.l.stats.begin()
	unlock := s.flusherThread()
	res, err := s.l.disk.Execute(c.CDB, c.Data)
	unlock()
	s.complete(c, start, res, err)
}

// TMR is called when the kernel aborts commands. The ring has already
// marked them; workers skip the I/O of aborted commands they have not
// started.
func (s *server) TMR(kind tcmu.TMRType, aborted []*tcmu.Cmd) {
	s.l.log.Info("task management", "tmr", kind.String(), "aborted", len(aborted))
}

// MarkIOFlusher marks every thread of the process PR_SET_IO_FLUSHER:
// workers write to a file system on behalf of a block device, and memory
// reclaim must not wait on them (the TCMU/NBD deadlock). The flag lives in
// the task's flags (PF_MEMALLOC_NOIO, PF_LOCAL_THROTTLE), which clone(2)
// copies, so the threads the Go runtime starts later inherit it from the
// marked ones, as tcmu-runner's threads inherit it from its main thread
// (prctl(2): "inherited by a child process created by fork(2)").
//
// It is a process-wide decision, so the program makes it (lunbridge's
// main does, at start); only the first call acts, later ones return its
// result. Until it succeeded, Serve instead locks each worker to a thread
// of its own and marks that thread, which costs a thread hand-off per
// command. syscall.AllThreadsSyscall answers ENOTSUP in a cgo binary.
//
// AllThreadsSyscall runs the prctl on each thread from a signal handler
// and waits for all of them, so it must not run while a thread sleeps
// uninterruptibly on this process: the configfs symlink that exports a
// LUN through tcm_loop blocks (D state) until the kernel's SCSI scan,
// which the LUN's ring must answer, is done. Call it before the first LUN
// has any kernel object.
func MarkIOFlusher() error { return markIOFlusher() }

var (
	markIOFlusher = sync.OnceValue(func() error {
		_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_IO_FLUSHER, 1, 0)
		if errno != 0 {
			return fmt.Errorf("prctl(PR_SET_IO_FLUSHER) on every thread: %w", errno)
		}
		ioFlusherMarked.Store(true)
		return nil
	})
	// ioFlusherMarked is true once MarkIOFlusher succeeded.
	ioFlusherMarked atomic.Bool
)

// since is the time from clock reading start to now.
func (s *server) since(start int64) time.Duration {
	return time.Duration(s.clock() - start)
}

// complete completes c, started at clock reading start, with the outcome
// of its execution.
func (s *server) complete(c *tcmu.Cmd, start int64, res scsi.Result, err error) {
	kind := kindOf(res.Kind)
	var resp tcmu.Response
	var key uint8
	if err != nil {
		se := s.senseFor(err, kind, c.CDB)
		key = uint8(se.Key)
		resp.Status = statusCheckCondition
		resp.Sense = s.l.disk.Sense(make([]byte, 0, 96), se)
	} else if res.DataIn > 0 && res.DataIn < c.DataLen() {
		resp.ShortRead = true
		resp.ReadLen = uint32(res.DataIn)
	}
	s.l.stats.end(kind, uint64(res.Bytes), s.since(start), err != nil, key)
	s.ring.Complete(c, resp)
}

// kindOf maps the disk's classification to the stats kind.
func kindOf(k scsi.Kind) Kind {
	switch k {
	case scsi.KindRead:
		return KindRead
	case scsi.KindWrite:
		return KindWrite
	case scsi.KindSync:
		return KindSync
	case scsi.KindUnmap:
		return KindUnmap
	case scsi.KindWriteSame:
		return KindWriteSame
	case scsi.KindCompareAndWrite:
		return KindCompareAndWrite
	}
	return KindOther
}

// senseFor maps an error from the disk to the sense data the initiator
// gets. It is the one place where backing-store errors become SCSI errors:
// *scsi.Error as is; a file system gone from under the file (lost.go) is
// NOT READY, MANUAL INTERVENTION REQUIRED and takes the LUN offline; a
// full file system is SPACE ALLOCATION FAILED; an I/O
// error or a short transfer is a MEDIUM ERROR; anything else is an
// INTERNAL TARGET FAILURE, logged.
func (s *server) senseFor(err error, kind Kind, cdb []byte) *scsi.Error {
	if se, ok := errors.AsType[*scsi.Error](err); ok {
		return se
	}
	switch {
	case lostErr(err):
		return s.l.backingLost(err)
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		s.logFailure(slog.LevelWarn, "backing store full", cdb, err)
		return scsi.ErrSpaceAllocFailed
	case errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EBADF):
		s.logFailure(slog.LevelWarn, "backing store not writable", cdb, err)
		return scsi.ErrWriteProtected
	case errors.Is(err, syscall.EIO) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrShortWrite):
		s.logFailure(slog.LevelWarn, "backing store I/O error", cdb, err)
		if kind == KindRead {
			return scsi.ErrMediumReadError
		}
		return scsi.ErrMediumWriteError
	}
	s.logFailure(slog.LevelError, "command failed", cdb, err)
	return scsi.ErrInternalTargetFailure
}

// failReportEvery is the most often a LUN reports failing commands above
// Debug: a storm of failures (a backing store gone) must not flood the log.
const failReportEvery = 10 * time.Second

// failReport counts a LUN's failed commands between two reports.
type failReport struct {
	mu   sync.Mutex
	next time.Time // protected by mu: no report before this
	n    uint64    // protected by mu: failures since the last report
}

// logFailure logs a failed command at Debug, and at level at most once
// per failReportEvery per LUN, with the number of failures since the
// previous report ("failed").
func (s *server) logFailure(level slog.Level, msg string, cdb []byte, err error) {
	log := s.l.log
	if log.Enabled(s.ctx, slog.LevelDebug) {
		log.Debug(msg, "op", opName(cdb), "err", err)
	}
	now := time.Now()
	f := &s.fails
	f.mu.Lock()
	f.n++
	if now.Before(f.next) {
		f.mu.Unlock()
		return
	}
	n := f.n
	f.n, f.next = 0, now.Add(failReportEvery)
	f.mu.Unlock()
	log.Log(s.ctx, level, msg, "op", opName(cdb), "err", err, "failed", n, "every", failReportEvery)
}

func opName(cdb []byte) string {
	if len(cdb) == 0 {
		return "none"
	}
	return scsi.Opcode(cdb[0]).String()
}

// defaultStalledAfter is how long a worker may sit in one command before
// the LUN reports itself stalled: the backing store has stopped answering.
const defaultStalledAfter = 10 * time.Second

// stalled reports the age of the oldest command an executor is running,
// and whether it exceeds the LUN's stall threshold.
func (s *server) stalled() (time.Duration, bool) {
	oldest := s.ring.Oldest()
	return oldest, oldest > s.l.stalledAfter
}
