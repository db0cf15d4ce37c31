package fabric

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// fakeKernel is a fsys over a temporary directory that behaves like the
// configfs groups of tcm_loop and iscsi_target_mod: mkdir creates the
// default attributes and groups, rmdir removes them and refuses while
// user-made entries remain or a symlink points at the directory, and a
// loopback LUN link with a nexus registers a SCSI disk in the fake sysfs.
// Mutations are logged relative to the root.
type fakeKernel struct {
	root                 string
	configfs, sysfs, dev string

	mu sync.Mutex
	// All fields below are protected by mu.
	log      []string
	made     map[string][]string // kernel-made entries per directory
	hosts    map[string]int      // loopback WWN -> SCSI host number
	nextHost int
	nextDisk int
	// noScan makes loopback links register no disk (a scan that fails).
	noScan bool
	// failWrite makes writes to paths ending in it fail with EIO.
	failWrite string
}

func newFakeKernel(t *testing.T) *fakeKernel {
	t.Helper()
	root := t.TempDir()
	k := &fakeKernel{
		root:     root,
		configfs: filepath.Join(root, "config"),
		sysfs:    filepath.Join(root, "sys"),
		dev:      filepath.Join(root, "dev"),
		made:     map[string][]string{},
		hosts:    map[string]int{},
		nextHost: 2,
	}
	for _, d := range []string{
		filepath.Join(k.configfs, "target", "loopback"),
		filepath.Join(k.configfs, "target", "iscsi"),
		filepath.Join(k.configfs, "target", "core", "fileio_0", "disk0"),
		filepath.Join(k.configfs, "target", "core", "fileio_0", "disk1"),
		filepath.Join(k.sysfs, "class", "scsi_device"),
		k.dev,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func (k *fakeKernel) backstore(n int) string {
	return filepath.Join(k.configfs, "target", "core", "fileio_0", fmt.Sprintf("disk%d", n))
}

func (k *fakeKernel) rel(p string) string {
	if r, err := filepath.Rel(k.root, p); err == nil {
		return r
	}
	return p
}

func (k *fakeKernel) record(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, fmt.Sprintf(format, args...))
}

func (k *fakeKernel) takeLog() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.log
	k.log = nil
	return l
}

// create makes kernel-owned entries in dir: names ending in '/' are
// directories, others files with the given content.
func (k *fakeKernel) create(dir string, entries map[string]string) {
	for name, v := range entries {
		p := filepath.Join(dir, name)
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.MkdirAll(p, 0o755)
		} else {
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte(v), 0o644)
			}
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
// target/.
func (k *fakeKernel) classify(p string) (string, []string) {
	r, err := filepath.Rel(filepath.Join(k.configfs, "target"), p)
	if err != nil || strings.HasPrefix(r, "..") {
		return "", nil
	}
	parts := strings.Split(r, "/")
	n := len(parts)
	switch {
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

func (k *fakeKernel) Mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	k.record("mkdir %s", k.rel(p))
	kind, parts := k.classify(p)
	switch kind {
	case "wwn":
		k.create(p, map[string]string{"fabric_statistics/": ""})
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
		k.create(p, map[string]string{
			"nexus": "", "transport_status": "online\n",
			"address": fmt.Sprintf("%d:0:%s\n", host, strings.TrimPrefix(parts[2], "tpgt_")),
			"lun/":    "", "acls/": "", "np/": "", "attrib/": "", "auth/": "", "param/": "",
		})
	case "iscsi-tpg":
		k.create(p, map[string]string{
			"enable": "0\n", "dynamic_sessions": "",
			"lun/": "", "acls/": "", "np/": "", "param/": "",
			"attrib/authentication": "1\n", "attrib/generate_node_acls": "0\n",
			"attrib/cache_dynamic_acls": "0\n", "attrib/demo_mode_write_protect": "1\n",
			"auth/userid": "\n", "auth/password": "\n", "auth/userid_mutual": "\n",
			"auth/password_mutual": "\n", "auth/authenticate_target": "0\n",
		})
	case "lun":
		k.create(p, map[string]string{"statistics/": "", "alua_tg_pt_gp": ""})
	case "acl":
		k.create(p, map[string]string{
			"attrib/": "", "param/": "", "fabric_statistics/": "", "info": "", "cmdsn_depth": "64\n",
			"auth/userid": "\n", "auth/password": "\n", "auth/userid_mutual": "\n",
			"auth/password_mutual": "\n", "auth/authenticate_target": "0\n",
		})
	case "mapped":
		k.create(p, map[string]string{"write_protect": "0\n"})
	case "np":
		k.create(p, map[string]string{"iser": "0\n", "cxgbit": "0\n"})
	}
	return nil
}

func (k *fakeKernel) Symlink(oldname, newname string) error {
	if !filepath.IsAbs(oldname) {
		return syscall.ENOENT // configfs resolves the target from the cwd
	}
	if st, err := os.Stat(oldname); err != nil || !st.IsDir() {
		return syscall.ENOENT
	}
	if err := os.Symlink(oldname, newname); err != nil {
		return err
	}
	k.record("link %s -> %s", k.rel(newname), k.rel(oldname))
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
				k.create(filepath.Join(k.sysfs, "class", "scsi_device"),
					map[string]string{hctl + "/device/block/" + disk + "/": ""})
			}
		}
	}
	return nil
}

// hctl returns H:0:T:L for a loopback LUN directory.
func (k *fakeKernel) hctl(lunDir string) (string, bool) {
	tpg := filepath.Dir(filepath.Dir(lunDir))
	addr, err := os.ReadFile(filepath.Join(tpg, "address"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(addr)) + ":" + strings.TrimPrefix(filepath.Base(lunDir), "lun_"), true
}

func (k *fakeKernel) Readlink(p string) (string, error) { return os.Readlink(p) }

func (k *fakeKernel) Unlink(p string) error {
	if _, err := os.Readlink(p); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	k.record("unlink %s", k.rel(p))
	lunDir := filepath.Dir(p)
	if kind, parts := k.classify(lunDir); kind == "lun" && parts[0] == "loopback" {
		if hctl, ok := k.hctl(lunDir); ok {
			os.RemoveAll(filepath.Join(k.sysfs, "class", "scsi_device", hctl))
		}
	}
	return nil
}

// linkedTo reports whether a symlink under configfs points at dir.
func (k *fakeKernel) linkedTo(dir string) bool {
	found := false
	filepath.WalkDir(k.configfs, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink != 0 {
			if t, _ := os.Readlink(p); filepath.Clean(t) == dir {
				found = true
			}
		}
		return nil
	})
	return found
}

func (k *fakeKernel) Rmdir(p string) error {
	if _, err := os.Stat(p); err != nil {
		return err
	}
	if k.linkedTo(p) {
		return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EBUSY}
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
	k.record("rmdir %s", k.rel(p))
	return nil
}

func (k *fakeKernel) WriteFile(p, data string) error {
	if _, err := os.Stat(p); err != nil {
		return err
	}
	k.mu.Lock()
	fail := k.failWrite != "" && strings.HasSuffix(p, k.failWrite)
	k.mu.Unlock()
	if fail {
		return &fs.PathError{Op: "write", Path: p, Err: syscall.EIO}
	}
	k.record("write %s=%s", k.rel(p), data)
	return os.WriteFile(p, []byte(data), 0o644)
}

func (k *fakeKernel) ReadFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

func (k *fakeKernel) ReadDir(p string) ([]string, error) { return osFS{}.ReadDir(p) }

func (k *fakeKernel) Stat(p string) (fs.FileInfo, error) { return os.Stat(p) }

// tree lists every path under the configfs root.
func (k *fakeKernel) tree(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(k.configfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, k.rel(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
