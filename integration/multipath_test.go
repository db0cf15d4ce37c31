// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// multipathConf is the multipath.conf that docs/scale-out.md recommends
// for lunbridge gateways: group paths by ALUA priority (the owner's path
// is active/optimized, the others standby), check them with TEST UNIT
// READY (a standby path answers 02/04/0B: multipathd's "ghost"), fail back
// to the preferred path at once, and queue I/O for a while when no path
// serves (a failover takes the lease's validity, 5 s, plus the checker's
// interval) instead of failing it.
const multipathConf = `defaults {
	user_friendly_names no
	find_multipaths no
	polling_interval 1
}
devices {
	device {
		vendor "LUNBRIDG"
		product ".*"
		path_grouping_policy group_by_prio
		path_checker tur
		prio alua
		hardware_handler "1 alua"
		failback immediate
		no_path_retry 30
	}
}
`

// TestMultipath runs the Linux multipath stack over two lunbridge gateways
// of one group: open-iscsi logged in to both portals, multipathd building
// one /dev/mapper device, scsi_dh_alua following the target port groups,
// and fio with crc32c verification writing through the map while the owner
// fails over: killed with -9 (kill9), then the new owner stopped with
// SIGTERM (sigterm, a planned handover, which must be as invisible to
// fio as a crash). The guest side is testdata/multipath.sh.
func TestMultipath(t *testing.T) {
	vmtest.RequireTools(t, "iscsiadm", "iscsid", "multipathd", "multipath", "dmsetup", "fio")
	const (
		init = "iqn.2026-12.org.lunbridge.test:mp-initiator"
		iqn1 = "iqn.2026-12.org.lunbridge.test:mp-gw1"
		iqn2 = "iqn.2026-12.org.lunbridge.test:mp-gw2"
	)
	scenarios := []string{"kill9", "sigterm"}
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: 1536,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": vmtest.BuildLunbridge(t), "multipath.conf": writeTemp(t, "multipath.conf", multipathConf)},
		Script: lunbridgeLib + fmt.Sprintf("INIT=%s IQN1=%s IQN2=%s SIZE=%d FIO_SIZE=%d SCENARIOS='%s'\n",
			init, iqn1, iqn2, 64<<20, 48<<20, strings.Join(scenarios, " ")) +
			scenario("multipath_initiator") + scenario("multipath"),
	})
	b, err := os.ReadFile(filepath.Join(res.ShareDir, "results"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(scenarios) {
		t.Fatalf("results: %q, want one line for each of %q", lines, scenarios)
	}
	for _, l := range lines {
		var name string
		var rc, verr, ioerr, gap, tgt int
		if _, err := fmt.Sscan(l, &name, &rc, &verr, &ioerr, &gap, &tgt); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		t.Logf("%s: failover %d ms (the longest gap between two write completions), fio exit %d, %d target errors in the kernel log", name, gap, rc, tgt)
		if rc != 0 || verr != 0 || ioerr != 0 {
			t.Errorf("%s: fio exit %d, %d verify errors, %d I/O errors; want 0, 0, 0", name, rc, verr, ioerr)
		}
		// A target error (DATA PROTECT, ILLEGAL REQUEST: BLK_STS_TARGET)
		// is not retried on another path: a gateway going away must
		// look like a path failure to the initiator.
		if tgt != 0 {
			t.Errorf("%s: %d kernel log lines report a target error; want 0", name, tgt)
		}
		if gap <= 0 {
			t.Errorf("%s: no failover gap measured (%d ms)", name, gap)
		}
	}
}

// writeTemp writes content to a file named name in a test directory.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
