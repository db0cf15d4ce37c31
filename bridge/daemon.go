// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/lunbridge/lunbridge/scsi"
	"github.com/lunbridge/lunbridge/tcmu"
)

// ExportSpec says how a LUN is offered to initiators. LUNs whose specs
// name the same iSCSI target must agree on everything but nothing else
// (the kernel side refuses a conflict).
type ExportSpec struct {
	Fabric     string   // "loop", "iscsi" or "none"
	IQN        string   // iSCSI target name; empty: derived
	Portal     string   // iSCSI portal ADDR:PORT; empty: 0.0.0.0:3260
	Initiators []string // iSCSI ACL; empty: nobody (see AllowAnyInitiator)
	// AllowAnyInitiator opens an iSCSI target to every initiator.
	AllowAnyInitiator bool
	CHAPUser          string // iSCSI CHAP user; empty: no CHAP
	CHAPPassword      string // never logged
	// MutualUser and MutualPassword (never logged) are the target's own
	// credentials for mutual CHAP.
	MutualUser     string
	MutualPassword string
}

// Device is a LUN's presence in the kernel: its TCMU device and fabric
// export. Kernel.Attach creates it; the daemon serves Ring, then calls
// Export; on removal it calls Unexport, stops the ring, then Remove.
type Device interface {
	Ring() *tcmu.Ring
	UIO() string // "/dev/uioN"
	// Export wires the LUN to its fabric. The ring is being served when it
	// is called (the kernel scans the new disk through it).
	Export(ctx context.Context) (fabric, where string, err error)
	Unexport(ctx context.Context) error
	// Resize changes the kernel's idea of the device size.
	Resize(size int64) error
	// Remove tears the device down after the ring has stopped.
	Remove() error
}

// Kernel creates Devices: configfs and UIO in production, an in-process
// ring in tests.
type Kernel interface {
	Attach(ctx context.Context, l *LUN, spec ExportSpec) (Device, error)
}

// FabricStopper is a Kernel that can stop serving initiators as a
// whole, before its LUNs are unexported one by one: Daemon.Close calls
// StopFabrics first, so that initiators see a path fail (and a
// multipath initiator retries on another gateway) rather than LUNs
// vanishing under their sessions.
type FabricStopper interface {
	StopFabrics(ctx context.Context) error
}

// DaemonOptions configure a Daemon.
type DaemonOptions struct {
	Kernel Kernel
	Logger *slog.Logger
	// Defaults fill the Options of LUNs exported through Control.
	Defaults Options
	// DefaultSpec is the export of LUNs added through Control.
	DefaultSpec ExportSpec
	// OnChange is called after a LUN was added or removed (the FUSE view
	// refreshes its directories). It must not call back into the Daemon
	// synchronously with a lock held.
	OnChange func()
}

// Daemon runs a set of LUNs: it attaches, serves, exports and removes them.
// It implements the LUNs interface of the FUSE view.
type Daemon struct {
	opts DaemonOptions
	log  *slog.Logger
	// base is the context of every LUN's Serve: LUNs outlive the request
	// that added them and stop when the daemon does.
	base   context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	luns map[string]*served // protected by mu; nil entry: being added
	wg   sync.WaitGroup     // Serve goroutines
}

// served is one LUN being served.
type served struct {
	lun    *LUN
	dev    Device
	spec   ExportSpec
	cancel context.CancelFunc
	done   chan error // receives Serve's result, once
}

// NewDaemon returns a Daemon with no LUNs.
func NewDaemon(opts DaemonOptions) *Daemon {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Daemon{opts: opts, log: log, base: base, cancel: cancel, luns: map[string]*served{}}
}

// Add opens o's backing file, attaches it to the kernel, serves it and
// exports it. On failure it undoes what it did.
func (d *Daemon) Add(ctx context.Context, o Options, spec ExportSpec) (LUNInfo, error) {
	if err := ValidName(o.Name); err != nil {
		return LUNInfo{}, err
	}
	d.mu.Lock()
	if d.luns == nil {
		d.mu.Unlock()
		return LUNInfo{}, fmt.Errorf("add %s: %w", o.Name, ErrClosed)
	}
	if _, ok := d.luns[o.Name]; ok {
		d.mu.Unlock()
		return LUNInfo{}, fmt.Errorf("add %s: %w", o.Name, ErrExists)
	}
	d.luns[o.Name] = nil // reserve the name
	d.mu.Unlock()

	s, err := d.start(ctx, o, spec)
	d.mu.Lock()
	closed := d.luns == nil
	if err != nil || closed {
		delete(d.luns, o.Name)
	} else {
		d.luns[o.Name] = s
	}
	d.mu.Unlock()
	if err != nil {
		return LUNInfo{}, err
	}
	if closed { // the daemon closed while we were adding
		return LUNInfo{}, errors.Join(fmt.Errorf("add %s: %w", o.Name, ErrClosed), d.stop(ctx, s, true))
	}
	d.changed()
	return s.lun.Info(), nil
}

func (d *Daemon) start(ctx context.Context, o Options, spec ExportSpec) (*served, error) {
	if o.Logger == nil {
		o.Logger = d.log
	}
	if o.Peers == nil {
		o.Peers = d.peer
	}
	l, err := Open(o)
	if err != nil {
		return nil, err
	}
	dev, err := d.opts.Kernel.Attach(ctx, l, spec)
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.setUIO(dev.UIO())
	l.resizeHook = dev.Resize
	sctx, cancel := context.WithCancel(d.base)
	s := &served{lun: l, dev: dev, spec: spec, cancel: cancel, done: make(chan error, 1)}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := l.Serve(sctx, dev.Ring())
		if err != nil {
			// Reported when the LUN fails; Remove returns it too, to
			// whoever removes the failed LUN.
			d.log.Error("LUN stopped serving", "lun", l.name, "err", err)
		}
		s.done <- err
	}()
	fab, where, err := dev.Export(ctx)
	if err != nil {
		return nil, errors.Join(err, d.stop(context.WithoutCancel(ctx), s, false))
	}
	l.SetFabric(fab, where)
	l.log.Info("exported", "fabric", fab, "where", where, "path", l.path)
	return s, nil
}

// stop unexports (when exported), stops serving and removes the device.
func (d *Daemon) stop(ctx context.Context, s *served, exported bool) error {
	var errs []error
	if exported {
		if err := s.dev.Unexport(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.cancel()
	if err := <-s.done; err != nil {
		errs = append(errs, err)
	}
	// Workers Serve gave up on may still hold slices of the ring mapping:
	// the device (and its mapping) goes when they return (lifetime.go).
	if now, err := s.lun.whenWorkersExit(s.dev.Remove); !now {
		s.lun.log.Warn("TCMU device stays until the workers blocked in the backing store return")
	} else if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.lun.Close())
	return errors.Join(errs...)
}

// peer finds the disk with the NAA designator id among the daemon's LUNs,
// for EXTENDED COPY between them.
func (d *Daemon) peer(id []byte) (*scsi.Disk, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.luns {
		if s == nil {
			continue
		}
		naa := s.lun.disk.Config().NAA
		if len(id) > 0 && len(id) <= len(naa) && bytes.Equal(naa[:len(id)], id) {
			return s.lun.disk, true
		}
	}
	return nil, false
}

// Remove unexports the LUN, drains it, removes its device and closes its
// file.
func (d *Daemon) Remove(ctx context.Context, name string) error {
	d.mu.Lock()
	s, ok := d.luns[name]
	if ok && s != nil {
		delete(d.luns, name)
	}
	d.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("remove %s: %w", name, ErrNotFound)
	case s == nil:
		return fmt.Errorf("remove %s: still being added: %w", name, ErrExists)
	}
	err := d.stop(ctx, s, true)
	d.changed()
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	d.log.Info("removed", "lun", name)
	return nil
}

// LUN returns the named LUN.
func (d *Daemon) LUN(name string) (*LUN, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.luns[name]; s != nil {
		return s.lun, nil
	}
	return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
}

// Names returns the names of the LUNs being served, sorted.
func (d *Daemon) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for n, s := range d.luns {
		if s != nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// List returns a snapshot of every LUN, sorted by name.
func (d *Daemon) List() []LUNInfo {
	var out []LUNInfo
	for _, n := range d.Names() {
		if l, err := d.LUN(n); err == nil {
			out = append(out, l.Info())
		}
	}
	return out
}

// Control runs one control line (ParseControl). With an empty name it
// manages LUNs: export (with the Defaults and DefaultSpec for what the
// line leaves out) or remove. Otherwise it is a LUN control (see
// LUN.Control).
func (d *Daemon) Control(ctx context.Context, name, line string) error {
	c, err := ParseControl(line)
	if err != nil {
		return err
	}
	if name != "" {
		l, err := d.LUN(name)
		if err != nil {
			return err
		}
		return l.apply(c)
	}
	switch c.Op {
	case OpRemove:
		if l, err := d.LUN(c.Name); err == nil && l.gateway != nil {
			// Its lease runs with the daemon, and unlinking it alone
			// would leave it under the initiators' sessions, which then
			// fail writes with a target error instead of moving to
			// another gateway. Stopping the daemon does it in order:
			// give up ownership, close the sessions, then unlink.
			return invalid("LUN %s is a gateway: it leaves with its daemon (SIGTERM), not alone", c.Name)
		}
		return d.Remove(ctx, c.Name)
	case OpExport:
		o := d.opts.Defaults
		o.Name, o.Path, o.Size = c.Name, c.Path, c.Size
		if c.Has("block-size") {
			o.BlockSize = c.BlockSize
		}
		if c.Has("read-only") {
			o.ReadOnly = c.ReadOnly
		}
		if c.Has("write-through") {
			o.WriteThrough = c.WriteThrough
		}
		spec := d.opts.DefaultSpec
		if c.Has("fabric") {
			spec = ExportSpec{Fabric: c.Fabric}
		}
		_, err = d.Add(ctx, o, spec)
		return err
	}
	return invalid("%q acts on one LUN: write it to the LUN's control", line)
}

func (d *Daemon) changed() {
	if d.opts.OnChange != nil {
		d.opts.OnChange()
	}
}

// Close stops the kernel's fabrics (when the Kernel is a
// FabricStopper), removes every LUN, the newest name first, refuses new
// ones, and returns after every Serve has returned.
func (d *Daemon) Close(ctx context.Context) error {
	var errs []error
	if fs, ok := d.opts.Kernel.(FabricStopper); ok {
		if err := fs.StopFabrics(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	d.mu.Lock()
	names := make([]string, 0, len(d.luns))
	for n := range d.luns {
		names = append(names, n)
	}
	d.mu.Unlock()
	slices.Sort(names)
	slices.Reverse(names)
	for _, n := range names {
		if err := d.Remove(ctx, n); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	d.mu.Lock()
	d.luns = nil
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return errors.Join(errs...)
}
