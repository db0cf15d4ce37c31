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

// glusterLib returns the guest shell library of testdata/gluster.sh: a
// replica-3 GlusterFS volume "gv" inside the guest (gluster_up, ~20 s
// under TCG), mounted with the FUSE client at $GV, plus helpers to mount
// it again, kill the client or a brick and count pending heals. Prepend it
// to Options.Script (after lunbridgeLib when the script runs lunbridge)
// and give the guest glusterMemoryMB.
func glusterLib(t *testing.T) string {
	t.Helper()
	vmtest.RequireTools(t, "glusterd", "glusterfsd", "glusterfs", "gluster", "mkfs.xfs")
	return "\n" + scenario("gluster") + "\n"
}

// glusterMemoryMB is the guest RAM a Gluster test needs: glusterd, three
// bricks, the self-heal daemon and the FUSE clients beside lunbridge and
// the RAM disk's written pages.
const glusterMemoryMB = 1536

// glusterChecks are the checks of testdata/gluster_lun.sh, in order.
var glusterChecks = []string{"data", "zero", "zero_nofallocate", "brick", "gone", "durable", "hang"}

// TestGluster serves LUNs whose backing file lives on a replica-3
// GlusterFS volume in the guest, in one boot (testdata/gluster_lun.sh):
// data both ways between the disk and the file on the volume and its
// bricks; every zeroing command reads back zeros through the disk and in
// the file, on Gluster (whose FUSE client lies about ZERO_RANGE) and on a
// FUSE file system without fallocate; a brick killed under a writer
// without an error, then healed; the FUSE client killed under a writer:
// NOT READY within --cmd-timeout, the daemon serves its other LUN, the
// view says failed with the reason, and a new mount plus "online" bring
// the LUN back; a write acknowledged after SYNCHRONIZE CACHE survives
// kill -9 of lunbridge (read through a fresh mount); shutdown while the
// client is stopped completes.
func TestGluster(t *testing.T) {
	vmtest.RequireTools(t, "sg_write_same", "sg_unmap", "sg_sync", "blkdiscard")
	lib := glusterLib(t)
	lb := vmtest.BuildLunbridge(t)
	loopfs := vmtest.BuildCommand(t, "./internal/cmd/loopfs")
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: glusterMemoryMB,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": lb, "loopfs": loopfs},
		Script:   lunbridgeLib + lib + scenario("gluster_lun"),
	})
	share := res.ShareDir
	if b, err := os.ReadFile(filepath.Join(share, "times")); err == nil {
		t.Logf("measured (seconds of guest uptime):\n%s", b)
	}
	guestChecks(t, share, glusterChecks, false)
	t.Run("zeroing_probe", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(share, "zeroing.txt"))
		if err != nil {
			t.Fatal(err)
		}
		methods := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			for _, lun := range []string{"gv0", "local", "nofa"} {
				if strings.Contains(line, "lun="+lun+" ") {
					_, m, _ := strings.Cut(line, "method=")
					methods[lun] = strings.Trim(m, `"`)
				}
			}
		}
		t.Logf("zeroing methods: %q", methods)
		for lun, want := range map[string]string{
			// GlusterFS 10.3's FUSE client punches holes but answers 0 to
			// ZERO_RANGE without zeroing.
			"gv0": "unmap punches holes, write-zeroes writes zeros",
			// tmpfs has no ZERO_RANGE on 6.1.
			"local": "unmap punches holes, write-zeroes writes zeros",
			"nofa":  "unmap writes zeros, write-zeroes writes zeros",
		} {
			if methods[lun] != want {
				t.Errorf("zeroing of %s = %q, want %q", lun, methods[lun], want)
			}
		}
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
