package tcmu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// fakeKernel is a fsys over a temporary directory that behaves like the
// parts of configfs and sysfs this package drives: mkdir of a backstore
// makes its attributes, control is parsed like tcmu_set_configfs_dev_params,
// enable registers a UIO device (a regular file holding a mailbox), and
// action/ files check their preconditions. Every mutation is logged
// relative to the root, so tests can compare the exact sequence.
type fakeKernel struct {
	osFS
	root                 string
	configfs, sysfs, dev string

	mu sync.Mutex
	// log is protected by mu.
	log []string
	// made lists, per directory, the entries the "kernel" created in it;
	// rmdir removes them as configfs does. Protected by mu.
	made map[string][]string
	// dropTokens are control tokens the fake ignores, as a kernel
	// without them would.
	dropTokens map[string]bool
	// resizeErr is returned by writes to attrib/dev_size once enabled.
	resizeErr error
	nextUIO   int
}

const fakeMapSize = 1 << 16

func newFakeKernel(t *testing.T) *fakeKernel {
	t.Helper()
	root := t.TempDir()
	k := &fakeKernel{
		root:     root,
		configfs: filepath.Join(root, "config"),
		sysfs:    filepath.Join(root, "sys"),
		dev:      filepath.Join(root, "dev"),
		made:     map[string][]string{},
	}
	for _, d := range []string{
		filepath.Join(k.configfs, "target", "core"),
		filepath.Join(k.sysfs, "class", "uio"),
		k.dev,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func (k *fakeKernel) rel(p string) string {
	r, err := filepath.Rel(k.root, p)
	if err != nil {
		return p
	}
	return r
}

func (k *fakeKernel) record(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.log = append(k.log, fmt.Sprintf(format, args...))
}

// takeLog returns the log and clears it.
func (k *fakeKernel) takeLog() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.log
	k.log = nil
	return l
}

func (k *fakeKernel) create(dir string, files map[string]string) {
	for name, v := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			panic(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			panic(err)
		}
		top, _, _ := strings.Cut(name, "/")
		k.mu.Lock()
		if !slices.Contains(k.made[dir], top) {
			k.made[dir] = append(k.made[dir], top)
		}
		k.mu.Unlock()
	}
}

// kind classifies a configfs path: "hba", "backstore" or "".
func (k *fakeKernel) kind(p string) string {
	r, err := filepath.Rel(filepath.Join(k.configfs, "target", "core"), p)
	if err != nil || strings.HasPrefix(r, "..") {
		return ""
	}
	parts := strings.Split(r, "/")
	if !strings.HasPrefix(parts[0], "user_") {
		return ""
	}
	switch len(parts) {
	case 1:
		return "hba"
	case 2:
		return "backstore"
	}
	return ""
}

func (k *fakeKernel) Mkdir(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil {
		return err
	}
	k.record("mkdir %s", k.rel(p))
	switch k.kind(p) {
	case "hba":
		k.create(p, map[string]string{"hba_info": "HBA Index: 1\n", "hba_mode": "0\n"})
	case "backstore":
		k.create(p, map[string]string{
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
	}
	return nil
}

func (k *fakeKernel) enabled(dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, "enable"))
	return strings.TrimSpace(string(b)) == "1"
}

func (k *fakeKernel) setAttr(dir, name, v string) {
	if err := os.WriteFile(filepath.Join(dir, "attrib", name), []byte(v+"\n"), 0o644); err != nil {
		panic(err)
	}
}

func (k *fakeKernel) getAttr(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "attrib", name))
	return strings.TrimSpace(string(b))
}

func (k *fakeKernel) WriteFile(p, data string) error {
	if _, err := os.Stat(p); err != nil {
		return err // configfs attributes are never created by a write
	}
	k.record("write %s=%s", k.rel(p), data)
	dir, name := filepath.Split(p)
	dir = filepath.Clean(dir)
	switch {
	case k.kind(dir) == "backstore" && name == "control":
		for _, tok := range strings.Split(data, ",") {
			key, val, _ := strings.Cut(tok, "=")
			switch key {
			case "dev_config", "dev_size", "hw_block_size", "hw_max_sectors",
				"max_data_area_mb", "nl_reply_supported":
				if !k.dropTokens[key] {
					k.setAttr(dir, key, val)
				}
			}
		}
		return nil
	case k.kind(dir) == "backstore" && name == "enable":
		if data != "1" || k.enabled(dir) {
			return syscall.EINVAL
		}
		if k.getAttr(dir, "hw_block_size") == "0" {
			k.setAttr(dir, "hw_block_size", "512")
		}
		if k.getAttr(dir, "hw_max_sectors") == "0" {
			k.setAttr(dir, "hw_max_sectors", "128")
		}
		k.registerUIO(dir)
		return os.WriteFile(p, []byte("1\n"), 0o644)
	case filepath.Base(dir) == "attrib" && k.kind(filepath.Dir(dir)) == "backstore":
		bs := filepath.Dir(dir)
		if name == "dev_size" && k.enabled(bs) && k.resizeErr != nil {
			return k.resizeErr
		}
		return os.WriteFile(p, []byte(data+"\n"), 0o644)
	case filepath.Base(dir) == "action" && k.kind(filepath.Dir(dir)) == "backstore":
		if !k.enabled(filepath.Dir(dir)) {
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

// registerUIO plays uio_register_device for the backstore at dir.
func (k *fakeKernel) registerUIO(dir string) {
	k.mu.Lock()
	n := "uio" + strconv.Itoa(k.nextUIO)
	k.nextUIO++
	k.mu.Unlock()
	hba := strings.TrimPrefix(filepath.Base(filepath.Dir(dir)), "user_")
	name := fmt.Sprintf("tcm-user/%s/%s/%s", hba, filepath.Base(dir), k.getAttr(dir, "dev_config"))
	k.create(filepath.Join(k.sysfs, "class", "uio"), map[string]string{
		n + "/name":           name + "\n",
		n + "/maps/map0/size": fmt.Sprintf("0x%08x\n", fakeMapSize),
	})
	mem := make([]byte, fakeMapSize)
	binary.NativeEndian.PutUint16(mem[0:], 2)      // version
	binary.NativeEndian.PutUint16(mem[2:], 0xf)    // flags
	binary.NativeEndian.PutUint32(mem[4:], 128)    // cmdr_off
	binary.NativeEndian.PutUint32(mem[8:], 0x8000) // cmdr_size
	if err := os.WriteFile(filepath.Join(k.dev, n), mem, 0o600); err != nil {
		panic(err)
	}
	// Remember which UIO belongs to the backstore, for rmdir.
	k.create(dir, map[string]string{".uio": n})
}

func (k *fakeKernel) Rmdir(p string) error {
	switch k.kind(p) {
	case "backstore":
		info, _ := os.ReadFile(filepath.Join(p, "info"))
		if strings.Contains(string(info), "Status: ACTIVATED") {
			return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.EBUSY}
		}
		if n, err := os.ReadFile(filepath.Join(p, ".uio")); err == nil {
			os.RemoveAll(filepath.Join(k.sysfs, "class", "uio", string(n)))
			os.Remove(filepath.Join(k.dev, string(n)))
		}
		fallthrough
	case "hba":
		if _, err := os.Stat(p); err != nil {
			return err
		}
		// configfs refuses rmdir while user-made children exist.
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
		k.mu.Lock()
		delete(k.made, p)
		k.mu.Unlock()
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	k.record("rmdir %s", k.rel(p))
	return nil
}

// tree lists every path under the configfs root, for before/after checks.
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

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"disk0", true},
		{"a", true},
		{"A-b_c.d", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{".", false},
		{"..", false},
		{"...", true},
		{"a/b", false},
		{"a,b", false},
		{"a b", false},
		{"disk\n", false},
		{"é", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg string
		ok  bool
	}{
		{"", true},
		{"disk0", true},
		{"/srv/images/a.img", true},
		{"a b", true},
		{"a,b", false},
		{"a\nb", false},
		{"a\x00", false},
		{strings.Repeat("x", 255-len("lunbridge/")), true},
		{strings.Repeat("x", 256-len("lunbridge/")), false},
	} {
		err := validateConfig(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("validateConfig(%q) = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

func TestListDevices(t *testing.T) {
	k := newFakeKernel(t)
	ctx := t.Context()
	a, err := openDevice(ctx, k, k.config("a", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := openDevice(ctx, k, k.config("b", 3))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	k.foreign(t, 0, "other", "file/x")
	// Mark b as linked, as the kernel does once a LUN exports it.
	if err := os.WriteFile(filepath.Join(b.Path(), "info"), []byte("Status: ACTIVATED  Max Queue Depth: 128\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	got, err := listDevices(k, k.configfs)
	if err != nil {
		t.Fatal(err)
	}
	want := []DeviceInfo{
		{Name: "a", HBA: 0, Path: a.Path(), Config: "a", Size: 1 << 20, BlockSize: 512, MaxSectors: DefaultMaxSectors, Enabled: true},
		{Name: "b", HBA: 3, Path: b.Path(), Config: "b", Size: 1 << 20, BlockSize: 512, MaxSectors: DefaultMaxSectors, Enabled: true, Linked: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("listDevices = %+v, want %+v", got, want)
	}
}

func TestListDevicesNoTarget(t *testing.T) {
	got, err := ListDevices(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("ListDevices(empty) = %v, %v, want none, nil", got, err)
	}
}

func TestReadIntHex(t *testing.T) {
	k := newFakeKernel(t)
	p := filepath.Join(k.root, "size")
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0x40800000\n", 0x40800000, true},
		{"30\n", 30, true},
		{"-1\n", -1, true},
		{"abc\n", 0, false},
	} {
		if err := os.WriteFile(p, []byte(tc.in), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readInt(k, p)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("readInt(%q) = %d, %v, want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if _, err := readInt(k, filepath.Join(k.root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readInt(missing) = %v, want ErrNotExist", err)
	}
}
