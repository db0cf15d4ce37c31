// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// RemoveStaleISCSI removes target/iscsi/<iqn> and everything in it when
// every LUN of it links a backstore that owned accepts (by its configfs
// path): a target left behind by a run of lunbridge that was killed. It
// does nothing when there is no such target. A target with a LUN that is
// not owned, or with a LUN link it cannot read, is someone else's: it
// returns an error wrapping fs.ErrExist and changes nothing.
//
// Initiators logged in to the target lose their sessions and log in again
// once the caller has made the target anew; commands still in the
// backstores' rings must have been dealt with first (tcmu Device.Recover).
//
// fsys nil means the real file system; configfsRoot empty means
// DefaultConfigfsRoot.
func RemoveStaleISCSI(fsys configfs.FS, configfsRoot, iqn string, owned func(backstore string) bool) error {
	if configfsRoot == "" {
		configfsRoot = DefaultConfigfsRoot
	}
	fsys = configfs.Or(fsys)
	if err := ValidateIQN(iqn); err != nil {
		return err
	}
	wwn := filepath.Join(configfsRoot, "target", "iscsi", iqn)
	tpgs, err := fsys.ReadDir(wwn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fabric: read %s: %w", wwn, err)
	}
	var tpgDirs []string
	for _, n := range tpgs {
		if strings.HasPrefix(n, "tpgt_") {
			tpgDirs = append(tpgDirs, filepath.Join(wwn, n))
		}
	}
	// First decide, touching nothing: every LUN must be ours.
	for _, tpg := range tpgDirs {
		luns, _ := fsys.ReadDir(filepath.Join(tpg, "lun"))
		for _, l := range luns {
			dir := filepath.Join(tpg, "lun", l)
			link, target, err := linkTo(fsys, dir)
			if err != nil {
				return fmt.Errorf("fabric: iSCSI target %s: read %s: %w", iqn, dir, err)
			}
			if link == "" {
				continue
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(dir, target)
			}
			if !owned(filepath.Clean(target)) {
				return fmt.Errorf("fabric: iSCSI target %s exists and its %s links %s, not a lunbridge backstore: %w",
					iqn, l, target, fs.ErrExist)
			}
		}
	}
	return purgeTarget(fsys, wwn)
}
