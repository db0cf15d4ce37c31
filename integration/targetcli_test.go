// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestTargetcli: Debian's targetcli-fb, through a system dbus-daemon the
// test starts in the guest with lunbridge's shipped policy, lists
// /backstores/user:lunbridge (lunbridge serve owns org.kernel.TCMUService1),
// shows its ConfigDesc, has a relative cfgstring refused by lunbridge's
// CheckConfig, and creates a 64 MiB user:lunbridge backstore on
// /tmp/disk1.img that lunbridge then serves (netlink ADDED_DEVICE). Mapped
// to tcm_loop by targetcli, the /dev/sdX takes 4 MiB written and read with
// O_DIRECT, and the bytes are in the backing file; a LUN of lunbridge's own
// config works alongside. targetcli saveconfig; lunbridge stopped (the
// backstore stays); targetctl clear; lunbridge started; targetctl restore:
// the restored backstore is served and the data is still there. Again,
// with targetctl restore first (as at boot) and lunbridge started while it
// waits for the disk's scan. Finally targetcli deletes it and lunbridge
// lets it go (REMOVED_DEVICE). Another handler's backstore (dev_config
// "file/...", as tcmu-runner's) made while lunbridge runs is left alone:
// its UIO device stays free to open, while opening the one lunbridge
// serves gives EBUSY. One boot (testdata/targetcli.sh).
func TestTargetcli(t *testing.T) {
	vmtest.RequireTools(t, "targetcli", "targetctl", "dbus-daemon", "dd", "md5sum")
	res := vmtest.Run(t, vmtest.Options{
		Files: map[string]string{
			"lunbridge":           vmtest.BuildLunbridge(t),
			"dbus-lunbridge.conf": "../packaging/dbus-org.kernel.TCMUService1.conf",
			"targetcli-bus.conf":  "testdata/targetcli-bus.conf",
		},
		Script: lunbridgeLib + scenario("targetcli"),
	})
	share := res.ShareDir
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(share, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct{ file, want string }{
		{"backstores.txt", "user:lunbridge"},
		{"help.txt", "Absolute path of the backing file"},
		{"bad.txt", "cfgstring invalid"},
		{"bad.txt", `"relative.img" is not an absolute path`},
		{"sectors.txt", "131072\n"},
		{"after-stop.txt", "/disk1"},
		{"saveconfig.json", `"config": "lunbridge//tmp/disk1.img"`},
	} {
		if got := read(c.file); !strings.Contains(got, c.want) {
			t.Errorf("%s = %q, want it to contain %q", c.file, got, c.want)
		}
	}
	if s := read("saveconfig.json"); strings.Contains(s, "own0") {
		t.Errorf("saveconfig.json still has lunbridge's own LUN after the reload:\n%s", s)
	}
	before := md5s(t, filepath.Join(share, "md5-before.txt"))
	if len(before) != 4 || before[1] != before[0] || before[2] != before[0] || before[3] != before[0] {
		t.Errorf("pattern, read back, backing file, own LUN: md5s %v, want four equal", before)
	}
	after := md5s(t, filepath.Join(share, "md5-after.txt"))
	if len(after) != 2 || after[1] != after[0] || after[0] != before[0] {
		t.Errorf("after restart and targetctl restore: md5s %v, want the pattern's %s twice", after, before[0])
	}
	boot := md5s(t, filepath.Join(share, "md5-boot.txt"))
	if len(boot) != 2 || boot[1] != boot[0] || boot[0] != before[0] {
		t.Errorf("restored before lunbridge started: md5s %v, want the pattern's %s twice", boot, before[0])
	}
	lbLog := read("lb.err")
	for _, l := range strings.Split(lbLog, "\n") {
		if strings.Contains(l, "targetcli:") {
			t.Log(l)
		}
	}
	// The last lunbridge: disk1 restored before it started, then disk3.
	if n := strings.Count(lbLog, "targetcli: serving backstore"); n != 2 {
		t.Errorf("the second lunbridge logged %d \"serving backstore\", want 2", n)
	}
	// Found through the kernel's netlink announcements.
	for _, want := range []string{
		`"targetcli: netlink event" event=added uio=tcm-user/`,
		`"targetcli: netlink event" event=removed uio=tcm-user/`,
	} {
		if !strings.Contains(lbLog, want) {
			t.Errorf("lunbridge's log has no %s", want)
		}
	}
	uio := read("uio-open.txt")
	if !strings.Contains(uio, "foreign opened") {
		t.Errorf("another handler's UIO device could not be opened: lunbridge took it?\n%s", uio)
	}
	if !strings.Contains(uio, "disk3 ") || strings.Contains(uio, "disk3 opened") || !strings.Contains(uio, "Device or resource busy") {
		t.Errorf("disk3's UIO device, which lunbridge serves, opened (or failed otherwise):\n%s", uio)
	}
}
