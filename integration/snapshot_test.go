// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// snapshotChecks are the checks of testdata/snapshots.sh, in order.
var snapshotChecks = []string{"reflink", "cow", "roexport", "delete", "enospc", "kill"}

// TestSnapshots snapshots live LUNs in one boot (testdata/snapshots.sh):
// on XFS with reflink (a brd RAM disk), pattern A, snapshot, overwrite
// with B: the snapshot reads A, the LUN B, method reflink, the pause
// recorded; on tmpfs (copy-before-write), fio's random 4 KiB writes race
// a paced background copy and the snapshot still equals the image taken
// before; both snapshots exported read-only read back A through
// /dev/sdX; a delete while copying; ENOSPC while copying (failed with the
// reason, space given back) and at the start (refused); kill -9 during
// a copy (the restarted daemon reports it failed and will not export it).
func TestSnapshots(t *testing.T) {
	vmtest.RequireTools(t, "fio", "mkfs.xfs")
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: 1536,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": lb},
		Script:   guestScript("snapshots"),
	})
	share := res.ShareDir
	if b, err := os.ReadFile(filepath.Join(share, "times")); err == nil {
		t.Logf("measured:\n%s", b)
	}
	guestChecks(t, share, snapshotChecks, true)
}

// TestSnapshotsGluster snapshots a LUN whose backing file lives on the
// in-guest replica-3 GlusterFS volume (testdata/snapshots-gluster.sh):
// copy-before-write with fio's random 4 KiB writes racing the copy; the
// snapshot equals the image taken before, and reads it back exported
// read-only.
func TestSnapshotsGluster(t *testing.T) {
	vmtest.RequireTools(t, "fio")
	lib := glusterLib(t)
	lb := vmtest.BuildLunbridge(t)
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: glusterMemoryMB,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": lb},
		Script:   lunbridgeLib + lib + scenario("snapshots-gluster"),
	})
	if b, err := os.ReadFile(filepath.Join(res.ShareDir, "times")); err == nil {
		t.Logf("measured:\n%s", b)
	}
	b, _ := os.ReadFile(filepath.Join(res.ShareDir, "checks"))
	log, _ := os.ReadFile(filepath.Join(res.ShareDir, "check-gluster.log"))
	t.Logf("guest log:\n%s", tail(string(log), 40))
	if strings.TrimSpace(string(b)) != "gluster ok" {
		t.Errorf("guest checks = %q, want gluster ok", b)
	}
}
