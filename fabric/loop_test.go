// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	testWWN   = "naa.5001405000000001"
	testNexus = "naa.5001405000000002"
)

func (k fakeKernel) loop() *LoopTarget {
	return &LoopTarget{
		WWN: testWWN, NexusWWN: testNexus,
		ConfigfsRoot: k.Configfs, SysfsRoot: k.Sysfs, DevRoot: k.Dev,
		ScanTimeout: time.Second,
		FS:          k,
	}
}

func TestLoopAddRemove(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	lt := k.loop()
	dev, err := lt.AddLUN(t.Context(), 0, k.backstore(0))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(k.Dev, "sda"); dev != want {
		t.Errorf("AddLUN = %q, want %q", dev, want)
	}
	tpg := "config/target/loopback/" + testWWN + "/tpgt_1"
	want := []string{
		"mkdir config/target/loopback/" + testWWN,
		"mkdir " + tpg,
		"write " + tpg + "/nexus=" + testNexus,
		"mkdir " + tpg + "/lun/lun_0",
		"link " + tpg + "/lun/lun_0/lunbridge -> config/target/core/fileio_0/disk0",
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("AddLUN operations:\n got %q\nwant %q", got, want)
	}

	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"unlink " + tpg + "/lun/lun_0/lunbridge",
		"rmdir " + tpg + "/lun/lun_0",
		"rmdir " + tpg,
		"rmdir config/target/loopback/" + testWWN,
	}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("Remove operations:\n got %q\nwant %q", got, want)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
	if err := lt.Remove(); err != nil {
		t.Errorf("second Remove = %v", err)
	}
}

func TestLoopTwoLUNs(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	lt := k.loop()
	d0, err := lt.AddLUN(t.Context(), 0, k.backstore(0))
	if err != nil {
		t.Fatal(err)
	}
	d1, err := lt.AddLUN(t.Context(), 3, k.backstore(1))
	if err != nil {
		t.Fatal(err)
	}
	if d0 == d1 {
		t.Errorf("two LUNs got the same device %s", d0)
	}
	if _, err := lt.AddLUN(t.Context(), 3, k.backstore(1)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("AddLUN of an added LUN = %v, want ErrExist", err)
	}
	k.takeLog()
	if err := lt.RemoveLUN(0); err != nil {
		t.Fatal(err)
	}
	tpg := "config/target/loopback/" + testWWN + "/tpgt_1"
	want := []string{"unlink " + tpg + "/lun/lun_0/lunbridge", "rmdir " + tpg + "/lun/lun_0"}
	if got := k.takeLog(); !slices.Equal(got, want) {
		t.Errorf("RemoveLUN operations = %q, want %q", got, want)
	}
	if err := lt.RemoveLUN(0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second RemoveLUN = %v, want ErrNotExist", err)
	}
	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}

// A target that existed (someone else's, with a nexus set) is used and
// left in place.
func TestLoopExistingTarget(t *testing.T) {
	k := newFakeKernel(t)
	tpg := filepath.Join(k.Configfs, "target", "loopback", testWWN, "tpgt_1")
	for _, d := range []string{filepath.Dir(tpg), tpg} {
		if err := k.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.WriteFile(filepath.Join(tpg, "nexus"), testNexus); err != nil {
		t.Fatal(err)
	}
	k.takeLog()
	before := k.tree(t)
	lt := k.loop()
	if _, err := lt.AddLUN(t.Context(), 1, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	if got := k.takeLog(); len(got) != 2 {
		t.Errorf("AddLUN on an existing target = %q, want mkdir lun and link only", got)
	}
	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}

	// With Adopt, the same target is a crashed run's own: Remove deletes
	// it.
	lt = k.loop()
	lt.Adopt = true
	if _, err := lt.AddLUN(t.Context(), 1, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(tpg)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("adopted target after Remove: stat = %v, want it gone", err)
	}
	for _, d := range []string{filepath.Dir(tpg), tpg} {
		if err := k.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.WriteFile(filepath.Join(tpg, "nexus"), testNexus); err != nil {
		t.Fatal(err)
	}

	// Another nexus is someone else's I_T nexus: refuse.
	lt = k.loop()
	lt.NexusWWN = "naa.5001405000000009"
	if _, err := lt.AddLUN(t.Context(), 1, k.backstore(0)); err == nil || !strings.Contains(err.Error(), "nexus") {
		t.Errorf("AddLUN with another nexus = %v, want a nexus error", err)
	}
}

func TestLoopAdoptLUN(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	first := k.loop()
	if _, err := first.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatal(err)
	}
	// A restarted lunbridge (new LoopTarget, same names) adopts the LUN.
	second := k.loop()
	dev, err := second.AddLUN(t.Context(), 0, k.backstore(0))
	if err != nil {
		t.Fatalf("AddLUN over our own LUN = %v", err)
	}
	if dev != filepath.Join(k.Dev, "sda") {
		t.Errorf("adopted LUN device = %s, want sda", dev)
	}
	// Linking another backstore there is refused and changes nothing.
	third := k.loop()
	k.takeLog()
	if _, err := third.AddLUN(t.Context(), 0, k.backstore(1)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("AddLUN over a LUN of another backstore = %v, want ErrExist", err)
	}
	if got := k.takeLog(); len(got) != 0 {
		t.Errorf("refused AddLUN changed configfs: %q", got)
	}
	if err := second.Remove(); err != nil {
		t.Fatal(err)
	}
	// The adopted LUN is gone; the target dirs were created by first.
	if err := first.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}

// When no disk appears, AddLUN fails within its bound and removes what
// it made.
func TestLoopNoDisk(t *testing.T) {
	k := newFakeKernel(t)
	k.SetNoScan(true)
	before := k.tree(t)
	lt := k.loop()
	lt.ScanTimeout = 50 * time.Millisecond
	_, err := lt.AddLUN(t.Context(), 0, k.backstore(0))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AddLUN without a disk = %v, want DeadlineExceeded", err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after failure:\n got %q\nwant %q", after, before)
	}
	if err := lt.Remove(); err != nil {
		t.Errorf("Remove after failed AddLUN = %v", err)
	}
}

func TestLoopInvalid(t *testing.T) {
	k := newFakeKernel(t)
	for _, tc := range []struct {
		name string
		edit func(*LoopTarget, *int, *string)
	}{
		{"bad WWN", func(l *LoopTarget, _ *int, _ *string) { l.WWN = "naa.xyz" }},
		{"iqn WWN", func(l *LoopTarget, _ *int, _ *string) { l.WWN = "iqn.2003-01.org.x:y" }},
		{"bad nexus", func(l *LoopTarget, _ *int, _ *string) { l.NexusWWN = "" }},
		{"negative LUN", func(_ *LoopTarget, lun *int, _ *string) { *lun = -1 }},
		{"huge LUN", func(_ *LoopTarget, lun *int, _ *string) { *lun = 65536 }},
		{"relative backstore", func(_ *LoopTarget, _ *int, p *string) { *p = "target/core/fileio_0/disk0" }},
		{"missing backstore", func(_ *LoopTarget, _ *int, p *string) { *p += "-gone" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := k.tree(t)
			lt, lun, bs := k.loop(), 0, k.backstore(0)
			tc.edit(lt, &lun, &bs)
			if _, err := lt.AddLUN(t.Context(), lun, bs); err == nil {
				t.Fatal("AddLUN succeeded")
			}
			if after := k.tree(t); !slices.Equal(after, before) {
				t.Errorf("configfs after failure:\n got %q\nwant %q", after, before)
			}
		})
	}
}

func TestLoopNoModule(t *testing.T) {
	k := newFakeKernel(t)
	// Real configfs makes target/loopback on mkdir by loading tcm_loop;
	// without the module the mkdir fails. A missing target/ fails it here.
	os.RemoveAll(filepath.Join(k.Configfs, "target"))
	_, err := k.loop().AddLUN(t.Context(), 0, k.backstore(0))
	if err == nil || !strings.Contains(err.Error(), "tcm_loop") {
		t.Errorf("AddLUN without tcm_loop = %v, want an error naming it", err)
	}
}

// An empty LUN directory (a crash between mkdir and link) is adopted: it
// gets the link and is removed with the LUN.
func TestLoopAdoptEmptyLUN(t *testing.T) {
	k := newFakeKernel(t)
	before := k.tree(t)
	tpg := filepath.Join(k.Configfs, "target", "loopback", testWWN, "tpgt_1")
	for _, d := range []string{filepath.Dir(tpg), tpg, filepath.Join(tpg, "lun", "lun_0")} {
		if err := k.Mkdir(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.WriteFile(filepath.Join(tpg, "nexus"), testNexus); err != nil {
		t.Fatal(err)
	}
	lt := k.loop()
	lt.Adopt = true
	if _, err := lt.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
		t.Fatalf("AddLUN over an empty LUN directory = %v", err)
	}
	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	if after := k.tree(t); !slices.Equal(after, before) {
		t.Errorf("configfs after Remove:\n got %q\nwant %q", after, before)
	}
}
