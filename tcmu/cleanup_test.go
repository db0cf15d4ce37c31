// SPDX-License-Identifier: Apache-2.0

package tcmu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// held lists what this process still holds of the files under root: its
// descriptors open on them (/proc/self/fd) and its mappings of them
// (/proc/self/maps).
func held(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(p, root) {
			out = append(out, "fd "+e.Name()+" -> "+p)
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.Contains(l, root) {
			out = append(out, "mapping "+l)
		}
	}
	return out
}

// uioSabotage says how to break the UIO device between the kernel
// registering it and OpenDevice opening it: the steps of attach that do
// not go through configfs.
var uioSabotage = []struct {
	name  string
	spoil func(t *testing.T, dev string)
}{
	{"open fails", func(t *testing.T, dev string) {
		if err := os.Remove(dev); err != nil {
			t.Fatal(err)
		}
	}},
	// A FIFO opens O_RDWR|O_NONBLOCK but cannot be mapped (ENODEV).
	{"mmap fails", func(t *testing.T, dev string) {
		if err := os.Remove(dev); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(dev, 0o600); err != nil {
			t.Fatal(err)
		}
	}},
	{"mailbox version", func(t *testing.T, dev string) {
		f, err := os.OpenFile(dev, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte{1, 0}, mbVersion); err != nil {
			t.Fatal(err)
		}
	}},
}

// TestOpenDeviceCleanup fails each step of OpenDevice in turn (every
// configfs and sysfs call, then opening, mapping and checking the UIO
// device), for a new backstore and for an adopted one, and checks that
// the failed call left configfs as it found it and holds no descriptor or
// mapping of the device.
func TestOpenDeviceCleanup(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		name := "create"
		if adopt {
			name = "adopt"
		}
		// setup returns a fake kernel holding, for adopt, a lunbridge
		// backstore a previous run left (Close keeps configfs).
		setup := func(t *testing.T) (fakeKernel, DeviceConfig) {
			k := newFakeKernel(t)
			cfg := k.config("disk0", 0)
			if adopt {
				d, err := openDevice(t.Context(), k, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
			}
			return k, cfg
		}
		check := func(t *testing.T, k fakeKernel, before []string, what string) {
			t.Helper()
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("%s: configfs after the failure = %q, want %q", what, after, before)
			}
			if h := held(t, k.Root); len(h) > 0 {
				t.Errorf("%s: still held after the failure: %q", what, h)
			}
		}
		t.Run(name+"/configfs", func(t *testing.T) {
			failures := 0
			for n := 0; ; n++ {
				k, cfg := setup(t)
				before := k.tree(t)
				f := &configfs.Faulty{FS: k.Fake, FailAt: n}
				d, err := openDevice(t.Context(), f, cfg)
				if f.Failed() == "" {
					// Every step went through: the end of the list.
					if err != nil {
						t.Fatalf("openDevice with no fault: %v", err)
					}
					if err := d.Remove(); err != nil {
						t.Fatal(err)
					}
					break
				}
				if err == nil {
					// A fault in a step that may fail (an optional
					// attribute read, a retried poll).
					if err := d.Remove(); err != nil {
						t.Fatal(err)
					}
					continue
				}
				failures++
				check(t, k, before, f.Failed())
			}
			if failures < 5 {
				t.Errorf("only %d steps failed OpenDevice: the fault injection is not reaching it", failures)
			}
		})
		for _, sab := range uioSabotage {
			t.Run(name+"/"+sab.name, func(t *testing.T) {
				k, cfg := setup(t)
				before := k.tree(t)
				f := &configfs.Faulty{FS: k.Fake, FailAt: -1}
				f.After = func(op, path string) {
					// attach reads class/uio/<n>/maps/map0/size just
					// before it opens /dev/<n>.
					if op == "read" && strings.HasSuffix(path, filepath.Join("maps", "map0", "size")) {
						n := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(path))))
						sab.spoil(t, filepath.Join(k.Dev, n))
					}
				}
				d, err := openDevice(t.Context(), f, cfg)
				if err == nil {
					d.Remove()
					t.Fatal("openDevice succeeded on a broken UIO device")
				}
				check(t, k, before, sab.name)
			})
		}
	}
}
