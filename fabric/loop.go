// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// DefaultScanTimeout bounds how long AddLUN waits for the kernel to
// create the block device of a loopback LUN after the link returned.
const DefaultScanTimeout = 30 * time.Second

// maxLUN is the largest LUN number configfs accepts for lun_N
// (TRANSPORT_MAX_LUNS_PER_TPG - 1 in target_core_base.h).
const maxLUN = 65535

// LoopTarget is a tcm_loop target: LUNs linked into it appear as local
// SCSI disks (/dev/sdX) of this machine. The zero value is not usable;
// set WWN and NexusWWN (LoopWWNs derives both from a name).
type LoopTarget struct {
	// WWN names the target, target/loopback/<WWN> ("naa." + 16 hex).
	WWN string
	// NexusWWN names the initiator side of the I_T nexus; tcm_loop
	// creates the SCSI host for it when it is written to tpgt_1/nexus.
	NexusWWN string
	// Adopt claims an existing tpg whose nexus is NexusWWN as this
	// target's own, left by a previous run that crashed: Remove then
	// deletes it too. Set it when the WWNs are reserved for this program
	// (LoopWWNs); otherwise an existing target is used and left in place.
	Adopt bool
	// ScanTimeout bounds the wait for /dev/sdX (DefaultScanTimeout).
	ScanTimeout time.Duration
	// ConfigfsRoot, SysfsRoot and DevRoot default to /sys/kernel/config,
	// /sys and /dev.
	ConfigfsRoot string
	SysfsRoot    string
	DevRoot      string

	// FS drives configfs and sysfs; nil: the real file system.
	FS configfs.FS

	mu   sync.Mutex
	base journal         // protected by mu: wwn and tpgt, in creation order
	luns map[int]journal // protected by mu: per LUN
}

func (t *LoopTarget) fs() fsys { return configfs.Or(t.FS) }

func (t *LoopTarget) roots() (configfs, sysfs, dev string) {
	configfs, sysfs, dev = t.ConfigfsRoot, t.SysfsRoot, t.DevRoot
	if configfs == "" {
		configfs = DefaultConfigfsRoot
	}
	if sysfs == "" {
		sysfs = DefaultSysfsRoot
	}
	if dev == "" {
		dev = DefaultDevRoot
	}
	return configfs, sysfs, dev
}

// tpg returns target/loopback/<wwn>/tpgt_1.
func (t *LoopTarget) tpg() string {
	configfs, _, _ := t.roots()
	return filepath.Join(configfs, "target", "loopback", t.WWN, "tpgt_1")
}

// AddLUN exports the backstore at backstorePath (a configfs directory
// such as target/core/user_0/disk0) as LUN lun and returns the path of
// its block device, e.g. /dev/sdb.
//
// Steps: mkdir target/loopback/<WWN>/tpgt_1 (when missing), write the
// nexus WWN to tpgt_1/nexus (when none is set), mkdir lun/lun_<lun>,
// symlink the backstore into it. The symlink call returns only after the
// kernel's SCSI scan of the new LUN (INQUIRY, READ CAPACITY, MODE SENSE)
// finished, and for a TCMU backstore those commands go to its ring: the
// caller must already be serving it, or the link blocks for up to the
// backstore's cmd_time_out per command. The link is a plain syscall and
// cannot be interrupted; ctx bounds the wait for the block device, which
// is found through tpgt_1/address (H:0:T) and
// /sys/class/scsi_device/H:0:T:L/device/block/.
//
// A LUN directory that already links this backstore (left by a previous
// run) is adopted (and with Adopt, the tpg too, so Remove deletes it); a
// LUN that links anything else is an error. On failure
// everything AddLUN created is removed again.
func (t *LoopTarget) AddLUN(ctx context.Context, lun int, backstorePath string) (_ string, err error) {
	if err := ValidateNAA(t.WWN); err != nil {
		return "", err
	}
	if err := ValidateNAA(t.NexusWWN); err != nil {
		return "", err
	}
	if lun < 0 || lun > maxLUN {
		return "", fmt.Errorf("fabric: LUN %d out of range 0..%d", lun, maxLUN)
	}
	if !filepath.IsAbs(backstorePath) {
		return "", fmt.Errorf("fabric: backstore path %q is not absolute", backstorePath)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.luns[lun]; ok {
		return "", fmt.Errorf("fabric: loopback %s LUN %d: %w", t.WWN, lun, fs.ErrExist)
	}
	fsys := t.fs()
	configfs, _, _ := t.roots()
	loop := filepath.Join(configfs, "target", "loopback")
	// target/<fabric> appears when it is first made: the mkdir registers
	// the fabric with target_core_mod. It is not ours to remove later.
	if err := fsys.Mkdir(loop); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("fabric: mkdir %s: %w (is tcm_loop loaded?)", loop, err)
	}
	// What this call creates is journaled as it goes: base for the
	// target, lj for the LUN. On any error both are undone, newest first,
	// so that a failed AddLUN leaves configfs as it found it.
	var base, lj journal
	defer func() {
		if err != nil {
			err = errors.Join(err, lj.undo(fsys), base.undo(fsys))
		}
	}()
	c := cfs{fsys: fsys, j: &base}
	tpg := t.tpg()
	if _, err := c.mkdir(filepath.Dir(tpg)); err != nil {
		return "", err
	}
	if _, err := c.mkdir(tpg); err != nil {
		return "", err
	}
	// tcm_loop_tpg_nexus_show fails with ENODEV (Linux 6.1) or prints
	// nothing when the tpg has no nexus.
	nexus, err := c.read(filepath.Join(tpg, "nexus"))
	if errors.Is(err, syscall.ENODEV) {
		nexus, err = "", nil
	}
	if err != nil {
		return "", err
	}
	// adopted: with Adopt, a tpg with our nexus was left by a previous
	// run of ours: it is ours to remove once its LUNs are gone.
	adopted := false
	switch nexus = strings.TrimSpace(nexus); nexus {
	case "":
		if err := c.write(filepath.Join(tpg, "nexus"), t.NexusWWN, ""); err != nil {
			return "", err
		}
	case t.NexusWWN:
		adopted = t.Adopt && len(base) == 0 && len(t.base) == 0
	default:
		return "", fmt.Errorf("fabric: %s has nexus %s, want %s", tpg, nexus, t.NexusWWN)
	}

	lc := cfs{fsys: fsys, j: &lj}
	dir := filepath.Join(tpg, "lun", "lun_"+strconv.Itoa(lun))
	found, err := lc.mkdir(dir)
	if err != nil {
		return "", err
	}
	if found {
		if err := adoptLUN(fsys, dir, backstorePath, &lj); err != nil {
			return "", err
		}
	} else if err := lc.symlink(backstorePath, filepath.Join(dir, "lunbridge")); err != nil {
		return "", err
	}
	dev, err := t.findDisk(ctx, lun)
	if err != nil {
		return "", err
	}
	if adopted {
		base = journal{{kind: opRmdir, path: filepath.Dir(tpg)}, {kind: opRmdir, path: tpg}}
	}
	t.base = append(t.base, base...)
	if t.luns == nil {
		t.luns = map[int]journal{}
	}
	t.luns[lun] = lj
	return dev, nil
}

// adoptLUN records an existing LUN directory that links want, so that
// RemoveLUN removes it. An empty one (a crash between its mkdir and the
// link) gets the link; one that links anything else is refused.
func adoptLUN(fsys fsys, dir, want string, j *journal) error {
	link, target, err := linkTo(fsys, dir)
	if err != nil {
		return fmt.Errorf("fabric: read %s: %w", dir, err)
	}
	if link == "" {
		link = filepath.Join(dir, "lunbridge")
		if err := fsys.Symlink(want, link); err != nil {
			return fmt.Errorf("fabric: link %s -> %s: %w", link, want, err)
		}
	} else if !sameDir(dir, target, want) {
		return fmt.Errorf("fabric: %s exists and links %q, not %s: %w", dir, target, want, fs.ErrExist)
	}
	*j = append(*j, step{kind: opRmdir, path: dir}, step{kind: opUnlink, path: link})
	return nil
}

// findDisk waits for the block device of LUN lun to appear in sysfs and
// returns its /dev path.
func (t *LoopTarget) findDisk(ctx context.Context, lun int) (string, error) {
	fsys := t.fs()
	_, sysfs, dev := t.roots()
	c := cfs{fsys: fsys, j: new(journal)}
	addr, err := c.read(filepath.Join(t.tpg(), "address"))
	if err != nil {
		return "", err
	}
	// tcm_loop_tpg_address_show: "<host_no>:0:<tpgt>".
	hctl := strings.TrimSpace(addr) + ":" + strconv.Itoa(lun)
	if strings.Count(hctl, ":") != 3 {
		return "", fmt.Errorf("fabric: %s/address = %q, want H:C:T", t.tpg(), addr)
	}
	blockDir := filepath.Join(sysfs, "class", "scsi_device", hctl, "device", "block")
	bound := t.ScanTimeout
	if bound <= 0 {
		bound = DefaultScanTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		names, err := fsys.ReadDir(blockDir)
		if err == nil && len(names) > 0 {
			slices.Sort(names)
			return filepath.Join(dev, names[0]), nil
		}
		tm := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			tm.Stop()
			return "", fmt.Errorf("fabric: no block device for SCSI %s in %s: %w", hctl, blockDir, ctx.Err())
		case <-tm.C:
		}
	}
}

// LUNs returns the backstore each LUN of the target links now, by LUN
// number, as a cleaned configfs path: this process's LUNs and any an
// earlier run left. A LUN directory without a link maps to ""; a target
// that does not exist has no LUNs.
func (t *LoopTarget) LUNs() (map[int]string, error) {
	fsys := t.fs()
	dir := filepath.Join(t.tpg(), "lun")
	names, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fabric: read %s: %w", dir, err)
	}
	luns := map[int]string{}
	for _, n := range names {
		num, ok := strings.CutPrefix(n, "lun_")
		lun, err := strconv.Atoi(num)
		if !ok || err != nil {
			continue
		}
		p := filepath.Join(dir, n)
		_, target, err := linkTo(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("fabric: read %s: %w", p, err)
		}
		if target != "" {
			if !filepath.IsAbs(target) {
				target = filepath.Join(p, target)
			}
			target = filepath.Clean(target)
		}
		luns[lun] = target
	}
	return luns, nil
}

// RemoveLUN unlinks LUN lun and removes its directory. The kernel
// deletes the SCSI disk on unlink and may send it a SYNCHRONIZE CACHE,
// so the backstore's ring must still be served. Removing a LUN this
// target did not add (or adopt) is an error wrapping fs.ErrNotExist.
func (t *LoopTarget) RemoveLUN(lun int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return removeLUN(t.fs(), t.luns, lun, "loopback "+t.WWN)
}

// Remove removes every LUN this target added, then the tpgt and WWN
// directories if this target created them (or adopted them empty):
// configfs is left as found. A tpgt that still holds LUNs this target
// did not add (an earlier run's, left for their own daemon) stays, with
// its WWN. Missing entries are skipped; errors are joined.
func (t *LoopTarget) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fsys := t.fs()
	var none journal
	err := removeAll(fsys, &t.luns, &none)
	if others, rerr := fsys.ReadDir(filepath.Join(t.tpg(), "lun")); rerr == nil && len(others) > 0 {
		t.base = nil
		return err
	}
	return errors.Join(err, removeAll(fsys, &t.luns, &t.base))
}

// removeLUN undoes the journal of LUN lun and forgets it; what names the
// target in the error when the LUN is unknown.
func removeLUN(fsys fsys, luns map[int]journal, lun int, what string) error {
	j, ok := luns[lun]
	if !ok {
		return fmt.Errorf("fabric: %s LUN %d: %w", what, lun, fs.ErrNotExist)
	}
	delete(luns, lun)
	return j.undo(fsys)
}

// removeAll undoes every LUN journal, highest LUN first, then base.
func removeAll(fsys fsys, luns *map[int]journal, base *journal) error {
	var errs []error
	keys := make([]int, 0, len(*luns))
	for k := range *luns {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i := len(keys) - 1; i >= 0; i-- {
		errs = append(errs, (*luns)[keys[i]].undo(fsys))
	}
	*luns = nil
	errs = append(errs, base.undo(fsys))
	*base = nil
	return errors.Join(errs...)
}
