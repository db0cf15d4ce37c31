// SPDX-License-Identifier: Apache-2.0

package targetcli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/tcmu"
	"github.com/lunbridge/lunbridge/tcmuservice"
)

// rescanEvery bounds how long a missed netlink event delays a backstore.
const rescanEvery = 5 * time.Second

// quickRescan spaces the rescans that follow a netlink event.
const quickRescan = 250 * time.Millisecond

// Discovery finds and serves other creators' lunbridge backstores. As a
// bridge.Kernel it adopts those devices and passes every other LUN to the
// production kernel.
type Discovery struct {
	k   bridge.Kernel
	cfg Config
	log *slog.Logger

	// attachFound opens a found backstore (tests replace it).
	attachFound func(ctx context.Context, info tcmu.DeviceInfo) (bridge.Device, error)

	mu      sync.Mutex
	pending map[string]tcmu.DeviceInfo // protected by mu: by LUN name, during Add
	served  map[string]string          // protected by mu: LUN name -> configfs path
	failed  map[string]bool            // protected by mu: paths that failed, logged once
}

var _ bridge.Kernel = (*Discovery)(nil)

// Config is what a Discovery gives the LUNs it finds.
type Config struct {
	ConfigfsRoot string       // the configfs mount point
	MaxTransfer  int64        // bytes; a backstore's hw_max_sectors may lower it
	Workers      int          // I/O workers per LUN; 0: bridge's default
	Logger       *slog.Logger // nil: discard
}

// New returns a Discovery over the backstores in cfg's configfs
// that passes every other LUN to k.
func New(k bridge.Kernel, cfg Config) *Discovery {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &Discovery{
		k: k, cfg: cfg, log: log,
		pending: map[string]tcmu.DeviceInfo{},
		served:  map[string]string{},
		failed:  map[string]bool{},
	}
	x.attachFound = x.openFound
	return x
}

// StopFabrics passes to the wrapped kernel's StopFabrics, if it has
// one (bridge.FabricStopper): the backstores found here are exported by
// whoever made them, and stay so.
func (x *Discovery) StopFabrics(ctx context.Context) error {
	if fs, ok := x.k.(bridge.FabricStopper); ok {
		return fs.StopFabrics(ctx)
	}
	return nil
}

var _ bridge.FabricStopper = (*Discovery)(nil)

// found reports whether a backstore was made by someone else for
// lunbridge: enabled, with a path for its cfgstring.
func found(info tcmu.DeviceInfo) bool {
	return info.Enabled && strings.HasPrefix(info.Config, "/")
}

// Attach adopts a found backstore, or passes the LUN to the kernel. A
// LUN is the found one only if its file is the backstore's cfgstring too:
// a LUN of the config with the same name, added at the same time, is not.
func (x *Discovery) Attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec) (bridge.Device, error) {
	x.mu.Lock()
	info, ok := x.pending[l.Name()]
	x.mu.Unlock()
	if !ok || l.Info().Path != info.Config {
		return x.k.Attach(ctx, l, spec)
	}
	return x.attachFound(ctx, info)
}

// openFound adopts a found backstore and maps its ring.
func (x *Discovery) openFound(ctx context.Context, info tcmu.DeviceInfo) (bridge.Device, error) {
	dev, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{
		Name:         info.Name,
		HBA:          info.HBA,
		Config:       info.Config,
		ConfigfsRoot: x.cfg.ConfigfsRoot,
	})
	if err != nil {
		return nil, err
	}
	// A previous lunbridge may have left commands in the ring: the
	// kernel returns them as BUSY and the initiator retries them.
	if err := dev.Recover(); err != nil {
		return nil, errors.Join(fmt.Errorf("recover %s: %w", dev.Path(), err), dev.Close())
	}
	ring, err := tcmu.NewRing(dev.Mem(), dev.Notifier(), tcmu.RingOptions{Logger: x.log.With("lun", info.Name)})
	if err != nil {
		return nil, errors.Join(err, dev.Close())
	}
	return &foundDevice{dev: dev, ring: ring}, nil
}

// foundDevice is a backstore someone else created: lunbridge serves its
// ring and leaves configfs alone.
type foundDevice struct {
	dev  *tcmu.Device
	ring *tcmu.Ring
}

func (f *foundDevice) Ring() *tcmu.Ring { return f.ring }
func (f *foundDevice) UIO() string      { return f.dev.UIO() }

// Export reports the backstore; its fabric links are targetcli's.
func (f *foundDevice) Export(context.Context) (string, string, error) {
	return "targetcli", f.dev.Path(), nil
}
func (f *foundDevice) Unexport(context.Context) error { return nil }
func (f *foundDevice) Resize(size int64) error        { return f.dev.Resize(size) }

// Remove closes the UIO device; the backstore stays for its owner (and
// for the next lunbridge).
func (f *foundDevice) Remove() error { return f.dev.Close() }

// options are the LUN options of a found backstore: the cfgstring is the
// file, dev_size its size, and transfers no larger than hw_max_sectors.
func (x *Discovery) options(info tcmu.DeviceInfo) bridge.Options {
	mt := x.cfg.MaxTransfer
	if lim := int64(info.MaxSectors) * int64(info.BlockSize); lim > 0 && lim < mt {
		mt = lim
	}
	return bridge.Options{
		Name:        info.Name,
		Path:        info.Config,
		Size:        info.Size,
		BlockSize:   info.BlockSize,
		Workers:     x.cfg.Workers,
		MaxTransfer: mt - mt%int64(info.BlockSize),
	}
}

// scan adds the found backstores not yet served and removes the served
// ones that are gone.
func (x *Discovery) scan(ctx context.Context, d *bridge.Daemon) {
	devs, err := tcmu.ListDevices(x.cfg.ConfigfsRoot)
	if err != nil {
		x.log.Debug("targetcli: scan", "err", err) // partial lists still serve
	}
	present := map[string]tcmu.DeviceInfo{}
	for _, info := range devs {
		if found(info) {
			present[info.Path] = info
		}
	}
	x.mu.Lock()
	var gone []string
	for name, path := range x.served {
		if _, ok := present[path]; !ok {
			gone = append(gone, name)
		}
	}
	for path := range x.failed {
		if _, ok := present[path]; !ok {
			delete(x.failed, path)
		}
	}
	var todo []tcmu.DeviceInfo
	for path, info := range present {
		if x.served[info.Name] != path && !x.failed[path] {
			todo = append(todo, info)
		}
	}
	x.mu.Unlock()
	for _, name := range gone {
		// Deleting a backstore does not wait for its UIO device to be
		// closed: the ring's read then fails with EIO (seen on 6.1), so
		// an error from draining a deleted device is expected.
		if err := d.Remove(ctx, name); err != nil && !errors.Is(err, bridge.ErrNotFound) {
			x.log.Debug("targetcli: let go of a removed backstore", "lun", name, "err", err)
		}
		x.mu.Lock()
		delete(x.served, name)
		x.mu.Unlock()
		x.log.Info("targetcli: backstore removed; no longer served", "lun", name)
	}
	for _, info := range todo {
		x.add(ctx, d, info)
	}
}

func (x *Discovery) add(ctx context.Context, d *bridge.Daemon, info tcmu.DeviceInfo) {
	x.mu.Lock()
	if _, busy := x.pending[info.Name]; busy {
		x.mu.Unlock()
		return
	}
	x.pending[info.Name] = info
	x.mu.Unlock()
	li, err := d.Add(ctx, x.options(info), bridge.ExportSpec{Fabric: "none"})
	x.mu.Lock()
	delete(x.pending, info.Name)
	if err == nil {
		x.served[info.Name] = info.Path
	} else {
		x.failed[info.Path] = true
	}
	x.mu.Unlock()
	if err != nil {
		x.log.Error("targetcli: cannot serve backstore", "lun", info.Name, "path", info.Path, "err", err)
		return
	}
	x.log.Info("targetcli: serving backstore", "lun", li.Name, "path", li.Path, "backstore", info.Path, "size", li.Size)
}

// Start offers lunbridge on D-Bus (when a system bus is reachable),
// serves the found backstores in d and keeps watching for new and
// removed ones. The returned function stops all of it; the daemon's
// Close then closes the found devices.
func (x *Discovery) Start(ctx context.Context, d *bridge.Daemon) (stop func() error) {
	svc, err := tcmuservice.Start(tcmuservice.Options{Logger: x.log})
	switch {
	case errors.Is(err, tcmuservice.ErrNoBus):
		x.log.Info("targetcli: no D-Bus system bus; user:lunbridge is not offered to targetcli", "err", err)
	case err != nil:
		x.log.Warn("targetcli: D-Bus service not started", "err", err)
	default:
		x.log.Info("targetcli: offering user:lunbridge on D-Bus", "name", tcmuservice.BusName)
	}
	// Subscribe before the first scan, so nothing created in between is
	// missed; without netlink the periodic rescan still finds devices.
	ev, err := tcmu.OpenEvents()
	if err != nil {
		x.log.Info("targetcli: no TCM-USER netlink events; rescanning periodically", "err", err)
	}
	wake := make(chan struct{}, 1)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if ev != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ev.Run(rctx, func(e tcmu.Event) {
				if e.Kind != tcmu.EventLost && !e.Ours() {
					return // another handler's device (tcmu-runner)
				}
				x.log.Debug("targetcli: netlink event", "event", e.Kind, "uio", e.UIOName)
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			if err != nil {
				x.log.Warn("targetcli: netlink events stopped; rescanning periodically", "err", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The kernel announces a device while enabling it, before its
		// enable attribute reads 1: an event is followed by a few quick
		// rescans.
		t := time.NewTimer(rescanEvery)
		defer t.Stop()
		quick := 0
		for {
			x.scan(rctx, d)
			next := rescanEvery
			if quick > 0 {
				next, quick = quickRescan, quick-1
			}
			t.Reset(next)
			select {
			case <-rctx.Done():
				return
			case <-wake:
				quick = 4
			case <-t.C:
			}
		}
	}()
	return func() error {
		cancel()
		wg.Wait()
		if svc != nil {
			return svc.Close()
		}
		return nil
	}
}
