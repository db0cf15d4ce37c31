package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/tcmu"
)

// userHBA is N of target/core/user_N for lunbridge's backstores.
const userHBA = 0

// kernelConfig configures the production bridge.Kernel.
type kernelConfig struct {
	Configfs    string
	CmdTimeout  time.Duration
	MaxTransfer int64 // bytes; hw_max_sectors is this in blocks
	Logger      *slog.Logger
}

// kernel is the production bridge.Kernel: TCMU devices in configfs, served
// through UIO, exported through tcm_loop or iSCSI. All LUNs of one fabric
// kind share a target: loop LUNs one loopback target, iSCSI LUNs one target
// per IQN, numbered from 0 in the order they come.
type kernel struct {
	cfg kernelConfig
	log *slog.Logger

	mu     sync.Mutex
	loaded map[string]bool          // protected by mu: kernel modules checked
	loop   *target                  // protected by mu
	iscsi  map[string]*target       // protected by mu: by IQN
	luns   map[*target]map[int]bool // protected by mu: LUN numbers in use
}

// target is one fabric target: loop or iSCSI.
type target struct {
	kind  string // "loop" or "iscsi"
	loop  *fabric.LoopTarget
	iscsi *fabric.ISCSITarget
}

func (t *target) addLUN(ctx context.Context, lun int, backstore string) (string, error) {
	if t.loop != nil {
		return t.loop.AddLUN(ctx, lun, backstore)
	}
	return t.iscsi.AddLUN(ctx, lun, backstore)
}

func (t *target) removeLUN(lun int) error {
	if t.loop != nil {
		return t.loop.RemoveLUN(lun)
	}
	return t.iscsi.RemoveLUN(lun)
}

func (t *target) remove() error {
	if t.loop != nil {
		return t.loop.Remove()
	}
	return t.iscsi.Remove()
}

// newKernel checks (and loads) the kernel modules every LUN needs.
func newKernel(ctx context.Context, cfg kernelConfig) (*kernel, error) {
	k := &kernel{
		cfg:    cfg,
		log:    cfg.Logger,
		loaded: map[string]bool{},
		iscsi:  map[string]*target{},
		luns:   map[*target]map[int]bool{},
	}
	if err := k.load(ctx, fabric.ModConfigfs, fabric.ModTargetCore, fabric.ModUser); err != nil {
		return nil, err
	}
	return k, nil
}

// load makes sure the modules are loaded, once per daemon.
// Preconditions: k.mu is not held.
func (k *kernel) load(ctx context.Context, mods ...string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	var need []string
	for _, m := range mods {
		if !k.loaded[m] {
			need = append(need, m)
		}
	}
	if len(need) == 0 {
		return nil
	}
	if err := fabric.LoadModules(ctx, fabric.ModuleOptions{ConfigfsRoot: k.cfg.Configfs}, need...); err != nil {
		return err
	}
	for _, m := range need {
		k.loaded[m] = true
	}
	return nil
}

// Attach creates (or adopts, after a crash) the LUN's TCMU device and
// its ring.
func (k *kernel) Attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec) (bridge.Device, error) {
	info := l.Info()
	dev, err := tcmu.OpenDevice(ctx, tcmu.DeviceConfig{
		Name:         l.Name(),
		HBA:          userHBA,
		Config:       l.Name(),
		Size:         info.Size,
		BlockSize:    info.BlockSize,
		MaxSectors:   uint32(k.cfg.MaxTransfer / int64(info.BlockSize)),
		CmdTimeout:   k.cfg.CmdTimeout,
		WriteCache:   info.WriteCache,
		TMRNotify:    true,
		ConfigfsRoot: k.cfg.Configfs,
	})
	if err != nil {
		return nil, err
	}
	if dev.Adopted() {
		// Commands left in the ring by the previous daemon may be half
		// done or already completed out of order: have the kernel return
		// them as BUSY so the initiator retries them, then serve afresh.
		k.log.Warn("adopting a device left by a previous lunbridge", "lun", l.Name(), "path", dev.Path())
		if err := dev.Recover(); err != nil {
			return nil, errors.Join(fmt.Errorf("recover %s: %w", dev.Path(), err), dev.Close())
		}
	}
	ring, err := tcmu.NewRing(dev.Mem(), dev.Notifier(), tcmu.RingOptions{Logger: k.log.With("lun", l.Name())})
	if err != nil {
		return nil, errors.Join(err, dev.Remove())
	}
	return &device{k: k, dev: dev, ring: ring, spec: spec, name: l.Name(), lun: -1}, nil
}

// device is one LUN's TCMU device and fabric export.
type device struct {
	k    *kernel
	dev  *tcmu.Device
	ring *tcmu.Ring
	spec bridge.ExportSpec
	name string
	t    *target // nil when not exported
	lun  int
}

func (d *device) Ring() *tcmu.Ring { return d.ring }
func (d *device) UIO() string      { return d.dev.UIO() }

// Export links the device into its fabric's target.
func (d *device) Export(ctx context.Context) (string, string, error) {
	mod := ""
	switch d.spec.Fabric {
	case "none", "":
		return "none", "", nil
	case "loop":
		mod = fabric.ModLoop
	case "iscsi":
		mod = fabric.ModISCSI
	default:
		return "", "", fmt.Errorf("fabric %q: %w", d.spec.Fabric, bridge.ErrInvalid)
	}
	if err := d.k.load(ctx, mod); err != nil {
		return "", "", err
	}
	t, lun, err := d.k.reserve(d.spec, d.name)
	if err != nil {
		return "", "", err
	}
	where, err := t.addLUN(ctx, lun, d.dev.Path())
	if err != nil {
		d.k.release(t, lun)
		return "", "", err
	}
	d.t, d.lun = t, lun
	if t.kind == "iscsi" {
		where = fmt.Sprintf("%s lun %d", where, lun)
	}
	return t.kind, where, nil
}

// reserve finds (or makes) the target for spec and the lowest free LUN
// number in it.
func (k *kernel) reserve(spec bridge.ExportSpec, name string) (*target, int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var t *target
	switch spec.Fabric {
	case "loop":
		if k.loop == nil {
			wwn, nexus := fabric.LoopWWNs("lunbridge")
			k.loop = &target{kind: "loop", loop: &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus, Adopt: true, ConfigfsRoot: k.cfg.Configfs}}
		}
		t = k.loop
	case "iscsi":
		iqn := spec.IQN
		if iqn == "" {
			host, _ := os.Hostname()
			iqn = fabric.DefaultIQN(host, name)
		}
		t = k.iscsi[iqn]
		if t == nil {
			// A target of this name left by a killed lunbridge: make it
			// anew (its initiators log in again).
			if err := fabric.RemoveStaleISCSI(k.cfg.Configfs, iqn, k.ownedBackstore); err != nil {
				return nil, 0, err
			}
			t = &target{kind: "iscsi", iscsi: &fabric.ISCSITarget{
				IQN:          iqn,
				Portal:       spec.Portal,
				Initiators:   spec.Initiators,
				CHAPUser:     spec.CHAPUser,
				CHAPPassword: spec.CHAPPassword,
				ConfigfsRoot: k.cfg.Configfs,
			}}
			t.iscsi.AllowAnyInitiator = spec.AllowAnyInitiator
			t.iscsi.MutualUser, t.iscsi.MutualPassword = spec.MutualUser, spec.MutualPassword
			switch {
			case spec.AllowAnyInitiator:
				k.log.Warn("iSCSI target open to EVERY initiator that reaches the portal (--insecure-allow-any-initiator)", "iqn", iqn, "portal", spec.Portal)
			case len(spec.Initiators) == 0:
				k.log.Warn("iSCSI target admits no initiator: allow one with --initiator IQN (config: initiators)", "iqn", iqn)
			}
			k.iscsi[iqn] = t
		}
	}
	used := k.luns[t]
	if used == nil {
		used = map[int]bool{}
		k.luns[t] = used
	}
	lun := 0
	for used[lun] {
		lun++
	}
	used[lun] = true
	return t, lun, nil
}

// ownedBackstore reports whether the configfs directory p is one of
// lunbridge's TCMU backstores.
func (k *kernel) ownedBackstore(p string) bool {
	devs, err := tcmu.ListDevices(k.cfg.Configfs)
	if err != nil {
		return false
	}
	for _, d := range devs {
		if filepath.Clean(d.Path) == p {
			return true
		}
	}
	return false
}

// release frees a LUN number and reports whether the target is now empty
// (and forgotten: the caller removes it).
func (k *kernel) release(t *target, lun int) (empty bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.luns[t], lun)
	if len(k.luns[t]) > 0 {
		return false
	}
	delete(k.luns, t)
	if k.loop == t {
		k.loop = nil
	}
	for iqn, it := range k.iscsi {
		if it == t {
			delete(k.iscsi, iqn)
		}
	}
	return true
}

// Unexport removes the LUN from its target, and the target when it was
// the last LUN.
func (d *device) Unexport(ctx context.Context) error {
	if d.t == nil {
		return nil
	}
	t, lun := d.t, d.lun
	d.t = nil
	err := t.removeLUN(lun)
	if d.k.release(t, lun) {
		err = errors.Join(err, t.remove())
	}
	return err
}

// Resize tells the kernel the new size (tcmu.Device.Resize answers the
// kernel's netlink announcement itself). Should the kernel still refuse
// with ESRCH, only a warning is due: READ CAPACITY is answered by
// lunbridge, so initiators see the new size anyway.
func (d *device) Resize(size int64) error {
	err := d.dev.Resize(size)
	if errors.Is(err, syscall.ESRCH) {
		d.k.log.Warn("the kernel's dev_size was not updated; initiators see the new size anyway", "lun", d.name, "err", err)
		return nil
	}
	return err
}

// Remove deletes the TCMU device.
func (d *device) Remove() error { return d.dev.Remove() }
