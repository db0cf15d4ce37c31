// SPDX-License-Identifier: Apache-2.0

package configfs

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// FakeMapSize is the size of the shared memory of a fake UIO device.
const FakeMapSize = 1 << 16

// Fake is an FS over a temporary directory that behaves like the parts of
// configfs and sysfs lunbridge drives (see the package documentation).
// Configfs, Sysfs and Dev are the roots to give the code under test.
type Fake struct {
	OS
	Root                 string
	Configfs, Sysfs, Dev string

	mu sync.Mutex
	// All fields below are protected by mu.
	log      []string
	made     map[string][]string // kernel-made entries per directory
	hosts    map[string]int      // loopback WWN -> SCSI host number
	nextHost int
	nextDisk int
	nextUIO  int
	// noScan makes loopback links register no disk (a scan that fails).
	noScan bool
	// failWrite makes writes to paths ending in it fail with EIO.
	failWrite string
	// dropTokens are control tokens the fake ignores, as a kernel
	// without them would.
	dropTokens map[string]bool
	// resizeErr is returned by writes to attrib/dev_size once enabled.
	resizeErr error
}

var _ FS = (*Fake)(nil)

// NewFake returns a fake kernel over the empty directory root, with
// target/core, target/loopback and target/iscsi present (the modules
// loaded), an empty sysfs and /dev.
func NewFake(root string) (*Fake, error) {
	k := &Fake{
		Root:     root,
		Configfs: filepath.Join(root, "config"),
		Sysfs:    filepath.Join(root, "sys"),
		Dev:      filepath.Join(root, "dev"),
		made:     map[string][]string{},
		hosts:    map[string]int{},
		nextHost: 2,
	}
	for _, d := range []string{
		filepath.Join(k.Configfs, "target", "core"),
		filepath.Join(k.Configfs, "target", "loopback"),
		filepath.Join(k.Configfs, "target", "iscsi"),
		filepath.Join(k.Sysfs, "class", "uio"),
		filepath.Join(k.Sysfs, "class", "scsi_device"),
		k.Dev,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// SetNoScan makes loopback LUN links register no disk, as when the
// kernel's scan of the new LUN fails.
func (k *Fake) SetNoScan(v bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.noScan = v
}

// SetFailWrite makes writes to paths ending in suffix fail with EIO; ""
// turns it off.
func (k *Fake) SetFailWrite(suffix string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failWrite = suffix
}

// SetDropTokens makes the backstore control parser ignore these tokens,
// as a kernel that does not know them does.
func (k *Fake) SetDropTokens(tokens ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropTokens = map[string]bool{}
	for _, t := range tokens {
		k.dropTokens[t] = true
	}
}

// SetResizeErr makes writes to an enabled backstore's attrib/dev_size
// fail with err.
func (k *Fake) SetResizeErr(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.resizeErr = err
}

// Rel returns p relative to the fake's root, as the log shows it.
func (k *Fake) Rel(p string) string {
	if r, err := filepath.Rel(k.Root, p); err == nil {
		return r
	}
	return p
}

func (k *Fake) record(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, fmt.Sprintf(format, args...))
}

// TakeLog returns the changes made since the last call ("mkdir P",
// "rmdir P", "write P=V", "link P -> T", "unlink P"; paths relative to
// the root) and clears the log.
func (k *Fake) TakeLog() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.log
	k.log = nil
	return l
}

// Tree lists every path under the configfs root, for before/after checks.
func (k *Fake) Tree() ([]string, error) {
	var out []string
	err := filepath.WalkDir(k.Configfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, k.Rel(p))
		return nil
	})
	return out, err
}

// Create makes kernel-owned entries in dir, which rmdir of dir removes
// with it: names ending in '/' are directories, others files with the
// given content.
func (k *Fake) Create(dir string, entries map[string]string) {
	for name, v := range entries {
		p := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.MkdirAll(p, 0o755)
		} else if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			panic(err)
		}
		top, _, _ := strings.Cut(strings.TrimSuffix(name, "/"), "/")
		k.mu.Lock()
		if !slices.Contains(k.made[dir], top) {
			k.made[dir] = append(k.made[dir], top)
		}
		k.mu.Unlock()
	}
}

// classify returns the configfs role of p and the path parts below
// target/: "hba", "backstore", "wwn", "loopback-tpg", "iscsi-tpg", "lun",
// "acl", "mapped", "np" or "".
func (k *Fake) classify(p string) (string, []string) {
	r, err := filepath.Rel(filepath.Join(k.Configfs, "target"), p)
	if err != nil || strings.HasPrefix(r, "..") {
		return "", nil
	}
	parts := strings.Split(r, "/")
	n := len(parts)
	switch {
	case n == 2 && parts[0] == "core" && strings.HasPrefix(parts[1], "user_"):
		return "hba", parts
	case n == 3 && parts[0] == "core" && strings.HasPrefix(parts[1], "user_"):
		return "backstore", parts
	case parts[0] == "core":
		return "", parts
	case n == 2 && (parts[0] == "loopback" || parts[0] == "iscsi"):
		return "wwn", parts
	case n == 3 && strings.HasPrefix(parts[2], "tpgt_"):
		return parts[0] + "-tpg", parts
	case n == 5 && parts[3] == "lun":
		return "lun", parts
	case n == 5 && parts[3] == "acls":
		return "acl", parts
	case n == 6 && parts[3] == "acls":
		return "mapped", parts
	case n == 5 && parts[3] == "np":
		return "np", parts
	}
	return "", parts
}

// Mkdir makes a directory and, for a configfs object, its attributes.
func (k *Fake) Mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	k.record("mkdir %s", k.Rel(p))
	kind, parts := k.classify(p)
	switch kind {
	case "hba":
		k.Create(p, map[string]string{"hba_info": "HBA Index: 1\n", "hba_mode": "0\n"})
	case "backstore":
		k.Create(p, map[string]string{
			"control":                    "",
			"enable":                     "0\n",
			"info":                       "Status: DEACTIVATED  Max Queue Depth: 0\n",
			"attrib/cmd_time_out":        "30\n",
			"attrib/qfull_time_out":      "-1\n",
			"attrib/max_data_area_mb":    "1024\n",
			"attrib/dev_config":          "\n",
			"attrib/dev_size":            "0\n",
			"attrib/emulate_write_cache": "0\n",
			"attrib/tmr_notification":    "0\n",
			"attrib/nl_reply_supported":  "0\n",
			"attrib/hw_block_size":       "0\n",
			"attrib/hw_max_sectors":      "0\n",
			"action/block_dev":           "unblocked\n",
			"action/reset_ring":          "",
			"action/free_kept_buf":       "",
		})
	case "wwn":
		k.Create(p, map[string]string{"fabric_statistics/": ""})
		if parts[0] == "loopback" {
			k.mu.Lock()
			k.hosts[parts[1]] = k.nextHost
			k.nextHost++
			k.mu.Unlock()
		}
	case "loopback-tpg":
		k.mu.Lock()
		host := k.hosts[parts[1]]
		k.mu.Unlock()
		k.Create(p, map[string]string{
			"nexus": "", "transport_status": "online\n",
			"address": fmt.Sprintf("%d:0:%s\n", host, strings.TrimPrefix(parts[2], "tpgt_")),
			"lun/":    "", "acls/": "", "np/": "", "attrib/": "", "auth/": "", "param/": "",
		})
	case "iscsi-tpg":
		k.Create(p, map[string]string{
			"enable": "0\n", "dynamic_sessions": "",
			"lun/": "", "acls/": "", "np/": "", "param/": "",
			"attrib/authentication": "1\n", "attrib/generate_node_acls": "0\n",
			"attrib/cache_dynamic_acls": "0\n", "attrib/demo_mode_write_protect": "1\n",
			"auth/userid": "\n", "auth/password": "\n", "auth/userid_mutual": "\n",
			"auth/password_mutual": "\n", "auth/authenticate_target": "0\n",
		})
	case "lun":
		k.Create(p, map[string]string{"statistics/": "", "alua_tg_pt_gp": ""})
	case "acl":
		k.Create(p, map[string]string{
			"attrib/": "", "param/": "", "fabric_statistics/": "", "info": "", "cmdsn_depth": "64\n",
			"auth/userid": "\n", "auth/password": "\n", "auth/userid_mutual": "\n",
			"auth/password_mutual": "\n", "auth/authenticate_target": "0\n",
		})
	case "mapped":
		k.Create(p, map[string]string{"write_protect": "0\n"})
	case "np":
		k.Create(p, map[string]string{"iser": "0\n", "cxgbit": "0\n"})
	}
	return nil
}

// Symlink links newname to oldname, which must be an absolute path to a
// directory. A link to a backstore activates it; a loopback LUN link
// with a nexus registers a SCSI disk in sysfs.
func (k *Fake) Symlink(oldname, newname string) error {
	if !filepath.IsAbs(oldname) {
		return syscall.ENOENT // configfs resolves the target from the cwd
	}
	if st, err := os.Stat(oldname); err != nil || !st.IsDir() {
		return syscall.ENOENT
	}
	if err := os.Symlink(oldname, newname); err != nil {
		return err
	}
	k.record("link %s -> %s", k.Rel(newname), k.Rel(oldname))
	if kind, _ := k.classify(oldname); kind == "backstore" {
		// export_count > 0: the info attribute says ACTIVATED.
		k.setInfo(oldname, "ACTIVATED")
	}
	lunDir := filepath.Dir(newname)
	if kind, parts := k.classify(lunDir); kind == "lun" && parts[0] == "loopback" {
		tpg := filepath.Dir(filepath.Dir(lunDir))
		nexus, _ := os.ReadFile(filepath.Join(tpg, "nexus"))
		k.mu.Lock()
		scan := len(nexus) > 0 && !k.noScan
		disk := "sd" + string(rune('a'+k.nextDisk))
		k.nextDisk++
		k.mu.Unlock()
		if scan {
			if hctl, ok := k.hctl(lunDir); ok {
				k.Create(filepath.Join(k.Sysfs, "class", "scsi_device"),
					map[string]string{hctl + "/device/block/" + disk + "/": ""})
			}
		}
	}
	return nil
}

func (k *Fake) setInfo(backstore, status string) {
	info := fmt.Sprintf("Status: %s  Max Queue Depth: 0\n", status)
	if err := os.WriteFile(filepath.Join(backstore, "info"), []byte(info), 0o644); err != nil {
		panic(err)
	}
}

// hctl returns H:0:T:L for a loopback LUN directory.
func (k *Fake) hctl(lunDir string) (string, bool) {
	tpg := filepath.Dir(filepath.Dir(lunDir))
	addr, err := os.ReadFile(filepath.Join(tpg, "address"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(addr)) + ":" + strings.TrimPrefix(filepath.Base(lunDir), "lun_"), true
}

// Unlink removes a symlink, deactivating a backstore nothing else links
// and unregistering a loopback LUN's disk.
func (k *Fake) Unlink(p string) error {
	target, err := os.Readlink(p)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	k.record("unlink %s", k.Rel(p))
	if kind, _ := k.classify(target); kind == "backstore" && !k.linkedTo(target) {
		k.setInfo(target, "DEACTIVATED")
	}
	lunDir := filepath.Dir(p)
	if kind, parts := k.classify(lunDir); kind == "lun" && parts[0] == "loopback" {
		if hctl, ok := k.hctl(lunDir); ok {
			os.RemoveAll(filepath.Join(k.Sysfs, "class", "scsi_device", hctl))
		}
	}
	return nil
}

// linkedTo reports whether a symlink under configfs points at dir.
func (k *Fake) linkedTo(dir string) bool {
	found := false
	filepath.WalkDir(k.Configfs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink != 0 {
			if t, _ := os.Readlink(p); filepath.Clean(t) == filepath.Clean(dir) {
				found = true
			}
		}
		return nil
	})
	return found
}

// Rmdir removes a directory with the entries the kernel made in it. It
// fails with EBUSY while a link points at it (or a backstore is
// exported) and with ENOTEMPTY while user-made entries remain.
func (k *Fake) Rmdir(p string) error {
	if _, err := os.Stat(p); err != nil {
		return err
	}
	if k.linkedTo(p) {
		return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EBUSY}
	}
	if kind, _ := k.classify(p); kind == "backstore" {
		info, _ := os.ReadFile(filepath.Join(p, "info"))
		if strings.Contains(string(info), "Status: ACTIVATED") {
			return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EBUSY}
		}
		if n, err := os.ReadFile(filepath.Join(p, ".uio")); err == nil {
			os.RemoveAll(filepath.Join(k.Sysfs, "class", "uio", string(n)))
			os.Remove(filepath.Join(k.Dev, string(n)))
		}
	}
	ents, _ := os.ReadDir(p)
	k.mu.Lock()
	made := k.made[p]
	k.mu.Unlock()
	for _, e := range ents {
		if !slices.Contains(made, e.Name()) {
			return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTEMPTY}
		}
	}
	for _, m := range made {
		os.RemoveAll(filepath.Join(p, m))
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	k.mu.Lock()
	delete(k.made, p)
	k.mu.Unlock()
	k.record("rmdir %s", k.Rel(p))
	return nil
}

// Attr returns a backstore attribute (attrib/NAME) without white space.
func (k *Fake) Attr(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "attrib", name))
	return strings.TrimSpace(string(b))
}

func (k *Fake) setAttr(dir, name, v string) {
	if err := os.WriteFile(filepath.Join(dir, "attrib", name), []byte(v+"\n"), 0o644); err != nil {
		panic(err)
	}
}

// Enabled reports whether the backstore at dir is enabled.
func (k *Fake) Enabled(dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, "enable"))
	return strings.TrimSpace(string(b)) == "1"
}

// WriteFile writes an existing attribute. A backstore's control is
// parsed like tcmu_set_configfs_dev_params, its enable registers a UIO
// device, and its action/ files check their preconditions.
func (k *Fake) WriteFile(p, data string) error {
	if _, err := os.Stat(p); err != nil {
		return err // configfs attributes are never created by a write
	}
	k.mu.Lock()
	fail := k.failWrite != "" && strings.HasSuffix(p, k.failWrite)
	drop := k.dropTokens
	resizeErr := k.resizeErr
	k.mu.Unlock()
	if fail {
		return &fs.PathError{Op: "write", Path: p, Err: syscall.EIO}
	}
	k.record("write %s=%s", k.Rel(p), data)
	dir, name := filepath.Split(p)
	dir = filepath.Clean(dir)
	kind, _ := k.classify(dir)
	parentKind, _ := k.classify(filepath.Dir(dir))
	switch {
	case kind == "backstore" && name == "control":
		for _, tok := range strings.Split(data, ",") {
			key, val, _ := strings.Cut(tok, "=")
			switch key {
			case "dev_config", "dev_size", "hw_block_size", "hw_max_sectors",
				"max_data_area_mb", "nl_reply_supported":
				if !drop[key] {
					k.setAttr(dir, key, val)
				}
			}
		}
		return nil
	case kind == "backstore" && name == "enable":
		if data != "1" || k.Enabled(dir) {
			return syscall.EINVAL
		}
		if k.Attr(dir, "hw_block_size") == "0" {
			k.setAttr(dir, "hw_block_size", "512")
		}
		if k.Attr(dir, "hw_max_sectors") == "0" {
			k.setAttr(dir, "hw_max_sectors", "128")
		}
		k.registerUIO(dir)
		return os.WriteFile(p, []byte("1\n"), 0o644)
	case filepath.Base(dir) == "attrib" && parentKind == "backstore":
		bs := filepath.Dir(dir)
		if name == "dev_size" && k.Enabled(bs) && resizeErr != nil {
			return resizeErr
		}
		return os.WriteFile(p, []byte(data+"\n"), 0o644)
	case filepath.Base(dir) == "action" && parentKind == "backstore":
		if !k.Enabled(filepath.Dir(dir)) {
			return syscall.EINVAL
		}
		switch name {
		case "block_dev":
			if data != "0" && data != "1" {
				return syscall.EINVAL
			}
			return os.WriteFile(p, []byte(map[string]string{"0": "unblocked\n", "1": "blocked\n"}[data]), 0o644)
		case "reset_ring":
			if data != "1" && data != "2" {
				return syscall.EINVAL
			}
		}
		return nil
	}
	return os.WriteFile(p, []byte(data), 0o644)
}

// registerUIO plays uio_register_device for the backstore at dir: a
// sysfs entry named like TCMU names it, and a /dev/uioN regular file
// holding a version 2 mailbox.
func (k *Fake) registerUIO(dir string) {
	k.mu.Lock()
	n := "uio" + strconv.Itoa(k.nextUIO)
	k.nextUIO++
	k.mu.Unlock()
	hba := strings.TrimPrefix(filepath.Base(filepath.Dir(dir)), "user_")
	name := fmt.Sprintf("tcm-user/%s/%s/%s", hba, filepath.Base(dir), k.Attr(dir, "dev_config"))
	k.Create(filepath.Join(k.Sysfs, "class", "uio"), map[string]string{
		n + "/name":           name + "\n",
		n + "/maps/map0/size": fmt.Sprintf("0x%08x\n", FakeMapSize),
	})
	mem := make([]byte, FakeMapSize)
	binary.NativeEndian.PutUint16(mem[0:], 2)      // version
	binary.NativeEndian.PutUint16(mem[2:], 0xf)    // flags
	binary.NativeEndian.PutUint32(mem[4:], 128)    // cmdr_off
	binary.NativeEndian.PutUint32(mem[8:], 0x8000) // cmdr_size
	if err := os.WriteFile(filepath.Join(k.Dev, n), mem, 0o600); err != nil {
		panic(err)
	}
	// Remember which UIO belongs to the backstore, for rmdir.
	k.Create(dir, map[string]string{".uio": n})
}
