// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/internal/configfs"
	"github.com/lunbridge/lunbridge/lease"
	"github.com/lunbridge/lunbridge/tcmu"
)

// DefaultNameLockDir is where the daemon keeps its LUN name locks.
const DefaultNameLockDir = "/run/lock/lunbridge"

// userHBA is N of target/core/user_N for lunbridge's backstores.
const userHBA = 0

// loopName names the loopback target of LUNs that are not gateways; its
// WWNs derive from it (fabric.LoopWWNs), so a restarted lunbridge finds it
// again. Gateway LUNs use loopTargetName.
const loopName = "lunbridge"

// loopTargetName names the loopback target a LUN is exported through:
// loopName, or one target per ALUA target port group for gateway LUNs.
// Two gateways of one group on one machine (tests, demos) are two
// lunbridge processes; with one shared target both would claim lun_0 of
// it. A target of its own per group also makes each gateway its own SCSI
// host, so the machine sees the LU through two ports, as an initiator of
// two real gateways does. The name is stable, so a restarted gateway
// adopts the target it left.
func loopTargetName(gw *bridge.GatewayInfo) string {
	if gw == nil {
		return loopName
	}
	return fmt.Sprintf("%s-tpg%d", loopName, gw.Group)
}

// Config configures a Kernel.
type Config struct {
	// ConfigfsRoot, SysfsRoot and DevRoot default to /sys/kernel/config,
	// /sys and /dev; FS nil is the real file system. Tests point them at
	// a configfs.Fake.
	ConfigfsRoot string
	SysfsRoot    string
	DevRoot      string
	FS           configfs.FS
	CmdTimeout   time.Duration // TCMU cmd_time_out; 0: tcmu's default
	MaxTransfer  int64         // bytes; hw_max_sectors is this in blocks
	// Hostname names default iSCSI targets (DefaultIQN).
	Hostname string
	Logger   *slog.Logger
	// NameLockDir holds one lock file per LUN name served on this
	// machine (lease.ClaimName): a name in use by another daemon is
	// refused before configfs is touched. Empty: no name locks (tests
	// with a fake configfs); the daemon sets DefaultNameLockDir.
	NameLockDir string
	// LoadModules loads kernel modules; nil: fabric.LoadModules with
	// ConfigfsRoot.
	LoadModules func(ctx context.Context, modules ...string) error
}

// Kernel is the production bridge.Kernel: TCMU devices in configfs,
// served through UIO, exported through tcm_loop or iSCSI. All loop LUNs
// share one loopback target; iSCSI LUNs share one target per IQN. LUNs
// are numbered from 0 in each target, the lowest free number first; in
// a loopback target left by a killed lunbridge, a LUN keeps the number it
// had (reserve).
type Kernel struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	loaded map[string]bool          // protected by mu: kernel modules checked
	loop   map[string]*target       // protected by mu: by loopTargetName
	iscsi  map[string]*target       // protected by mu: by IQN
	luns   map[*target]map[int]bool // protected by mu: LUN numbers in use
	// attached holds the backstore paths of this daemon's devices, from
	// Attach to Remove. Protected by mu.
	attached map[string]bool
	// claimed holds the LUN names this daemon holds the name lock of,
	// from Attach's ClaimName to Remove: a LUN left in the loopback
	// target under such a name is this daemon's, on its way back, even
	// before its backstore is attached. Protected by mu.
	claimed map[string]bool
}

var _ bridge.Kernel = (*Kernel)(nil)

// target is one fabric target: loop or iSCSI.
type target struct {
	kind  string            // "loop" or "iscsi"
	spec  bridge.ExportSpec // iSCSI: the settings every LUN must share
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

// ringOptions returns the options of the ring of LUN lun: the defaults
// and a logger.
func (k *Kernel) ringOptions(lun string) tcmu.RingOptions {
	return tcmu.RingOptions{Logger: k.log.With("lun", lun)}
}

// New checks (and loads) the kernel modules every LUN needs.
func New(ctx context.Context, cfg Config) (*Kernel, error) {
	if cfg.ConfigfsRoot == "" {
		cfg.ConfigfsRoot = configfs.DefaultRoot
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LoadModules == nil {
		root := cfg.ConfigfsRoot
		cfg.LoadModules = func(ctx context.Context, mods ...string) error {
			return fabric.LoadModules(ctx, fabric.ModuleOptions{ConfigfsRoot: root}, mods...)
		}
	}
	k := &Kernel{
		cfg:    cfg,
		log:    cfg.Logger,
		loaded: map[string]bool{},
		loop:   map[string]*target{},
		iscsi:  map[string]*target{},
		luns:   map[*target]map[int]bool{},

		attached: map[string]bool{},
		claimed:  map[string]bool{},
	}
	if err := k.load(ctx, fabric.ModConfigfs, fabric.ModTargetCore, fabric.ModUser); err != nil {
		return nil, err
	}
	return k, nil
}

// load makes sure the modules are loaded, once per daemon.
// Preconditions: k.mu is not held.
func (k *Kernel) load(ctx context.Context, mods ...string) error {
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
	if err := k.cfg.LoadModules(ctx, need...); err != nil {
		return err
	}
	for _, m := range need {
		k.loaded[m] = true
	}
	return nil
}

// Attach creates (or adopts, after a crash) the LUN's TCMU device and
// its ring.
func (k *Kernel) Attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec) (bridge.Device, error) {
	spec, err := Resolve(spec, k.cfg.Hostname, l.Name())
	if err != nil {
		return nil, fmt.Errorf("LUN %s: %w: %w", l.Name(), err, bridge.ErrInvalid)
	}
	info := l.Info()
	// The name first: a backstore of this name may be another daemon's,
	// which OpenDevice would try to adopt.
	var name *lease.Hold
	if k.cfg.NameLockDir != "" {
		if name, err = lease.ClaimName(k.cfg.NameLockDir, l.Name(), info.Path); err != nil {
			return nil, err // it names the LUN
		}
		k.claim(l.Name(), true)
	}
	d, err := k.attach(ctx, l, spec, info)
	if err != nil {
		if name != nil {
			k.claim(l.Name(), false)
		}
		return nil, errors.Join(err, name.Close())
	}
	d.nameLock = name
	return d, nil
}

// claim records (or forgets) that this daemon holds the name lock of LUN
// name.
func (k *Kernel) claim(name string, held bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if held {
		k.claimed[name] = true
	} else {
		delete(k.claimed, name)
	}
}

func (k *Kernel) attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec, info bridge.LUNInfo) (*device, error) {
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
		ConfigfsRoot: k.cfg.ConfigfsRoot,
		SysfsRoot:    k.cfg.SysfsRoot,
		DevRoot:      k.cfg.DevRoot,
		FS:           k.cfg.FS,
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
	ring, err := tcmu.NewRing(dev.Mem(), dev.Notifier(), k.ringOptions(l.Name()))
	if err != nil {
		return nil, errors.Join(err, dev.Remove())
	}
	k.mu.Lock()
	k.attached[filepath.Clean(dev.Path())] = true
	k.mu.Unlock()
	return &device{k: k, dev: dev, ring: ring, spec: spec, name: l.Name(), lun: -1,
		loopName: loopTargetName(info.Gateway)}, nil
}

// device is one LUN's TCMU device and fabric export.
type device struct {
	k    *Kernel
	dev  *tcmu.Device
	ring *tcmu.Ring
	spec bridge.ExportSpec
	name string
	// nameLock reserves name on this machine until Remove; nil without
	// Config.NameLockDir.
	nameLock *lease.Hold
	t        *target // nil when not exported
	lun      int
	// loopName is the loopback target this LUN goes to (loopTargetName).
	loopName string

	resizeMu sync.Mutex // serializes Resize
}

func (d *device) Ring() *tcmu.Ring { return d.ring }
func (d *device) UIO() string      { return d.dev.UIO() }

// Export links the device into its fabric's target.
func (d *device) Export(ctx context.Context) (string, string, error) {
	mod := ""
	switch d.spec.Fabric {
	case FabricNone:
		return FabricNone, "", nil
	case FabricLoop:
		mod = fabric.ModLoop
	case FabricISCSI:
		mod = fabric.ModISCSI
	}
	if err := d.k.load(ctx, mod); err != nil {
		return "", "", err
	}
	t, lun, err := d.k.reserve(d.spec, d.loopName, d.dev.Path())
	if err != nil {
		return "", "", err
	}
	where, err := t.addLUN(ctx, lun, d.dev.Path())
	if err != nil {
		if t.kind == FabricLoop && errors.Is(err, fs.ErrExist) {
			// LUN numbers are this process's: lun_N linking another
			// backstore belongs to another lunbridge on this machine.
			err = fmt.Errorf("LUN %s: loopback target %s (%s) is in use by another lunbridge on this machine: "+
				"loop exports of one machine belong to one lunbridge, except gateways, which get a target per --alua-group: %w",
				d.name, d.loopName, t.loop.WWN, err)
		}
		if d.k.release(t, lun) {
			err = errors.Join(err, t.remove())
		}
		return "", "", err
	}
	d.t, d.lun = t, lun
	if t.kind == FabricISCSI {
		where = fmt.Sprintf("%s lun %d", where, lun)
	}
	return t.kind, where, nil
}

// reserve finds (or makes) the target for spec and a LUN number in it for
// the backstore at path: the lowest free one. An iSCSI target made by an
// earlier LUN must have the same settings: a conflict is an error, never
// a silent merge.
//
// A loopback target may hold LUNs a killed lunbridge left (it is adopted,
// not remade: its disks stay in place). There the backstore keeps the
// number it had, and a new LUN skips the numbers of backstores this
// daemon attached (they will take theirs back) and of stale ones, whose
// name no live lunbridge holds (logged: nobody serves them). A number
// whose backstore another live lunbridge holds is taken anyway, so that
// AddLUN refuses it and says why.
func (k *Kernel) reserve(spec bridge.ExportSpec, loop, path string) (*target, int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var t *target
	switch spec.Fabric {
	case FabricLoop:
		if t = k.loop[loop]; t == nil {
			wwn, nexus := fabric.LoopWWNs(loop)
			t = &target{kind: FabricLoop, loop: &fabric.LoopTarget{
				WWN: wwn, NexusWWN: nexus, Adopt: true,
				ConfigfsRoot: k.cfg.ConfigfsRoot, SysfsRoot: k.cfg.SysfsRoot, DevRoot: k.cfg.DevRoot, FS: k.cfg.FS,
			}}
			k.loop[loop] = t
		}
	case FabricISCSI:
		t = k.iscsi[spec.IQN]
		if t != nil {
			if err := SameTarget(t.spec, spec); err != nil {
				return nil, 0, fmt.Errorf("%w: %w", err, bridge.ErrInvalid)
			}
			break
		}
		// A target of this name left by a killed lunbridge: make it
		// anew (its initiators log in again).
		if err := fabric.RemoveStaleISCSI(k.cfg.FS, k.cfg.ConfigfsRoot, spec.IQN, k.ownedBackstore); err != nil {
			return nil, 0, err
		}
		t = &target{kind: FabricISCSI, spec: spec, iscsi: &fabric.ISCSITarget{
			IQN:               spec.IQN,
			Portal:            spec.Portal,
			Initiators:        spec.Initiators,
			AllowAnyInitiator: spec.AllowAnyInitiator,
			CHAPUser:          spec.CHAPUser,
			CHAPPassword:      spec.CHAPPassword,
			MutualUser:        spec.MutualUser,
			MutualPassword:    spec.MutualPassword,
			ConfigfsRoot:      k.cfg.ConfigfsRoot,
			FS:                k.cfg.FS,
		}}
		switch {
		case spec.AllowAnyInitiator:
			k.log.Warn("iSCSI target open to EVERY initiator that reaches the portal (insecure_allow_any_initiator)",
				"iqn", spec.IQN, "portal", spec.Portal)
		case len(spec.Initiators) == 0:
			k.log.Warn("iSCSI target admits no initiator: allow one with --initiator IQN (config: initiators = [\"IQN\"])",
				"iqn", spec.IQN, "portal", spec.Portal)
		}
		k.iscsi[spec.IQN] = t
	default:
		return nil, 0, fmt.Errorf("fabric %q: %w", spec.Fabric, bridge.ErrInvalid)
	}
	used := k.luns[t]
	if used == nil {
		used = map[int]bool{}
		k.luns[t] = used
	}
	var left map[int]string // the loopback target's LUNs now
	if t.loop != nil {
		var err error
		if left, err = t.loop.LUNs(); err != nil {
			return nil, 0, err
		}
	}
	path = filepath.Clean(path)
	for lun, p := range left {
		if p == path && !used[lun] {
			k.log.Info("LUN keeps the number it had in the loopback target", "backstore", path, "lun", lun)
			used[lun] = true
			return t, lun, nil
		}
	}
	lun := 0
	for ; ; lun++ {
		if used[lun] {
			continue
		}
		p := left[lun] // "": no LUN there, or one without a backstore
		ours := k.attached[p] || k.claimed[filepath.Base(p)]
		if p == "" || !ours && !k.stale(p) {
			break
		}
		if !ours {
			k.log.Warn("a killed lunbridge left this LUN in the loopback target and nobody serves it: export it again to serve it, or remove it",
				"lun", lun, "backstore", p)
		}
	}
	used[lun] = true
	return t, lun, nil
}

// stale reports whether the backstore at configfs path p is a lunbridge
// backstore whose LUN name no live lunbridge on this machine holds: left
// by one that was killed. Without Config.NameLockDir nothing is stale.
// Preconditions: k.mu is held.
func (k *Kernel) stale(p string) bool {
	if k.cfg.NameLockDir == "" || !k.ownedBackstore(p) {
		return false
	}
	held, err := lease.NameHeld(k.cfg.NameLockDir, filepath.Base(p))
	if err != nil {
		k.log.Warn("reading a LUN name lock", "backstore", p, "err", err)
		return false
	}
	return !held
}

// ownedBackstore reports whether the configfs directory p is one of
// lunbridge's TCMU backstores. A configfs that cannot be listed owns
// nothing: the stale target is then kept and the export fails.
func (k *Kernel) ownedBackstore(p string) bool {
	devs, err := tcmu.ListDevicesIn(k.cfg.FS, k.cfg.ConfigfsRoot)
	if err != nil {
		k.log.Warn("listing lunbridge backstores", "err", err)
	}
	return slices.ContainsFunc(devs, func(d tcmu.DeviceInfo) bool { return filepath.Clean(d.Path) == p })
}

// onlyLUN reports whether lun is the last LUN number t holds.
func (k *Kernel) onlyLUN(t *target, lun int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.luns[t]) == 1 && k.luns[t][lun]
}

// release frees a LUN number and reports whether the target is now empty
// (and forgotten: the caller removes it).
func (k *Kernel) release(t *target, lun int) (empty bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.luns[t], lun)
	if len(k.luns[t]) > 0 {
		return false
	}
	delete(k.luns, t)
	for name, lt := range k.loop {
		if lt == t {
			delete(k.loop, name)
		}
	}
	for iqn, it := range k.iscsi {
		if it == t {
			delete(k.iscsi, iqn)
		}
	}
	return true
}

// Unexport removes the LUN from its target, and the target when it was
// the last LUN. The last LUN of an iSCSI target goes after its portal
// group is disabled, as at shutdown (StopFabrics): a session that saw
// it unlinked first would get DATA PROTECT, not a path error. Should
// another LUN join the target meanwhile, its AddLUN enables the group
// again.
func (d *device) Unexport(ctx context.Context) error {
	if d.t == nil {
		return nil
	}
	t, lun := d.t, d.lun
	d.t = nil
	var err error
	if t.iscsi != nil && d.k.onlyLUN(t, lun) {
		err = t.iscsi.Disable()
	}
	err = errors.Join(err, t.removeLUN(lun))
	if d.k.release(t, lun) {
		err = errors.Join(err, t.remove())
	}
	return err
}

// StopFabrics disables every iSCSI target this Kernel made
// (fabric.ISCSITarget.Disable): their sessions close, so initiators see
// a transport failure, a path error that a multipath initiator retries
// on another gateway, before the daemon unlinks the LUNs (an unlinked
// LUN under a logged-in session answers with DATA PROTECT, a target
// error that is not retried). The LUNs stay until Unexport.
//
// Loopback targets are left as they are: tcm_loop has no portal group
// to disable, nor can its nexus go while it has LUNs; and unlinking a
// loop LUN already removes the initiator's SCSI device before the LUN
// (tcm_loop's pre-unlink hook), so its commands fail as a lost path.
func (k *Kernel) StopFabrics(ctx context.Context) error {
	k.mu.Lock()
	ts := make([]*target, 0, len(k.iscsi))
	for _, t := range k.iscsi {
		ts = append(ts, t)
	}
	k.mu.Unlock()
	var errs []error
	for _, t := range ts {
		if err := t.iscsi.Disable(); err != nil {
			errs = append(errs, err)
			continue
		}
		k.log.Info("iSCSI target disabled: sessions closed", "iqn", t.iscsi.IQN)
	}
	return errors.Join(errs...)
}

var _ bridge.FabricStopper = (*Kernel)(nil)

// Resize tells the kernel the new size (tcmu.Device.Resize answers the
// kernel's netlink announcement itself); calls are serialized. Should
// the kernel still refuse with ESRCH, only a warning is due: READ
// CAPACITY is answered by lunbridge, so initiators see the new size
// anyway.
func (d *device) Resize(size int64) error {
	d.resizeMu.Lock()
	defer d.resizeMu.Unlock()
	err := d.dev.Resize(size)
	if errors.Is(err, syscall.ESRCH) {
		d.k.log.Warn("the kernel's dev_size was not updated; initiators see the new size anyway", "lun", d.name, "err", err)
		return nil
	}
	return err
}

// Remove deletes the TCMU device, then gives up the LUN's name.
func (d *device) Remove() error {
	d.k.mu.Lock()
	delete(d.k.attached, filepath.Clean(d.dev.Path()))
	d.k.mu.Unlock()
	err := errors.Join(d.dev.Remove(), d.nameLock.Close())
	if d.nameLock != nil {
		d.k.claim(d.name, false)
	}
	return err
}
