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

// exclusiveCase is one refusal of testdata/exclusive.sh: the refused
// daemon's one error line must name the file (or the LUN name) and say
// what is wrong; with a pid, the holder's.
type exclusiveCase struct {
	name    string
	want    []string
	withPID bool
}

// TestExclusiveOwner: one file, one writer, on one machine (issue 27).
// Two loop exports, a loop and an iSCSI export, two exports without a
// fabric, a plain export beside a gateway group and a gateway beside a
// plain export: the second is refused in one line that names the file and
// the holder's pid, before it is ready or mounts its view, and the holder
// keeps serving; gateways of one group share the file; a second daemon's
// LUN of a name in use is refused naming the holder; after kill -9 of the
// holder, the refused exporter starts.
func TestExclusiveOwner(t *testing.T) {
	runExclusive(t, false)
}

// TestExclusiveOwnerGluster is TestExclusiveOwner across two GlusterFS
// FUSE clients in the guest: the holders on one, the others on the
// second, whose POSIX locks Gluster makes volume-wide.
func TestExclusiveOwnerGluster(t *testing.T) {
	runExclusive(t, true)
}

func runExclusive(t *testing.T, gluster bool) {
	opts := vmtest.Options{
		Files:  map[string]string{"lunbridge": vmtest.BuildLunbridge(t)},
		Script: lunbridgeLib + scenario("exclusive"),
	}
	dir1, dir2 := "/tmp/shared", "/tmp/shared"
	if gluster {
		opts.Script = lunbridgeLib + glusterLib(t) + "GLUSTER=1\n" + scenario("exclusive")
		opts.MemoryMB = glusterMemoryMB
		opts.Timeout = 8 * time.Minute
		dir1, dir2 = "/hostroot/tmp/gv", "/hostroot/tmp/gv2" // gluster.sh: $GV and gv_mount /tmp/gv2
	}
	res := vmtest.Run(t, opts)
	plain := "is already exported by another lunbridge"
	cases := []exclusiveCase{
		{"loop-loop", []string{"LUN other: ", dir2 + "/f.img", plain, "LUN disk0"}, true},
		{"loop-iscsi", []string{"LUN other: ", dir2 + "/f.img", plain, "LUN disk0"}, true},
		{"none-none", []string{"LUN n2: ", dir2 + "/g.img", plain, "LUN n1"}, true},
		{"plain-gateway", []string{"LUN p1: ", dir2 + "/s.img", "is shared by the gateways of a group", "LUN gw1"}, true},
		{"gateway-plain", []string{"LUN gw1: ", dir1 + "/s.img", "is exported by a plain (non-gateway) lunbridge", "LUN p1"}, true},
	}
	if !gluster {
		cases = append(cases, exclusiveCase{"name", []string{"LUN name disk0 is in use by another lunbridge on this machine", "file /tmp/shared/f.img"}, true})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(res.ShareDir, c.name+".refused"))
			if err != nil {
				t.Fatalf("no refusal: %v", err)
			}
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "lunbridge: ") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("error lines %q, want one", lines)
			}
			want := c.want
			if c.withPID {
				pid, err := os.ReadFile(filepath.Join(res.ShareDir, c.name+".holder"))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, "pid "+strings.TrimSpace(string(pid)))
			}
			for _, w := range want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("%q lacks %q", lines[0], w)
				}
			}
		})
	}
	for _, ok := range []string{"holder", "kill", "gateways"} {
		if _, err := os.Stat(filepath.Join(res.ShareDir, ok+".ok")); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
