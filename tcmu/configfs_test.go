// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// fakeKernel is the one fake kernel (configfs.Fake) with this package's
// test helpers.
type fakeKernel struct{ *configfs.Fake }

const fakeMapSize = configfs.FakeMapSize

func newFakeKernel(t *testing.T) fakeKernel {
	t.Helper()
	k, err := configfs.NewFake(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return fakeKernel{k}
}

func (k fakeKernel) takeLog() []string { return k.TakeLog() }

// tree lists every path under the configfs root, for before/after checks.
func (k fakeKernel) tree(t *testing.T) []string {
	t.Helper()
	out, err := k.Tree()
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

	got, err := listDevices(k, k.Configfs)
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
	p := filepath.Join(k.Root, "size")
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
	if _, err := readInt(k, filepath.Join(k.Root, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readInt(missing) = %v, want ErrNotExist", err)
	}
}
