// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestMultipathGluster is TestMultipath on a replica-3 GlusterFS volume in
// the guest, each gateway on its own FUSE client of it, and the failure is
// the owner's FUSE client killed with -9 under fio: the owner daemon keeps
// running but its backing file and lease sidecar answer ENOTCONN. fio's
// writes through the map must all verify and none may fail; the owner
// must stay up, fence itself (alua_state unavailable, no longer owner),
// and after its mount is restored and the daemon restarted, rejoin as
// standby with both paths healthy and a write through the map verified.
// The guest side is testdata/multipath-gluster.sh.
func TestMultipathGluster(t *testing.T) {
	vmtest.RequireTools(t, "iscsiadm", "iscsid", "multipathd", "multipath", "dmsetup", "fio")
	lib := glusterLib(t)
	const (
		init = "iqn.2026-12.org.lunbridge.test:mpg-initiator"
		iqn1 = "iqn.2026-12.org.lunbridge.test:mpg-gw1"
		iqn2 = "iqn.2026-12.org.lunbridge.test:mpg-gw2"
	)
	res := vmtest.Run(t, vmtest.Options{
		MemoryMB: 2048,
		Timeout:  10 * time.Minute,
		Files:    map[string]string{"lunbridge": vmtest.BuildLunbridge(t), "multipath.conf": writeTemp(t, "multipath.conf", multipathConf)},
		Script: lunbridgeLib + lib + scenario("multipath_initiator") +
			fmt.Sprintf("\nINIT=%s IQN1=%s IQN2=%s SIZE=%d FIO_SIZE=%d\n", init, iqn1, iqn2, 64<<20, 32<<20) +
			scenario("multipath-gluster"),
	})
	share := res.ShareDir
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(share, name))
		return string(b)
	}
	if killMS, err := strconv.ParseInt(strings.TrimSpace(read("kill-ms")), 10, 64); err == nil {
		kill := time.UnixMilli(killMS)
		clat := read("clat-gluster.log")
		for _, g := range writeGaps(clat, 3) {
			t.Logf("write completions: a gap of %d ms from %v after the kill", g[1], time.Duration(g[0]-killMS)*time.Millisecond)
		}
		// The failover is measured only if fio wrote across the kill.
		before, after := 0, 0
		for _, ts := range writeTimes(clat) {
			if ts < killMS {
				before++
			} else {
				after++
			}
		}
		if before == 0 || after == 0 {
			t.Errorf("fio completed %d writes before the kill and %d after; want some on both sides", before, after)
		}
		for _, ev := range []struct{ what, log, line string }{
			{"the owner fenced itself", "owner-log", "lease: the backing file is lost"},
			{"the owner gave the lock up", "owner-log", "lease: lost gateway: lock given up"},
			{"the peer took the lock", "peer-log", "lease: acquired"},
			{"the peer owned the LUN", "peer-log", "lease: owner"},
		} {
			if at, ok := logTime(read(ev.log), ev.line); ok {
				t.Logf("%s %v after the kill", ev.what, at.Sub(kill).Round(time.Millisecond))
			} else {
				t.Errorf("%s: no %q in its log", ev.what, ev.line)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(share, "results"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	want := []string{"gluster", "rejoin"}
	if len(lines) != len(want) {
		t.Fatalf("results: %q, want one line for each of %q", lines, want)
	}
	for i, l := range lines {
		var name string
		var rc, verr, ioerr, gap int
		if _, err := fmt.Sscan(l, &name, &rc, &verr, &ioerr, &gap); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		if name != want[i] {
			t.Errorf("result %d is %q, want %q", i, name, want[i])
		}
		t.Logf("%s: longest gap between two write completions %d ms, fio exit %d", name, gap, rc)
		if rc != 0 || verr != 0 || ioerr != 0 {
			t.Errorf("%s: fio exit %d, %d verify errors, %d I/O errors; want 0, 0, 0", name, rc, verr, ioerr)
		}
		if name == "gluster" && gap <= 0 {
			t.Errorf("%s: no failover gap measured (%d ms)", name, gap)
		}
	}
	if read("owner-alive") == "" {
		t.Errorf("the owner daemon did not survive the loss of its FUSE client; its log:\n%s", read("owner-log"))
	}
	info := read("owner-info")
	t.Logf("the owner's view after the failover:\n%s", info)
	for _, w := range []string{"alua_state unavailable\n", "owner 0\n"} {
		if !strings.Contains(info, w) {
			t.Errorf("the owner's info after the loss lacks %q: the gateway did not fence itself", strings.TrimSpace(w))
		}
	}
	t.Logf("the owner's SIGTERM after the loss: exit %s", strings.TrimSpace(read("owner-stop")))
	rejoin := read("rejoin-info")
	if !strings.Contains(rejoin, "alua_state standby\n") || !strings.Contains(rejoin, "owner 0\n") {
		t.Errorf("the restarted gateway's info:\n%s\nwant alua_state standby and owner 0", rejoin)
	}
}

// logTime is the time of the first line of a lunbridge log (slog's text
// format, "time=... level=... msg=...") that contains text.
func logTime(log, text string) (time.Time, bool) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, text) {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, v)
		return at, err == nil
	}
	return time.Time{}, false
}

// writeGaps returns the n largest gaps between two write completions in
// a fio completion log ("msec, value, ddir, bs, offset, ..."; ddir 1 is
// a write), largest first, each as {start in unix ms, length in ms}.
func writeGaps(log string, n int) [][2]int64 {
	ts := writeTimes(log)
	var gaps [][2]int64
	for i := 1; i < len(ts); i++ {
		gaps = append(gaps, [2]int64{ts[i-1], ts[i] - ts[i-1]})
	}
	slices.SortFunc(gaps, func(a, b [2]int64) int { return int(b[1] - a[1]) })
	return gaps[:min(n, len(gaps))]
}

// writeTimes returns the completion times (unix ms) of the writes in a fio
// completion log, in order.
func writeTimes(log string) []int64 {
	var ts []int64
	for _, l := range strings.Split(log, "\n") {
		f := strings.Split(l, ", ")
		if len(f) < 3 || f[2] != "1" {
			continue
		}
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			ts = append(ts, v)
		}
	}
	slices.Sort(ts)
	return ts
}
