// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel modules lunbridge needs (Debian builds them all as modules).
const (
	ModConfigfs   = "configfs"
	ModTargetCore = "target_core_mod"
	ModUser       = "target_core_user"
	ModLoop       = "tcm_loop"
	ModISCSI      = "iscsi_target_mod"
)

// configfsMagic is CONFIGFS_MAGIC from <linux/magic.h>.
const configfsMagic = 0x62656570

// ModuleOptions configure LoadModules.
type ModuleOptions struct {
	// Modprobe is the modprobe program (default "modprobe", from PATH).
	Modprobe string
	// NoLoad only checks: a missing module is an error, nothing is run.
	NoLoad bool
	// ConfigfsRoot and SysfsRoot default to /sys/kernel/config and /sys.
	ConfigfsRoot string
	SysfsRoot    string
}

// LoadModules makes sure the named kernel modules are loaded, running
// modprobe for those that are not (a module counts as loaded when
// /sys/module/<name> exists), then that configfs is mounted at
// ConfigfsRoot (mounting it when it is not) and that target_core_mod
// populated target/ there. With no names it checks configfs,
// target_core_mod and target_core_user. The error names the first
// module that could not be loaded and carries modprobe's message.
func LoadModules(ctx context.Context, opts ModuleOptions, modules ...string) error {
	if len(modules) == 0 {
		modules = []string{ModConfigfs, ModTargetCore, ModUser}
	}
	sysfs, configfs := opts.SysfsRoot, opts.ConfigfsRoot
	if sysfs == "" {
		sysfs = DefaultSysfsRoot
	}
	if configfs == "" {
		configfs = DefaultConfigfsRoot
	}
	modprobe := opts.Modprobe
	if modprobe == "" {
		modprobe = "modprobe"
	}
	for _, m := range modules {
		if moduleLoaded(sysfs, m) {
			continue
		}
		if opts.NoLoad {
			return fmt.Errorf("fabric: kernel module %s is not loaded", m)
		}
		out, err := exec.CommandContext(ctx, modprobe, m).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fabric: kernel module %s is not loaded and %s %s failed: %w: %s",
				m, modprobe, m, err, strings.TrimSpace(string(out)))
		}
		if !moduleLoaded(sysfs, m) {
			return fmt.Errorf("fabric: kernel module %s: %s succeeded but %s is missing",
				m, modprobe, filepath.Join(sysfs, "module", m))
		}
	}
	if err := mountConfigfs(configfs, opts.NoLoad); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(configfs, "target")); err != nil {
		return fmt.Errorf("fabric: %s: %w (target_core_mod not loaded?)", filepath.Join(configfs, "target"), err)
	}
	return nil
}

func moduleLoaded(sysfs, name string) bool {
	// /sys/module uses the name with '-' folded to '_'.
	_, err := os.Stat(filepath.Join(sysfs, "module", strings.ReplaceAll(name, "-", "_")))
	return err == nil
}

// mountConfigfs mounts configfs at dir unless it already is.
func mountConfigfs(dir string, noLoad bool) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("fabric: configfs mount point %s: %w", dir, err)
	}
	if st.Type == configfsMagic {
		return nil
	}
	if noLoad {
		return fmt.Errorf("fabric: configfs is not mounted at %s", dir)
	}
	if err := unix.Mount("configfs", dir, "configfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("fabric: mount configfs at %s: %w", dir, err)
	}
	return nil
}
