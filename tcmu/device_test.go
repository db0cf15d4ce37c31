// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// config returns a DeviceConfig rooted in the fake kernel.
func (k fakeKernel) config(name string, hba int) DeviceConfig {
	return DeviceConfig{
		Name:         name,
		HBA:          hba,
		Config:       name,
		Size:         1 << 20,
		BlockSize:    512,
		ConfigfsRoot: k.Configfs,
		SysfsRoot:    k.Sysfs,
		DevRoot:      k.Dev,
	}
}

// foreign creates an enabled backstore as another tool would.
func (k fakeKernel) foreign(t *testing.T, hba int, name, devConfig string) string {
	t.Helper()
	h := filepath.Join(k.Configfs, "target", "core", "user_"+string(rune('0'+hba)))
	if err := k.Mkdir(h); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	dir := filepath.Join(h, name)
	if err := k.Mkdir(dir); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(filepath.Join(dir, "control"), "dev_config="+devConfig+",dev_size=4096"); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(filepath.Join(dir, "enable"), "1"); err != nil {
		t.Fatal(err)
	}
	k.takeLog()
	return dir
}

func TestOpenDeviceCreates(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	cfg := k.config("disk0", 0)
	cfg.Config = "disk0.img"
	cfg.MaxDataAreaMB = 64
	cfg.QfullTimeout = 5 * time.Second
	cfg.CmdTimeout = 1500 * time.Millisecond
	cfg.WriteCache = true
	cfg.TMRNotify = true
	d, err := openDevice(t.Context(), k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bs := "config/target/core/user_0/disk0"
	want := []string{
		"mkdir config/target/core/user_0",
		"mkdir " + bs,
		"write " + bs + "/control=dev_config=lunbridge/disk0.img,dev_size=1048576," +
			"hw_block_size=512,hw_max_sectors=2048,max_data_area_mb=64,nl_reply_supported=-1",
		"write " + bs + "/attrib/cmd_time_out=2", // rounded up
		"write " + bs + "/attrib/emulate_write_cache=1",
		"write " + bs + "/attrib/tmr_notification=1",
		"write " + bs + "/attrib/qfull_time_out=5",
		"write " + bs + "/enable=1",
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("operations:\n got %q\nwant %q", got, want)
	}
	if d.Adopted() {
		t.Error("Adopted() = true for a new device")
	}
	if got, want := d.UIO(), filepath.Join(k.Dev, "uio0"); got != want {
		t.Errorf("UIO() = %q, want %q", got, want)
	}
	if got, want := d.Path(), filepath.Join(k.Root, bs); got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	if got := len(d.Mem()); got != fakeMapSize {
		t.Errorf("len(Mem()) = %d, want %d", got, fakeMapSize)
	}
	if got := binary.NativeEndian.Uint32(d.Mem()[4:]); got != 128 {
		t.Errorf("mailbox cmdr_off = %d, want 128", got)
	}
	if got := d.Config(); got.MaxSectors != DefaultMaxSectors || got.CmdTimeout != cfg.CmdTimeout {
		t.Errorf("Config() = %+v, want defaults applied", got)
	}

	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	want = []string{"rmdir " + bs, "rmdir config/target/core/user_0"}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("Remove operations = %q, want %q", got, want)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove = %q, want %q", after, before)
	}
	if d.Mem() != nil {
		t.Error("Mem() != nil after Remove")
	}
	if err := d.Notifier().Kick(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Kick after Remove = %v, want ErrClosed", err)
	}
	if err := d.Notifier().Wait(t.Context()); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Wait after Remove = %v, want ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestOpenDeviceInvalid(t *testing.T) {
	k := newFakeKernel(t)
	for _, tc := range []struct {
		name string
		edit func(*DeviceConfig)
	}{
		{"bad name", func(c *DeviceConfig) { c.Name = "a/b" }},
		{"comma in config", func(c *DeviceConfig) { c.Config = "a,b" }},
		{"block size", func(c *DeviceConfig) { c.BlockSize = 1024 }},
		{"size without block size not multiple", func(c *DeviceConfig) { c.BlockSize = 0; c.Size = 4000 }},
		{"zero size", func(c *DeviceConfig) { c.Size = 0 }},
		{"size not multiple", func(c *DeviceConfig) { c.Size = 1000 }},
		{"4k size not multiple", func(c *DeviceConfig) { c.BlockSize = 4096; c.Size = 4096*3 + 512 }},
		{"max sectors unaligned", func(c *DeviceConfig) { c.MaxSectors = 1020 }},
		{"negative HBA", func(c *DeviceConfig) { c.HBA = -1 }},
		{"negative data area", func(c *DeviceConfig) { c.MaxDataAreaMB = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := k.tree(t)
			cfg := k.config("d", 0)
			tc.edit(&cfg)
			if d, err := openDevice(t.Context(), k, cfg); err == nil {
				d.Remove()
				t.Fatalf("openDevice(%+v) succeeded", cfg)
			}
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("configfs after failure = %q, want %q", after, before)
			}
		})
	}
}

// A zero BlockSize means 512 for a new device.
func TestOpenDeviceDefaultBlockSize(t *testing.T) {
	k := newFakeKernel(t)
	cfg := k.config("d", 0)
	cfg.BlockSize = 0
	d, err := openDevice(t.Context(), k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	if got := d.Config().BlockSize; got != 512 {
		t.Errorf("Config().BlockSize = %d, want 512", got)
	}
	if got := k.Attr(d.Path(), "hw_block_size"); got != "512" {
		t.Errorf("attrib/hw_block_size = %s, want 512", got)
	}
}

func TestOpenDeviceIgnoredToken(t *testing.T) {
	for _, tok := range []string{"hw_max_sectors", "hw_block_size", "nl_reply_supported", "dev_size"} {
		t.Run(tok, func(t *testing.T) {
			k := newFakeKernel(t)
			k.SetDropTokens(tok)
			before := k.tree(t)
			cfg := k.config("d", 0)
			cfg.BlockSize = 4096
			_, err := openDevice(t.Context(), k, cfg)
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "attrib/"+tok) {
				t.Errorf("openDevice with %s ignored = %v, want ErrMismatch naming it", tok, err)
			}
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("configfs after failure = %q, want %q", after, before)
			}
		})
	}
}

func TestOpenDeviceAdopt(t *testing.T) {
	k := newFakeKernel(t)
	cfg := k.config("disk0", 0)
	cfg.BlockSize = 4096
	d, err := openDevice(t.Context(), k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	k.takeLog()

	// Zero size and block size take the kernel's values.
	again := cfg
	again.Size, again.BlockSize = 0, 0
	d2, err := openDevice(t.Context(), k, again)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Remove()
	if !d2.Adopted() {
		t.Error("Adopted() = false for an existing device")
	}
	if got := k.takeLog(); len(got) != 0 {
		t.Errorf("adoption changed configfs: %q", got)
	}
	if got := d2.Config(); got.Size != cfg.Size || got.BlockSize != 4096 || got.MaxSectors != DefaultMaxSectors {
		t.Errorf("adopted Config() = %+v, want size %d, block size 4096, max sectors %d", got, cfg.Size, DefaultMaxSectors)
	}
	if d2.UIO() != d.UIO() {
		t.Errorf("adopted UIO() = %q, want %q", d2.UIO(), d.UIO())
	}
}

func TestOpenDeviceAdoptMismatch(t *testing.T) {
	k := newFakeKernel(t)
	d, err := openDevice(t.Context(), k, k.config("disk0", 0))
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	before := k.tree(t)
	k.takeLog()
	for _, tc := range []struct {
		name string
		edit func(*DeviceConfig)
	}{
		{"size", func(c *DeviceConfig) { c.Size *= 2 }},
		{"block size", func(c *DeviceConfig) { c.BlockSize = 4096 }},
		{"config", func(c *DeviceConfig) { c.Config = "other" }},
	} {
		cfg := k.config("disk0", 0)
		tc.edit(&cfg)
		if _, err := openDevice(t.Context(), k, cfg); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: openDevice = %v, want ErrMismatch", tc.name, err)
		}
	}
	if got := k.takeLog(); len(got) != 0 {
		t.Errorf("mismatched adoption changed configfs: %q", got)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs = %q, want %q", after, before)
	}
}

// A lunbridge backstore left unenabled (crash during creation) is
// configured afresh rather than refused.
func TestOpenDeviceAdoptUnenabled(t *testing.T) {
	k := newFakeKernel(t)
	cfg := k.config("disk0", 0)
	dir := filepath.Join(k.Configfs, "target", "core", "user_0", "disk0")
	if err := k.Mkdir(filepath.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	if err := k.Mkdir(dir); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(filepath.Join(dir, "control"), "dev_config=lunbridge/disk0"); err != nil {
		t.Fatal(err)
	}
	d, err := openDevice(t.Context(), k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	if !d.Adopted() || !k.Enabled(dir) {
		t.Errorf("Adopted() = %v, enabled = %v, want true, true", d.Adopted(), k.Enabled(dir))
	}
}

func TestOpenDeviceNotOurs(t *testing.T) {
	k := newFakeKernel(t)
	k.foreign(t, 0, "disk0", "file/disk0")
	before := k.tree(t)
	_, err := openDevice(t.Context(), k, k.config("disk0", 0))
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("openDevice over a foreign backstore = %v, want ErrNotOurs", err)
	}
	if got := k.takeLog(); len(got) != 0 {
		t.Errorf("foreign backstore touched: %q", got)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs = %q, want %q", after, before)
	}
}

func TestOpenDeviceNoTargetCore(t *testing.T) {
	cfg := DeviceConfig{Name: "d", Size: 4096, BlockSize: 512, ConfigfsRoot: t.TempDir()}
	_, err := OpenDevice(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "configfs mounted") {
		t.Errorf("OpenDevice without target/core = %v, want a hint about configfs", err)
	}
}

func TestOpenDeviceNoUIO(t *testing.T) {
	k := newFakeKernel(t)
	cfg := k.config("d", 0)
	cfg.SysfsRoot = filepath.Join(k.Root, "elsewhere")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	before := k.tree(t)
	if _, err := openDevice(ctx, k, cfg); err == nil {
		t.Fatal("openDevice without a UIO device succeeded")
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after failure = %q, want %q", after, before)
	}
}

func TestDeviceActions(t *testing.T) {
	k := newFakeKernel(t)
	d, err := openDevice(t.Context(), k, k.config("d", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	k.takeLog()
	if err := d.Recover(); err != nil {
		t.Fatal(err)
	}
	a := "config/target/core/user_0/d/action/"
	want := []string{"write " + a + "block_dev=1", "write " + a + "reset_ring=1", "write " + a + "block_dev=0"}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("Recover operations = %q, want %q", got, want)
	}
	if err := d.ResetRing(2); err != nil {
		t.Fatal(err)
	}
	if err := d.ResetRing(3); err == nil {
		t.Error("ResetRing(3) succeeded")
	}
	if got, want := k.takeLog(), []string{"write " + a + "reset_ring=2"}; !slices.Equal(got, want) {
		t.Errorf("ResetRing operations = %q, want %q", got, want)
	}
}

func TestDeviceResize(t *testing.T) {
	k := newFakeKernel(t)
	d, err := openDevice(t.Context(), k, k.config("d", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	if err := d.Resize(2 << 20); err != nil {
		t.Fatal(err)
	}
	if got := d.Config().Size; got != 2<<20 {
		t.Errorf("Config().Size = %d after Resize, want %d", got, 2<<20)
	}
	if got := k.Attr(d.Path(), "dev_size"); got != "2097152" {
		t.Errorf("attrib/dev_size = %s, want 2097152", got)
	}
	if err := d.Resize(2<<20 + 1); err == nil {
		t.Error("Resize to a size that is not a block multiple succeeded")
	}
	k.SetResizeErr(syscall.ESRCH)
	err = d.Resize(4 << 20)
	if !errors.Is(err, syscall.ESRCH) || !strings.Contains(err.Error(), "netlink") {
		t.Errorf("Resize without listener = %v, want ESRCH explained", err)
	}
	if got := d.Config().Size; got != 2<<20 {
		t.Errorf("Config().Size = %d after failed Resize, want %d", got, 2<<20)
	}
}

// Remove refuses while a LUN links the backstore and keeps the device.
func TestDeviceRemoveLinked(t *testing.T) {
	k := newFakeKernel(t)
	d, err := openDevice(t.Context(), k, k.config("d", 0))
	if err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(d.Path(), "info")
	os.WriteFile(info, []byte("Status: ACTIVATED\n"), 0o644)
	if err := d.Remove(); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Remove of a linked backstore = %v, want EBUSY", err)
	}
	os.WriteFile(info, []byte("Status: DEACTIVATED\n"), 0o644)
	if err := d.Remove(); err != nil {
		t.Errorf("Remove = %v", err)
	}
	// A second Remove finds nothing and succeeds.
	if err := d.Remove(); err != nil {
		t.Errorf("second Remove = %v", err)
	}
}

// The HBA is kept while another backstore uses it.
func TestDeviceRemoveKeepsSharedHBA(t *testing.T) {
	k := newFakeKernel(t)
	k.foreign(t, 0, "theirs", "file/x")
	d, err := openDevice(t.Context(), k, k.config("d", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(k.Configfs, "target", "core", "user_0", "theirs")); err != nil {
		t.Errorf("foreign backstore after Remove: %v", err)
	}
}

func TestControlString(t *testing.T) {
	for _, tc := range []struct {
		cfg  DeviceConfig
		want string
	}{
		{DeviceConfig{Config: "x", Size: 4096, BlockSize: 4096, MaxSectors: 256},
			"dev_config=lunbridge/x,dev_size=4096,hw_block_size=4096,hw_max_sectors=256,nl_reply_supported=-1"},
		{DeviceConfig{Size: 512, BlockSize: 512, MaxSectors: 8, MaxDataAreaMB: 16},
			"dev_config=lunbridge/,dev_size=512,hw_block_size=512,hw_max_sectors=8,max_data_area_mb=16,nl_reply_supported=-1"},
	} {
		if got := controlString(tc.cfg); got != tc.want {
			t.Errorf("controlString(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

// genlGroupID resolves a multicast group through nlctrl; nlctrl's own
// "notify" group exists in every kernel with generic netlink.
func TestGenlGroupID(t *testing.T) {
	fd, err := genlJoin("nlctrl", "notify")
	if err != nil {
		t.Skipf("no generic netlink here: %v", err)
	}
	defer unix.Close(fd)
	id, err := genlGroupID(fd, "nlctrl", "notify")
	if err != nil || id == 0 {
		t.Errorf("genlGroupID(nlctrl, notify) = %d, %v, want a group id", id, err)
	}
	if _, err := genlGroupID(fd, "nlctrl", "no-such-group"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("genlGroupID(nlctrl, no-such-group) = %v, want ErrNotExist", err)
	}
	if _, err := genlGroupID(fd, "no-such-family", "config"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("genlGroupID(no-such-family) = %v, want ENOENT", err)
	}
}

func TestNLAttrs(t *testing.T) {
	b := nlAttr(nil, 1, []byte("abc\x00"))
	b = nlAttr(b, 2, []byte{7, 0, 0, 0})
	b = nlAttr(b, 3|0x8000, nlAttr(nil, 5, []byte("x")))
	m := nlAttrs(b)
	if string(m[1]) != "abc\x00" || ne.Uint32(m[2]) != 7 || string(nlAttrs(m[3])[5]) != "x" {
		t.Errorf("nlAttrs round trip = %v", m)
	}
	// Truncated input stops parsing instead of panicking.
	if m := nlAttrs(b[:6]); len(m) != 0 {
		t.Errorf("nlAttrs(truncated) = %v, want nothing", m)
	}
}
