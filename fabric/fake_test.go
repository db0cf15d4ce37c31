// SPDX-License-Identifier: Apache-2.0

package fabric

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lunbridge/lunbridge/internal/configfs"
)

// fakeKernel is the one fake kernel (configfs.Fake) with this package's
// test helpers; it has two fileio backstores, disk0 and disk1, to link.
type fakeKernel struct{ *configfs.Fake }

func newFakeKernel(t *testing.T) fakeKernel {
	t.Helper()
	k, err := configfs.NewFake(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"disk0", "disk1"} {
		if err := os.MkdirAll(filepath.Join(k.Configfs, "target", "core", "fileio_0", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return fakeKernel{k}
}

func (k fakeKernel) backstore(n int) string {
	return filepath.Join(k.Configfs, "target", "core", "fileio_0", fmt.Sprintf("disk%d", n))
}

func (k fakeKernel) takeLog() []string { return k.TakeLog() }

// tree lists every path under the configfs root.
func (k fakeKernel) tree(t *testing.T) []string {
	t.Helper()
	out, err := k.Tree()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
