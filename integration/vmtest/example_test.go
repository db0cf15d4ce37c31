// SPDX-License-Identifier: Apache-2.0

package vmtest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// A test whose whole check runs in the guest: Run fails the test unless the
// script exits 0.
func ExampleRun() {
	var t *testing.T // the test's own
	res := vmtest.Run(t, vmtest.Options{Script: `
d=$(fileio_create disk /tmp/disk.img 16777216)
dev=$(loop_export 5001405000000001 "$d")
dd if=/dev/urandom of="$dev" bs=1M count=16 oflag=direct
hostrun sg_inq "$dev" > /mnt/host/inquiry.txt
loop_unexport 5001405000000001
fileio_remove disk
target_leftovers
`})
	inq, _ := os.ReadFile(filepath.Join(res.ShareDir, "inquiry.txt"))
	fmt.Printf("%s", inq)
}

// A test that acts on the host while the guest runs: the guest exports an
// iSCSI target and waits; the host reaches it on 127.0.0.1:HostPort().
func ExampleBoot() {
	var t *testing.T // the test's own
	vm := vmtest.Boot(t, vmtest.Options{Net: true, Script: `
d=$(fileio_create disk /tmp/disk.img 16777216)
iscsi_export iqn.2026-11.org.example:disk "$d"
signal exported
waitfor done
iscsi_unexport iqn.2026-11.org.example:disk
fileio_remove disk
`})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "exported"); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("iscsi://127.0.0.1:%d/iqn.2026-11.org.example:disk/0\n", vm.HostPort())
	if err := vm.Signal("done"); err != nil {
		t.Fatal(err)
	}
	if res, err := vm.Wait(); err != nil || res.ExitCode != 0 {
		t.Fatalf("guest: %v, exit status %d", err, res.ExitCode)
	}
}
