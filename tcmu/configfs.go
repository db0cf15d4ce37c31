// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// configPrefix starts the dev_config of every backstore lunbridge creates.
// It is the ownership mark: a user backstore whose dev_config does not
// start with it belongs to someone else (tcmu-runner, targetcli) and is
// never touched.
const configPrefix = "lunbridge/"

// Limits from drivers/target/target_core_user.c (Linux 6.1).
const (
	// maxDevConfig is TCMU_CONFIG_LEN - 1: dev_config is a char[256]
	// copied with match_strlcpy, so longer values are cut silently.
	maxDevConfig = 255
	// maxNameLen bounds backstore object names. The kernel takes longer
	// ones, but the name also goes into the UIO name and into paths.
	maxNameLen = 128
)

// fsys is the file-system surface through which the package drives
// configfs and sysfs: the one configfs layer, configfs.OS in production
// and configfs.Fake in unit tests.
type fsys = configfs.FS

// writeAttr writes value to a configfs attribute and wraps the error with
// the path and value, so a refused setting names itself.
func writeAttr(fsys fsys, path, value string) error {
	if err := fsys.WriteFile(path, value); err != nil {
		return fmt.Errorf("configfs: write %q to %s: %w", value, path, err)
	}
	return nil
}

// readAttr reads a configfs or sysfs attribute without its trailing
// newline.
func readAttr(fsys fsys, path string) (string, error) {
	s, err := fsys.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("configfs: read %s: %w", path, err)
	}
	return strings.TrimRight(s, "\n\x00"), nil
}

// readInt reads an integer attribute; base prefixes (0x) are accepted
// because sysfs prints UIO map sizes in hex.
func readInt(fsys fsys, path string) (int64, error) {
	s, err := readAttr(fsys, path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 0, 64)
	if err != nil {
		return 0, fmt.Errorf("configfs: parse %s: %w", path, err)
	}
	return v, nil
}

// ValidateName reports whether name can be a backstore object name:
// 1 to 128 bytes of [A-Za-z0-9_.-], and not "." or "..". The set keeps
// names safe in configfs paths, in the UIO name and in the control
// string, whose separators are ',' and '\n'.
func ValidateName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("tcmu: name %q: length must be 1 to %d bytes", name, maxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("tcmu: name %q is reserved", name)
	}
	for _, c := range []byte(name) {
		if !isNameByte(c) {
			return fmt.Errorf("tcmu: name %q: byte %q not in [A-Za-z0-9_.-]", name, c)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
		'0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

// validateConfig checks the part of dev_config after "lunbridge/". The
// control parser splits on ',' and '\n' (strsep in
// tcmu_set_configfs_dev_params), so neither may appear; control bytes
// would garble the UIO name.
func validateConfig(cfg string) error {
	if len(configPrefix)+len(cfg) > maxDevConfig {
		return fmt.Errorf("tcmu: config %q: dev_config longer than %d bytes", cfg, maxDevConfig)
	}
	for _, c := range []byte(cfg) {
		if c == ',' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("tcmu: config %q: byte %q not allowed", cfg, c)
		}
	}
	return nil
}

// DeviceInfo describes a lunbridge backstore found in configfs.
type DeviceInfo struct {
	Name      string // backstore object name
	HBA       int    // N of target/core/user_N
	Path      string // configfs directory of the backstore
	Config    string // dev_config without the "lunbridge/" prefix
	Size      int64  // attrib/dev_size in bytes
	BlockSize uint32 // attrib/hw_block_size
	// MaxSectors is attrib/hw_max_sectors, the largest transfer in
	// blocks (0 if unreadable).
	MaxSectors uint32
	Enabled    bool // enable reads 1: the kernel configured the device
	// Linked is true while a fabric LUN links the backstore: the
	// device's info attribute reads "Status: ACTIVATED" once it is
	// exported (export_count > 0).
	Linked bool
}

// ListDevices returns the lunbridge backstores under configfsRoot
// (normally /sys/kernel/config), in every target/core/user_N HBA. Other
// user backstores are skipped. It reads configfs only.
func ListDevices(configfsRoot string) ([]DeviceInfo, error) {
	return listDevices(configfs.OS{}, configfsRoot)
}

// ListDevicesIn is ListDevices through fsys (nil: the real file system).
func ListDevicesIn(fsys configfs.FS, configfsRoot string) ([]DeviceInfo, error) {
	return listDevices(configfs.Or(fsys), configfsRoot)
}

func listDevices(fsys fsys, root string) ([]DeviceInfo, error) {
	core := filepath.Join(root, "target", "core")
	hbas, err := fsys.ReadDir(core)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tcmu: list %s: %w", core, err)
	}
	var out []DeviceInfo
	var errs []error
	for _, h := range hbas {
		n, ok := strings.CutPrefix(h, "user_")
		if !ok {
			continue
		}
		hba, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		names, err := fsys.ReadDir(filepath.Join(core, h))
		if err != nil {
			errs = append(errs, fmt.Errorf("tcmu: list %s: %w", h, err))
			continue
		}
		for _, name := range names {
			dir := filepath.Join(core, h, name)
			if st, err := fsys.Stat(dir); err != nil || !st.IsDir() {
				continue // hba_info, hba_mode
			}
			info, ours, err := readDeviceInfo(fsys, dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if !ours {
				continue
			}
			info.Name, info.HBA = name, hba
			out = append(out, info)
		}
	}
	return out, errors.Join(errs...)
}

// readDeviceInfo reads a backstore's attributes. ours is false when its
// dev_config lacks the lunbridge prefix; the rest is then not read.
func readDeviceInfo(fsys fsys, dir string) (info DeviceInfo, ours bool, err error) {
	dc, err := readAttr(fsys, filepath.Join(dir, "attrib", "dev_config"))
	if err != nil {
		return info, false, err
	}
	cfg, ours := strings.CutPrefix(dc, configPrefix)
	if !ours {
		return info, false, nil
	}
	info.Path, info.Config = dir, cfg
	if info.Size, err = readInt(fsys, filepath.Join(dir, "attrib", "dev_size")); err != nil {
		return info, true, err
	}
	bs, err := readInt(fsys, filepath.Join(dir, "attrib", "hw_block_size"))
	if err != nil {
		return info, true, err
	}
	info.BlockSize = uint32(bs)
	if ms, err := readInt(fsys, filepath.Join(dir, "attrib", "hw_max_sectors")); err == nil {
		info.MaxSectors = uint32(ms)
	}
	en, err := readAttr(fsys, filepath.Join(dir, "enable"))
	if err != nil {
		return info, true, err
	}
	info.Enabled = strings.TrimSpace(en) == "1"
	st, err := readAttr(fsys, filepath.Join(dir, "info"))
	if err != nil {
		return info, true, err
	}
	info.Linked = strings.Contains(st, "Status: ACTIVATED")
	return info, true, nil
}
