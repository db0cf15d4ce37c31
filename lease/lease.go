// SPDX-License-Identifier: Apache-2.0

package lease

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/scsi"
)

// Defaults of Config (docs/scale-out.md).
const (
	DefaultValidity = 5 * time.Second
	DefaultPoll     = 500 * time.Millisecond
	DefaultHoldDown = 10 * time.Second
)

// Member is one gateway of a LUN: its target port group and the relative
// target port identifier of its one target port.
type Member struct {
	Group        uint16
	RelativePort uint16
}

// Config describes this gateway's place in a LUN's gateway group.
type Config struct {
	// Path is the sidecar file, conventionally the backing file's path
	// plus ".lease", on the same shared file system. It is created if
	// missing.
	Path string
	// Self is this gateway; Peers are the others. Group ids and relative
	// port ids must be unique across all of them; port 0 is reserved.
	Self  Member
	Peers []Member
	// Validity is how long a successful read of the sidecar lets the
	// owner acknowledge writes, and how long a new owner waits before its
	// first write (default DefaultValidity).
	Validity time.Duration
	// Poll is the interval of sidecar reads and lock attempts (default
	// DefaultPoll); it must be well below Validity.
	Poll time.Duration
	// HoldDown is the least time an owner keeps the LUN before it hands
	// it over on a request, and the time a gateway that handed over
	// waits before it competes again (default DefaultHoldDown).
	HoldDown time.Duration
	// DrainTimeout bounds Drain (default Validity). A drain that has
	// not finished by then (a write stuck in a hung file system client)
	// makes the owner fence itself hard: it stops acknowledging under
	// its epoch for good and releases the lock, so another gateway can
	// serve.
	DrainTimeout time.Duration
	// Drain, if set, is called before the owner gives the LUN up
	// (handover, shutdown): it returns when no write is in flight and the
	// backing file is synced. If it fails before its deadline (the sync
	// failed), the gateway keeps the lock and reports unavailable: another
	// gateway must not serve a file that lacks acknowledged writes.
	Drain func(ctx context.Context) error
	// OnChange, if set, is called by Run when the local state changes
	// (raise the unit attention; drop the page cache when becoming
	// active). For active/optimized it is called before the state is
	// visible to State and CheckWrite, and an error keeps the gateway
	// transitioning until the next poll tries again; for other states it
	// is called after, and an error is only logged. It must not call back
	// into the Lease's Run.
	OnChange func(scsi.AccessState) error
	// Clock is the time base (default CLOCK_BOOTTIME with the wall clock
	// as pause detector); tests inject a ManualClock.
	Clock Clock
	// Logger receives transitions (Info) and sidecar errors (Warn, once
	// per streak); nil discards.
	Logger *slog.Logger
}

// Status is a snapshot of a gateway's view, for the FUSE view and
// metrics.
type Status struct {
	// State is the local target port group's state.
	State scsi.AccessState
	// Owner says this gateway owns the LUN and may acknowledge writes.
	Owner bool
	// Epoch is this gateway's epoch while it owns the LUN, else the
	// last epoch it read.
	Epoch uint64
	// OwnerGroup is the owner's group according to the last read of the
	// sidecar; OwnerKnown is false if there is no owner.
	OwnerGroup uint16
	OwnerKnown bool
	// Acquired, Fenced and Released count this gateway's takeovers,
	// fencings and voluntary releases since Open.
	Acquired, Fenced, Released uint64
}

// Lease is one gateway's side of the ownership protocol of one LUN.
type Lease struct {
	cfg   Config
	log   *slog.Logger
	f     *os.File // the sidecar: this gateway's open file description
	nonce [16]byte
	clk   Clock

	// beat is the last sample of both clocks taken by Run; pauses counts
	// the pauses seen (a step of the wall clock against Now).
	beat   atomic.Pointer[clockSample]
	pauses atomic.Uint64
	// broken is set when a drain failed to sync: the LUN is unavailable
	// until the daemon restarts, and this gateway keeps the lock.
	broken atomic.Bool
	// lost is set when this gateway's file system client lost the
	// backing file or the sidecar (Lost): the LUN is unavailable here
	// until the daemon restarts, and Run gives the lock up.
	lost atomic.Bool

	phase      atomic.Uint32 // scsi.AccessState, as set by Run
	epoch      atomic.Uint64
	validUntil atomic.Int64 // time.Duration since base
	refused    atomic.Bool
	acquired   atomic.Uint64
	fenced     atomic.Uint64
	released   atomic.Uint64

	viewMu sync.Mutex
	// owner is the owner record read last; ownerOK says it was valid
	// and held. Protected by viewMu.
	owner   record
	ownerOK bool

	// Fields used by Run's goroutine only.
	held           bool
	acquiredAt     time.Duration
	lastReq        uint64
	pendingReq     bool
	noAcquireUntil time.Duration
	ioFailing      bool

	// drains joins the goroutines of drain.
	drains sync.WaitGroup

	// abandon, closed by tests, makes Run return at once without
	// releasing anything: a killed process.
	abandon chan struct{}
	// failReads, set by tests, makes every sidecar read fail: a gateway
	// cut off from the file system.
	failReads atomic.Bool
	// failWith, set by tests, makes every sidecar read fail with that
	// error, as from the file system.
	failWith atomic.Pointer[error]
}

var _ scsi.ALUA = (*Lease)(nil)

// Open validates cfg, opens (or creates) the sidecar and returns a Lease
// in standby. Run does the rest.
func Open(cfg Config) (*Lease, error) {
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.HoldDown == 0 {
		cfg.HoldDown = DefaultHoldDown
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = cfg.Validity
	}
	if cfg.Clock == nil {
		cfg.Clock = bootClock{}
	}
	if cfg.Poll <= 0 || cfg.Validity < 2*cfg.Poll || cfg.HoldDown < 0 {
		return nil, fmt.Errorf("lease: validity %v must be at least twice the poll interval %v", cfg.Validity, cfg.Poll)
	}
	groups := map[uint16]bool{}
	ports := map[uint16]bool{0: true}
	for _, m := range append([]Member{cfg.Self}, cfg.Peers...) {
		if groups[m.Group] || ports[m.RelativePort] {
			return nil, fmt.Errorf("lease: member %d/%d: group and relative port ids must be unique, and port 0 is reserved", m.Group, m.RelativePort)
		}
		groups[m.Group], ports[m.RelativePort] = true, true
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lease: open sidecar: %w", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < sidecarLen {
		if err == nil {
			err = f.Truncate(sidecarLen)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lease: sidecar %s: %w", cfg.Path, err)
		}
	}
	l := &Lease{cfg: cfg, log: cfg.Logger, f: f, clk: cfg.Clock, abandon: make(chan struct{})}
	l.beat.Store(l.sample())
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With("path", cfg.Path)
	if _, err := rand.Read(l.nonce[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("lease: nonce: %w", err)
	}
	l.phase.Store(uint32(scsi.StateStandby))
	return l, nil
}

// Close closes the sidecar of a Lease whose Run was never called (Run
// closes it itself).
func (l *Lease) Close() error { return l.f.Close() }

// Bind sets Config.Drain and Config.OnChange, for a LUN built after the
// Lease (it implements bridge.Gateway's Bind). Call it before Run.
func (l *Lease) Bind(drain func(context.Context) error, changed func(scsi.AccessState) error) {
	l.cfg.Drain, l.cfg.OnChange = drain, changed
}

// now is the time of the Lease's clock.
func (l *Lease) now() time.Duration { return l.clk.Now() }

// clockSample is a reading of both clocks.
type clockSample struct{ now, wall time.Duration }

func (l *Lease) sample() *clockSample {
	return &clockSample{now: l.clk.Now(), wall: l.clk.Wall()}
}

// jumpLimit is how far the wall clock may move against Now between two
// samples before that counts as a pause. An undetected pause shorter
// than this extends an owner's validity by as much, so the takeover
// delay is Validity plus jumpLimit.
func (l *Lease) jumpLimit() time.Duration { return l.cfg.Poll / 2 }

// pausedSince reports whether the wall clock moved against Now by more
// than jumpLimit since sample b: the machine was paused (a stopped
// virtual machine whose wall clock was then set right) or the wall clock
// was stepped. Either way, time as Now counts it cannot be trusted.
func (l *Lease) pausedSince(b *clockSample) bool {
	s := l.sample()
	return ((s.wall - b.wall) - (s.now - b.now)).Abs() > l.jumpLimit()
}

// heartbeat samples the clocks; on a pause it ends the validity at once
// and counts the pause, so that no read that started before it can
// restore validity (renew). Run calls it every poll and before and after
// every sidecar read.
func (l *Lease) heartbeat() {
	if l.pausedSince(l.beat.Load()) {
		l.pauses.Add(1)
		l.validUntil.Store(0)
		l.log.Warn("lease: the wall clock jumped against the boot clock (a paused machine?); validity ended until the next read of the sidecar")
	}
	l.beat.Store(l.sample())
}

// Local implements scsi.ALUA. The implicit transition time is what a
// takeover takes after the lock is free: a poll and the takeover delay.
func (l *Lease) Local() scsi.LocalPort {
	secs := (l.cfg.Validity + l.cfg.Poll + time.Second - 1) / time.Second
	return scsi.LocalPort{Group: l.cfg.Self.Group, RelativePort: l.cfg.Self.RelativePort, TransitionSecs: uint8(min(secs, 255))}
}

// State implements scsi.ALUA: Run's state, except that an owner whose
// validity has run out is transitioning until its next successful read.
func (l *Lease) State() scsi.AccessState {
	if l.broken.Load() || l.lost.Load() {
		return scsi.StateUnavailable
	}
	s := scsi.AccessState(l.phase.Load())
	if s == scsi.StateActiveOptimized && !l.valid() {
		return scsi.StateTransitioning
	}
	return s
}

// valid reports whether the owner's validity has not run out, and no
// pause happened since Run last sampled the clocks (Run may not have run
// yet after a resume: this check does not wait for it).
func (l *Lease) valid() bool {
	return l.now() < time.Duration(l.validUntil.Load()) && !l.pausedSince(l.beat.Load())
}

// FileGone reports whether err says that the file system is gone from
// under an open file: its FUSE client died (every call answers ENOTCONN,
// calls in flight ECONNABORTED), or the server no longer knows the file
// handle (ESTALE), or the device went (ENODEV). The descriptor is dead
// for good, even once the file system is back (a new mount is a new file
// system).
func FileGone(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.ESTALE) || errors.Is(err, syscall.ENODEV)
}

// errLost is Run's error after the gateway lost its file.
var errLost = errors.New("lease: this gateway lost the backing file or its sidecar (its file system client failed) and fenced itself; restart it on a working mount to rejoin")

// Lost tells the gateway that its file system client lost the backing
// file (an error FileGone accepts, from the LUN's I/O or the sidecar's):
// this gateway can neither write the file nor renew its ownership, now
// or after the file system is mounted again. It fences itself at once:
// nothing more is acknowledged or read under its epoch, its state is
// unavailable until the daemon restarts, and Run gives the lock up
// (after the writes in flight, bounded by DrainTimeout) so that another
// gateway takes over. Lost returns the sense to complete the failed
// command with: 02/04/0C, which Linux fails as a path error, so that
// dm-multipath retries the I/O on another path. A MEDIUM or HARDWARE
// ERROR would reach the application instead.
func (l *Lease) Lost(err error) error {
	l.validUntil.Store(0)
	if !l.lost.Swap(true) {
		l.log.Error("lease: the backing file is lost on this gateway; fenced: unavailable until the daemon restarts", "err", err)
	}
	return scsi.ErrALUAUnavailable
}

// Refused implements scsi.ALUA: an initiator sent I/O to this standby
// gateway. Run writes a request record on its next poll.
func (l *Lease) Refused() { l.refused.Store(true) }

// CheckWrite reports whether this gateway may acknowledge a write now:
// nil if it owns the LUN and its validity has not run out, else the
// sense to complete the write with (02/04/0A or 02/04/0B).
func (l *Lease) CheckWrite() error {
	switch l.State() {
	case scsi.StateActiveOptimized:
		return nil
	case scsi.StateStandby:
		return scsi.ErrALUAStandby
	case scsi.StateUnavailable:
		return scsi.ErrALUAUnavailable
	}
	return scsi.ErrALUATransitioning
}

// CheckRead reports whether data read from the backing file may be
// returned now: as CheckWrite. A read that finishes after the validity
// ended may return data older than what a new owner has acknowledged
// since.
func (l *Lease) CheckRead() error { return l.CheckWrite() }

// PortGroups implements scsi.ALUA: every member's group in id order. The
// local group has the local state; the owner's group, per the last read
// of the sidecar, is active/optimized and preferred; the others are
// standby while there is an owner and unavailable while there is none.
func (l *Lease) PortGroups() []scsi.PortGroup {
	l.viewMu.Lock()
	owner, ok := l.owner, l.ownerOK
	l.viewMu.Unlock()
	local := l.State()
	members := append([]Member{l.cfg.Self}, l.cfg.Peers...)
	slices.SortFunc(members, func(a, b Member) int { return int(a.Group) - int(b.Group) })
	gs := make([]scsi.PortGroup, 0, len(members))
	for _, m := range members {
		g := scsi.PortGroup{ID: m.Group, Implicit: true, Ports: []uint16{m.RelativePort}}
		switch {
		case m == l.cfg.Self:
			g.State = local
			g.Preferred = local == scsi.StateActiveOptimized
		case l.lost.Load():
			// A lost gateway cannot tell who owns the LUN now; its last
			// view (often "we do") would make Linux's scsi_dh_alua,
			// which takes every group's state from any path's answer,
			// refuse the path of the gateway taking over. Transitioning
			// lets I/O go there, and that gateway's own answer counts.
			g.State = scsi.StateTransitioning
		case ok && owner.group == m.Group:
			g.State, g.Preferred = scsi.StateActiveOptimized, true
		case ok || local == scsi.StateActiveOptimized:
			g.State = scsi.StateStandby
		default:
			g.State = scsi.StateUnavailable
		}
		gs = append(gs, g)
	}
	return gs
}

// Status returns a snapshot of the gateway's view.
func (l *Lease) Status() Status {
	l.viewMu.Lock()
	owner, ok := l.owner, l.ownerOK
	l.viewMu.Unlock()
	s := l.State()
	return Status{
		State:      s,
		Owner:      s == scsi.StateActiveOptimized,
		Epoch:      l.epoch.Load(),
		OwnerGroup: owner.group,
		OwnerKnown: ok,
		Acquired:   l.acquired.Load(),
		Fenced:     l.fenced.Load(),
		Released:   l.released.Load(),
	}
}

// Run plays the protocol until ctx is done, then gives the LUN up if it
// owns it and closes the sidecar. It returns the errors of that release.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.Poll)
	defer t.Stop()
	for {
		l.heartbeat()
		l.tick(ctx)
		select {
		case <-ctx.Done():
			var err error
			if l.held {
				err = l.release(context.WithoutCancel(ctx))
			}
			if l.broken.Load() {
				err = errors.Join(err, errBroken)
			}
			if l.lost.Load() {
				err = errors.Join(err, errLost)
			}
			l.drains.Wait()
			return errors.Join(err, l.f.Close())
		case <-l.abandon:
			return l.f.Close()
		case <-t.C:
		}
	}
}

// tick is one poll: renew or check ownership, or try to take it.
func (l *Lease) tick(ctx context.Context) {
	if l.lost.Load() {
		l.giveUpLost(ctx)
		return
	}
	if l.broken.Load() {
		return // keep the lock, serve nothing
	}
	if l.held {
		l.renew(ctx)
		return
	}
	if l.now() >= l.noAcquireUntil && l.tryLock() {
		l.acquire()
		return
	}
	_, req, err := l.read()
	if err != nil {
		return
	}
	if !l.refused.Swap(false) || l.now() < l.noAcquireUntil {
		return
	}
	r := record{seq: req.seq + 1, group: l.cfg.Self.Group, nonce: l.nonce}
	if err := l.write(requestOff, r.encode(requestMagic)); err != nil {
		l.ioError("write request", err)
		return
	}
	l.log.Info("lease: asked the owner to hand over", "group", l.cfg.Self.Group)
}

// acquire runs with the lock just taken: bump the epoch and start the
// takeover delay.
func (l *Lease) acquire() {
	owner, req, err := l.read()
	if err != nil && !errors.Is(err, errNoRecord) {
		l.unlock()
		return
	}
	epoch := max(owner.seq, l.epoch.Load()) + 1
	r := record{seq: epoch, group: l.cfg.Self.Group, held: true, nonce: l.nonce}
	if err := l.write(ownerOff, r.encode(ownerMagic)); err != nil {
		l.ioError("write owner record", err)
		l.unlock()
		return
	}
	// The takeover delay counts from when the new epoch is durable: a
	// previous owner's last confirming read was served before that, so
	// its validity ends less than Validity after it.
	bumped := l.now()
	l.epoch.Store(epoch)
	l.held, l.acquiredAt, l.lastReq, l.pendingReq = true, bumped, req.seq, false
	l.validUntil.Store(0) // transitioning: nothing to acknowledge yet
	l.setView(r, true)
	l.acquired.Add(1)
	l.log.Info("lease: acquired; waiting out the takeover delay", "epoch", epoch, "previous_group", owner.group)
	l.setPhase(scsi.StateTransitioning)
}

// renew runs while the lock is held: confirm the epoch (or find out we
// were fenced), end the takeover delay, and act on requests.
func (l *Lease) renew(ctx context.Context) {
	l.heartbeat()
	pauses := l.pauses.Load()
	t0 := l.now()
	owner, req, err := l.read()
	if err != nil && !errors.Is(err, errNoRecord) {
		return // validity runs out by itself
	}
	l.heartbeat()
	if err != nil || owner.seq != l.epoch.Load() || owner.nonce != l.nonce || !owner.held {
		// Another gateway took the lock and bumped the epoch (or the
		// record is torn, which only a writer that crashed can do):
		// we were fenced.
		l.held = false
		l.unlock()
		l.fenced.Add(1)
		l.log.Warn("lease: fenced: the sidecar has another owner", "epoch", l.epoch.Load(), "sidecar_epoch", owner.seq, "owner_group", owner.group)
		l.setPhase(scsi.StateStandby)
		return
	}
	if l.pauses.Load() != pauses {
		// The read may have been served before a pause that another
		// gateway used to take over: it proves nothing now.
		return
	}
	l.validUntil.Store(int64(t0 + l.cfg.Validity))
	if scsi.AccessState(l.phase.Load()) == scsi.StateTransitioning && t0-l.acquiredAt >= l.cfg.Validity+l.jumpLimit() {
		if err := l.prepareActive(); err != nil {
			l.log.Warn("lease: not yet the owner", "err", err)
		} else {
			l.log.Info("lease: owner", "epoch", owner.seq)
			l.setPhase(scsi.StateActiveOptimized)
		}
	}
	if req.seq != l.lastReq {
		l.lastReq = req.seq
		if req.nonce != l.nonce {
			l.pendingReq = true
		}
	}
	if l.pendingReq && t0-l.acquiredAt >= l.cfg.HoldDown {
		l.log.Info("lease: handing over on request", "to_group", req.group)
		if err := l.release(ctx); err != nil {
			l.log.Warn("lease: handover", "err", err)
		}
		l.noAcquireUntil = l.now() + l.cfg.HoldDown
	}
}

// giveUpLost runs on every poll once the gateway is lost (Lost): it waits
// for the writes in flight (Drain, bounded by DrainTimeout; its sync
// fails on a lost file, and nothing it could sync is acknowledged any
// more), then releases the lock: on a dead client the servers dropped it
// already, on a file gone stale under a live client this lets the next
// owner in. It writes nothing to the sidecar, which is lost too.
func (l *Lease) giveUpLost(ctx context.Context) {
	if l.held {
		l.setPhase(scsi.StateUnavailable)
		if err := l.drain(ctx); err != nil {
			l.log.Warn("lease: lost gateway: drain before giving the lock up", "err", err)
		}
		l.held = false
		l.unlock()
		l.fenced.Add(1)
		l.setView(record{}, false)
		l.log.Warn("lease: lost gateway: lock given up", "epoch", l.epoch.Load())
	}
	l.setPhase(scsi.StateUnavailable)
}

// errBroken is Run's error after a drain failed to sync.
var errBroken = errors.New("lease: a drain failed to sync the backing file; the LUN stays unavailable")

// release gives the LUN up: transitioning, drain (bounded by
// DrainTimeout), "released" if the sidecar still says this gateway owns
// the LUN, unlock, standby. A drain that fails before its deadline makes
// the LUN unavailable instead, and keeps the lock.
func (l *Lease) release(ctx context.Context) error {
	l.setPhase(scsi.StateTransitioning)
	var errs []error
	if err := l.drain(ctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			// The sync failed: acknowledged writes may be missing from
			// the file. Serving it from another gateway would lose them
			// silently; being unavailable says so.
			l.broken.Store(true)
			l.validUntil.Store(0)
			l.log.Error("lease: drain failed; the LUN is unavailable until the daemon restarts", "err", err)
			l.setPhase(scsi.StateUnavailable)
			return fmt.Errorf("lease: drain: %w", err)
		}
		// Stuck: fence hard. Nothing is acknowledged under this epoch
		// any more (validity ends below and the phase never returns to
		// active/optimized without a new epoch); what is stuck fails its
		// after-check when it returns.
		l.log.Error("lease: drain timed out; fencing this gateway and releasing the lock", "err", err)
		errs = append(errs, fmt.Errorf("lease: drain: %w", err))
	}
	l.validUntil.Store(0)
	r := record{seq: l.epoch.Load(), group: l.cfg.Self.Group, nonce: l.nonce}
	if err := l.stillOwner(); err != nil {
		l.fenced.Add(1)
		l.log.Warn("lease: not writing the released record", "err", err)
	} else if err := l.write(ownerOff, r.encode(ownerMagic)); err != nil {
		errs = append(errs, err)
	}
	l.held = false
	l.unlock()
	l.setView(r, false)
	l.released.Add(1)
	l.setPhase(scsi.StateStandby)
	return errors.Join(errs...)
}

// drain runs Config.Drain with the DrainTimeout deadline, and returns at
// the deadline even if Drain does not (a sync stuck in the file system
// client cannot be interrupted). The drain goroutine is joined by Run
// before it returns.
func (l *Lease) drain(ctx context.Context) error {
	if l.cfg.Drain == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.DrainTimeout)
	defer cancel()
	done := make(chan error, 1)
	l.drains.Add(1)
	go func() {
		defer l.drains.Done()
		done <- l.cfg.Drain(ctx)
	}()
	select {
	case err := <-done:
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("drain still running after %v: %w", l.cfg.DrainTimeout, context.DeadlineExceeded)
	}
}

// stillOwner checks, before release writes "released", that this
// gateway still holds the lock and the sidecar still carries its epoch:
// a gateway fenced without noticing must not overwrite a newer owner's
// record.
func (l *Lease) stillOwner() error {
	if !l.tryLock() {
		return errors.New("another gateway holds the lock")
	}
	owner, _, err := l.read()
	if err != nil {
		return err
	}
	if owner.seq != l.epoch.Load() || owner.nonce != l.nonce || !owner.held {
		return fmt.Errorf("the sidecar has epoch %d of group %d", owner.seq, owner.group)
	}
	return nil
}

// prepareActive runs OnChange(active/optimized) before that state is
// visible, so that the LUN drops what it cached before commands can use
// it.
func (l *Lease) prepareActive() error {
	if l.cfg.OnChange == nil {
		return nil
	}
	return l.cfg.OnChange(scsi.StateActiveOptimized)
}

// setPhase changes Run's state and tells OnChange (for active/optimized,
// prepareActive did before).
func (l *Lease) setPhase(s scsi.AccessState) {
	if scsi.AccessState(l.phase.Swap(uint32(s))) != s && l.cfg.OnChange != nil && s != scsi.StateActiveOptimized {
		if err := l.cfg.OnChange(s); err != nil {
			l.log.Warn("lease: state change", "state", s, "err", err)
		}
	}
}

func (l *Lease) setView(owner record, ok bool) {
	l.viewMu.Lock()
	l.owner, l.ownerOK = owner, ok
	l.viewMu.Unlock()
}

// read reads both records, past any page cache of the sidecar. A missing
// or torn owner record gives errNoRecord (with the request record still
// valid); I/O errors are logged once per streak.
func (l *Lease) read() (owner, req record, err error) {
	// Drop clean cached pages first, so that the read asks the file
	// system (a FUSE client keeps pages otherwise).
	_ = unix.Fadvise(int(l.f.Fd()), 0, 0, unix.FADV_DONTNEED)
	b := make([]byte, sidecarLen)
	if l.failReads.Load() {
		err := errors.New("injected failure")
		l.ioError("read", err)
		return record{}, record{}, err
	}
	if p := l.failWith.Load(); p != nil {
		err := *p
		l.ioError("read", err)
		l.ioFailed(err)
		return record{}, record{}, fmt.Errorf("lease: read sidecar: %w", err)
	}
	if _, err := l.f.ReadAt(b, 0); err != nil {
		l.ioError("read", err)
		l.ioFailed(err)
		return record{}, record{}, fmt.Errorf("lease: read sidecar: %w", err)
	}
	l.ioFailing = false
	req, _ = decode(b[requestOff:], requestMagic)
	owner, err = decode(b[ownerOff:], ownerMagic)
	l.setView(owner, err == nil && owner.held)
	if err == nil && !l.held {
		l.epoch.Store(owner.seq)
	}
	return owner, req, err
}

// ioFailed ends the validity at once after a failed read or write of the
// sidecar that says this gateway's client is in trouble, rather than
// letting it run out: a lost file (FileGone) fences the gateway for good
// (Lost), an I/O error until the next read that succeeds. Other errors
// (an injected one in tests) leave the validity to run out.
func (l *Lease) ioFailed(err error) {
	switch {
	case FileGone(err):
		l.Lost(err)
	case errors.Is(err, syscall.EIO):
		l.validUntil.Store(0)
	}
}

// write writes one record and makes it durable.
func (l *Lease) write(off int64, b []byte) error {
	if _, err := l.f.WriteAt(b, off); err != nil {
		l.ioFailed(err)
		return fmt.Errorf("lease: write sidecar: %w", err)
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		l.ioFailed(err)
		return fmt.Errorf("lease: sync sidecar: %w", err)
	}
	return nil
}

func (l *Lease) ioError(what string, err error) {
	if !l.ioFailing {
		l.log.Warn("lease: sidecar "+what, "err", err)
	}
	l.ioFailing = true
}

// tryLock takes the OFD write lock on the sidecar's lock byte without
// waiting.
func (l *Lease) tryLock() bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: lockOffset, Len: 1}
	err := unix.FcntlFlock(l.f.Fd(), unix.F_OFD_SETLK, &lk)
	if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		l.ioError("lock", err)
		if FileGone(err) {
			l.Lost(err)
		}
	}
	return err == nil
}

func (l *Lease) unlock() {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: lockOffset, Len: 1}
	if err := unix.FcntlFlock(l.f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		l.ioError("unlock", err)
	}
}
