// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"io/fs"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// everything lists every path under the fake's root: configfs, and the
// sysfs and /dev entries the fake kernel makes for a loopback disk.
func (k fakeKernel) everything(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(k.Root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, k.Rel(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ctor is a fabric constructor under test: setup builds what exists
// before the call (with faults off), add is the call, remove tears down
// everything the target holds.
type ctor struct {
	name   string
	setup  func(t *testing.T, k fakeKernel, fsys configfs.FS) (add func() error, remove func() error)
	faults int // at least this many steps must fail the call
}

var fabricCtors = []ctor{
	{"loop/first LUN", func(t *testing.T, k fakeKernel, fsys configfs.FS) (func() error, func() error) {
		lt := k.loop()
		lt.FS = fsys
		return func() error { _, err := lt.AddLUN(t.Context(), 0, k.backstore(0)); return err }, lt.Remove
	}, 5},
	{"loop/second LUN", func(t *testing.T, k fakeKernel, fsys configfs.FS) (func() error, func() error) {
		lt := k.loop()
		lt.FS = fsys
		if _, err := lt.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
			t.Fatal(err)
		}
		return func() error { _, err := lt.AddLUN(t.Context(), 1, k.backstore(1)); return err }, lt.Remove
	}, 3},
	{"iscsi/first LUN, ACLs and CHAP", func(t *testing.T, k fakeKernel, fsys configfs.FS) (func() error, func() error) {
		it := k.iscsi()
		it.FS = fsys
		it.Initiators = []string{testInit, "iqn.1994-05.com.redhat:abc"}
		it.CHAPUser, it.CHAPPassword = "user", testSecr
		it.MutualUser, it.MutualPassword = "target", "other-secret-12"
		return func() error { _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); return err }, it.Remove
	}, 20},
	{"iscsi/first LUN, demo mode and CHAP", func(t *testing.T, k fakeKernel, fsys configfs.FS) (func() error, func() error) {
		it := k.iscsi()
		it.FS = fsys
		it.AllowAnyInitiator = true
		it.CHAPUser, it.CHAPPassword = "user", testSecr
		return func() error { _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); return err }, it.Remove
	}, 8},
	{"iscsi/second LUN", func(t *testing.T, k fakeKernel, fsys configfs.FS) (func() error, func() error) {
		it := k.iscsi()
		it.FS = fsys
		it.Initiators = []string{testInit}
		if _, err := it.AddLUN(t.Context(), 0, k.backstore(0)); err != nil {
			t.Fatal(err)
		}
		return func() error { _, err := it.AddLUN(t.Context(), 1, k.backstore(1)); return err }, it.Remove
	}, 4},
}

// TestAddLUNCleanup fails each configfs and sysfs step of the fabric
// constructors in turn and checks that the failed call left configfs,
// and the fake's sysfs and /dev, as they were before it, and that the
// target's Remove then leaves them as they were before the target.
func TestAddLUNCleanup(t *testing.T) {
	for _, c := range fabricCtors {
		t.Run(c.name, func(t *testing.T) {
			failures := 0
			for n := 0; ; n++ {
				k := newFakeKernel(t)
				pristine := k.everything(t)
				f := &configfs.Faulty{FS: k.Fake, FailAt: -1}
				add, remove := c.setup(t, k, f)
				before := k.everything(t)
				f.FailAt = f.Calls() + n
				err := add()
				failed := f.Failed()
				f.FailAt = -1 // the teardown below is not under test
				if failed != "" && err != nil {
					failures++
					if after := k.everything(t); !slices.Equal(after, before) {
						t.Errorf("%s: after the failure:\n got %q\nwant %q", failed, after, before)
					}
				}
				if err != nil && failed == "" {
					t.Fatalf("add with no fault: %v", err)
				}
				if err := remove(); err != nil {
					t.Errorf("%s: Remove: %v", failed, err)
				}
				if after := k.everything(t); !slices.Equal(after, pristine) {
					t.Errorf("%s: after Remove:\n got %q\nwant %q", failed, after, pristine)
				}
				if failed == "" {
					break // every step went through: the end of the list
				}
			}
			if failures < c.faults {
				t.Errorf("%d steps failed the call, want at least %d: the fault injection is not reaching it",
					failures, c.faults)
			}
		})
	}
}
