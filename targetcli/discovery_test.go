// SPDX-License-Identifier: Apache-2.0

package targetcli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/internal/fakering"
	"github.com/lunbridge/lunbridge/tcmu"
)

// fakeConfigfs writes a user backstore as configfs shows it.
func fakeBackstore(t *testing.T, root string, hba int, name, devConfig string, size int64, enabled bool) string {
	t.Helper()
	dir := filepath.Join(root, "target", "core", fmt.Sprintf("user_%d", hba), name)
	if err := os.MkdirAll(filepath.Join(dir, "attrib"), 0o755); err != nil {
		t.Fatal(err)
	}
	en := "0"
	if enabled {
		en = "1"
	}
	for f, v := range map[string]string{
		"attrib/dev_config":     devConfig,
		"attrib/dev_size":       fmt.Sprint(size),
		"attrib/hw_block_size":  "512",
		"attrib/hw_max_sectors": "128",
		"enable":                en,
		"info":                  "Status: DEACTIVATED  Max Queue Depth: 0",
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// innerKernel stands for the production kernel: it must never see a
// found backstore's LUN.
type innerKernel struct{ names []string }

func (k *innerKernel) Attach(ctx context.Context, l *bridge.LUN, spec bridge.ExportSpec) (bridge.Device, error) {
	k.names = append(k.names, l.Name())
	return newFakeDevice("none", "")
}

type fakeDevice struct {
	k          *fakering.Kernel
	ring       *tcmu.Ring
	fabric, at string
}

func newFakeDevice(fabric, at string) (*fakeDevice, error) {
	k, err := fakering.NewKernel(fakering.Options{})
	if err != nil {
		return nil, err
	}
	ring, err := tcmu.NewRing(k.Mem(), k.Notifier(), tcmu.RingOptions{})
	if err != nil {
		return nil, err
	}
	return &fakeDevice{k: k, ring: ring, fabric: fabric, at: at}, nil
}

func (d *fakeDevice) Ring() *tcmu.Ring                               { return d.ring }
func (d *fakeDevice) UIO() string                                    { return "/dev/uio-fake" }
func (d *fakeDevice) Export(context.Context) (string, string, error) { return d.fabric, d.at, nil }
func (d *fakeDevice) Unexport(context.Context) error                 { return nil }
func (d *fakeDevice) Resize(int64) error                             { return nil }
func (d *fakeDevice) Remove() error                                  { return d.k.Err() }

// TestDiscoveryScan: a scan serves exactly the enabled lunbridge
// backstores whose cfgstring is a path (not lunbridge's own, not another
// handler's, not one still being enabled), with the file, size and
// transfer limit of the backstore; it adds each once, lets go of the
// deleted ones, tries a failing one once until it goes away, and leaves
// the LUNs of the config to the kernel.
func TestDiscoveryScan(t *testing.T) {
	ctx := context.Background()
	root, files := t.TempDir(), t.TempDir()
	disk1 := fakeBackstore(t, root, 1, "disk1", "lunbridge/"+files+"/disk1.img", 1<<20, true)
	fakeBackstore(t, root, 0, "own0", "lunbridge/own0", 1<<20, true)
	fakeBackstore(t, root, 2, "rbd0", "file/"+files+"/rbd0.img", 1<<20, true)
	half := fakeBackstore(t, root, 3, "half", "lunbridge/"+files+"/half.img", 2<<20, false)

	inner := &innerKernel{}
	x := New(inner, Config{ConfigfsRoot: root, MaxTransfer: 512 << 10, Workers: 4})
	var opened []string
	fail := map[string]bool{}
	x.attachFound = func(ctx context.Context, info tcmu.DeviceInfo) (bridge.Device, error) {
		opened = append(opened, info.Name)
		if fail[info.Name] {
			return nil, errors.New("no UIO")
		}
		return newFakeDevice("targetcli", info.Path)
	}
	d := bridge.NewDaemon(bridge.DaemonOptions{Kernel: x})
	t.Cleanup(func() { d.Close(ctx) })

	x.scan(ctx, d)
	if got := d.Names(); !slices.Equal(got, []string{"disk1"}) {
		t.Fatalf("after the first scan: LUNs %v, want [disk1]", got)
	}
	l, err := d.LUN("disk1")
	if err != nil {
		t.Fatal(err)
	}
	info := l.Info()
	if info.Path != files+"/disk1.img" || info.Size != 1<<20 || info.Fabric != "targetcli" || info.FabricPath != disk1 {
		t.Errorf("disk1 = %+v, want file %s/disk1.img, 1 MiB, fabric targetcli at %s", info, files, disk1)
	}
	if st, err := os.Stat(files + "/disk1.img"); err != nil || st.Size() != 1<<20 {
		t.Errorf("backing file: %v, %v; want it created with 1 MiB", st, err)
	}
	if got := x.options(tcmu.DeviceInfo{Name: "a", Config: "/a", Size: 1 << 20, BlockSize: 512, MaxSectors: 128}).MaxTransfer; got != 64<<10 {
		t.Errorf("MaxTransfer with hw_max_sectors 128 = %d, want 64 KiB", got)
	}

	x.scan(ctx, d)
	if err := os.WriteFile(filepath.Join(half, "enable"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeBackstore(t, root, 4, "bad", "lunbridge/"+files+"/bad.img", 1<<20, true)
	fail["bad"] = true
	x.scan(ctx, d)
	x.scan(ctx, d)
	if got := d.Names(); !slices.Equal(got, []string{"disk1", "half"}) {
		t.Errorf("after enable: LUNs %v, want [disk1 half]", got)
	}
	if want := []string{"disk1", "bad", "half"}; !slices.Equal(sortedCopy(opened), sortedCopy(want)) {
		t.Errorf("opened %v, want each of %v once", opened, want)
	}
	x.mu.Lock()
	failed := slices.Sorted(maps.Keys(x.failed))
	x.mu.Unlock()
	if want := []string{filepath.Join(root, "target", "core", "user_4", "bad")}; !slices.Equal(failed, want) {
		t.Errorf("tried and failed: %v, want only %v", failed, want)
	}

	for _, p := range []string{disk1, filepath.Join(root, "target", "core", "user_4", "bad")} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	x.scan(ctx, d)
	if got := d.Names(); !slices.Equal(got, []string{"half"}) {
		t.Errorf("after disk1 was deleted: LUNs %v, want [half]", got)
	}
	fakeBackstore(t, root, 4, "bad", "lunbridge/"+files+"/bad.img", 1<<20, true)
	x.scan(ctx, d)
	if n := countOf(opened, "bad"); n != 2 {
		t.Errorf("bad opened %d times, want 2 (once, and again after it was made anew)", n)
	}

	// A LUN of the config goes to the kernel, also when a backstore of the
	// same name is being found at that moment.
	x.mu.Lock()
	x.pending["own1"] = tcmu.DeviceInfo{Name: "own1", Config: "/elsewhere.img"}
	x.mu.Unlock()
	if _, err := d.Add(ctx, bridge.Options{Name: "own1", Path: files + "/own1.img", Size: 1 << 20}, bridge.ExportSpec{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(inner.names, []string{"own1"}) {
		t.Errorf("the kernel attached %v, want [own1]", inner.names)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func countOf(s []string, v string) int {
	n := 0
	for _, e := range s {
		if e == v {
			n++
		}
	}
	return n
}
