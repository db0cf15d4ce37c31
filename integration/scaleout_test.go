// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestScaleOutFailover runs two lunbridge gateways of one ALUA group in
// the guest ("export --alua-group", testdata/scaleout.sh), both exporting
// one file over iSCSI as one disk (--alua-identity; two gateways in one
// kernel need two LUN names), and drives them from the host with qemu-io
// (libiscsi) as a multipath initiator would: write to the path that
// works, fail over to the other on an error. Both paths show the same
// disk name and their target port designators; the owner is killed with
// SIGKILL halfway through the writes, the other gateway takes over, the
// killed one restarts and stays standby (it refuses reads and never takes
// the lease); every acknowledged write is read back through the new owner
// and found in the file; the FUSE views' info files show the owner, the
// states and the epoch.
//
// The shared file is on the guest's tmpfs here: OFD locks between two
// processes of one kernel. TestScaleOutGluster runs the same on GlusterFS.
func TestScaleOutFailover(t *testing.T) {
	runScaleOut(t, false)
}

// TestScaleOutGluster is TestScaleOutFailover with the file on the
// in-guest replica-3 GlusterFS volume (gluster.sh), each gateway through
// its own FUSE client: the lease's OFD lock and sidecar go through two
// Gluster clients, and the file is checked through the first client after
// the second gateway wrote most of it.
func TestScaleOutGluster(t *testing.T) {
	runScaleOut(t, true)
}

func runScaleOut(t *testing.T, gluster bool) {
	vmtest.RequireTools(t, "iscsi-inq", "qemu-io", "qemu-img")
	const (
		iqn1   = "iqn.2026-11.org.lunbridge.test:gw1"
		iqn2   = "iqn.2026-11.org.lunbridge.test:gw2"
		chunk  = 64 << 10
		chunks = 48
		size   = 8 << 20
	)
	opts := vmtest.Options{
		Net:    true,
		Files:  map[string]string{"lunbridge": vmtest.BuildLunbridge(t)},
		Script: lunbridgeLib + "IQN1=" + iqn1 + "\nIQN2=" + iqn2 + "\n" + scenario("scaleout"),
	}
	if gluster {
		opts.Script = lunbridgeLib + glusterLib(t) + "GLUSTER=1\nIQN1=" + iqn1 + "\nIQN2=" + iqn2 + "\n" + scenario("scaleout")
		opts.MemoryMB = glusterMemoryMB
		opts.Timeout = 8 * time.Minute
	}
	vm := vmtest.Boot(t, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	url := func(iqn string) string { return fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", vm.HostPort(), iqn) }
	paths := []string{url(iqn1), url(iqn2)}

	// VPD 83h (SPC-4 7.6.3) of a path: the disk's name (the SCSI name
	// string "naa.<NAA designator>"), and the path's relative target
	// port and target port group designators with target port
	// association. Debian's iscsi-inq (libiscsi 1.19) prints binary
	// designators with %s, so their values (00 00 00 0N) show as "[]":
	// the unit tests check the bytes. libiscsi logs in with TEST UNIT
	// READY, which a standby path refuses (02/04/0B), so each path is
	// asked while it serves.
	var naa [2]string
	vpd := func(i int) {
		out := hostCmd(ctx, t, "iscsi-inq", "-e", "1", "-c", "131", paths[i])
		naa[i] = designator(out, "SCSI_NAME_STRING")
		if !strings.HasPrefix(naa[i], "[naa.6001405") {
			t.Errorf("path %d: SCSI name string %q, want naa.6001405...", i+1, naa[i])
		}
		for _, typ := range []string{"RELATIVE_TARGET_PORT", "TARGET_PORT_GROUP"} {
			if designator(out, typ) == "" {
				t.Errorf("path %d: no %s designator with target port association", i+1, typ)
			}
		}
	}
	vpd(0)

	// write tries one chunk through a path: nil if acknowledged.
	write := func(path string, k int) error {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := fmt.Sprintf("write -f -P %d %d %d", k+1, k*chunk, chunk)
		out, err := exec.CommandContext(wctx, "qemu-io", "-f", "raw", "-c", cmd, path).CombinedOutput()
		if err == nil && strings.Contains(string(out), "failed") {
			err = fmt.Errorf("qemu-io: %s", strings.TrimSpace(string(out)))
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	cur := 0
	var failover time.Duration
	writeRange := func(from, to int) {
		for k := from; k < to; k++ {
			start := time.Now()
			for {
				err := write(paths[cur], k)
				if err == nil {
					break
				}
				t.Logf("chunk %d through path %d: %v", k, cur+1, err)
				if time.Since(start) > 90*time.Second {
					t.Fatalf("chunk %d: no path took it for 90 s", k)
				}
				cur = 1 - cur // the multipath initiator's move
				time.Sleep(200 * time.Millisecond)
			}
			if d := time.Since(start); d > failover {
				failover = d
			}
		}
	}

	writeRange(0, chunks/3)
	if cur != 0 {
		t.Errorf("writes went to path %d while gateway 1 owned the LUN", cur+1)
	}
	if err := vm.Signal("kill1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "killed"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	writeRange(chunks/3, 2*chunks/3)
	t.Logf("owner killed: writes went on through path %d; the slowest write took %v (%v since the kill)", cur+1, failover, time.Since(killed))
	if cur != 1 {
		t.Errorf("after the kill, writes end on path %d, want 2", cur+1)
	}
	vpd(1)
	if naa[0] != naa[1] {
		t.Errorf("the paths show two disks: %s and %s", naa[0], naa[1])
	}

	if err := vm.Signal("restart1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "restarted"); err != nil {
		t.Fatal(err)
	}
	// The restarted gateway is standby: libiscsi's login (TEST UNIT
	// READY) or the read is refused with 02/04/0B, and neither asks for
	// the LUN back.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	out, err := exec.CommandContext(rctx, "qemu-io", "-f", "raw", "-c", "read 0 4k", paths[0]).CombinedOutput()
	rcancel()
	t.Logf("host: read through the restarted gateway 1: %v\n%s", err, out)
	if err == nil && !strings.Contains(string(out), "failed") {
		t.Error("the restarted gateway served a read: it should be standby")
	} else if !strings.Contains(string(out), "0x040b") && !strings.Contains(string(out), "NOT READY") {
		t.Errorf("the restarted gateway refused the read, but not as standby (02/04/0B)")
	}
	writeRange(2*chunks/3, chunks)
	if cur != 1 {
		t.Errorf("writes after the restart end on path %d, want 2", cur+1)
	}

	// Every acknowledged chunk, through the owner and in the file.
	want := make([]byte, size)
	for k := range chunks {
		for i := range chunk {
			want[k*chunk+i] = byte(k + 1)
		}
	}
	back := filepath.Join(t.TempDir(), "back.raw")
	hostCmd(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "raw", paths[1], back)
	checkChunks(t, "read through gateway 2", back, want, chunk)
	if err := vm.Signal("finish"); err != nil {
		t.Fatal(err)
	}
	res := waitScript(t, vm)
	checkChunks(t, "the shared file", filepath.Join(res.ShareDir, "lun.img"), want, chunk)
}

// designator returns the Designator:[...] value that follows "Designator
// Type:(N) typ" in iscsi-inq's VPD 83h output, or "". Target port
// designators count only with target port association (01b).
func designator(out, typ string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Designator Type:") && strings.HasSuffix(strings.TrimSpace(l), ") "+typ) {
			if strings.Contains(typ, "TARGET_PORT") && (i == 0 || !strings.HasPrefix(lines[i-1], "Association:(1)")) {
				continue
			}
			for _, d := range lines[i+1:] {
				if v, ok := strings.CutPrefix(d, "Designator:"); ok {
					return strings.TrimSpace(v)
				}
			}
		}
	}
	return ""
}

// checkChunks compares file with want chunk by chunk.
func checkChunks(t *testing.T, what, file string, want []byte, chunk int) {
	t.Helper()
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for off := 0; off < len(want); off += chunk {
		if !bytes.Equal(got[off:off+chunk], want[off:off+chunk]) {
			t.Errorf("%s: chunk %d (byte %d) is not what was acknowledged", what, off/chunk, off)
		}
	}
}
