// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// fileioBackstore creates an in-kernel fileio backstore core/fileio_9/NAME
// on a new file of size bytes (no ring to serve) and removes it at the end
// of the test. It returns the backstore directory and the file.
func fileioBackstore(t *testing.T, name string, size int64) (dir, file string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), name+".img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, size); err != nil {
		t.Fatal(err)
	}
	hba := filepath.Join(cfgCore, "fileio_9")
	if err := os.Mkdir(hba, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	dir = filepath.Join(hba, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove backstore %s: %v", dir, err)
		}
		os.Remove(hba) // fails while another backstore uses it
	})
	writeAttr(t, filepath.Join(dir, "control"), fmt.Sprintf("fd_dev_name=%s,fd_dev_size=%d", file, size))
	writeAttr(t, filepath.Join(dir, "enable"), "1")
	return dir, file
}

// alignedBuf returns n bytes of page-aligned memory for O_DIRECT.
func alignedBuf(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// directIO writes buf at off of dev with O_DIRECT, then reads it back.
func directIO(t *testing.T, dev string, off int64, buf []byte) []byte {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatalf("write %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dev, err)
	}
	back := alignedBuf(t, len(buf))
	if _, err := f.ReadAt(back, off); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	return back
}

// fabricTargets lists what is under the targets (WWN directories, whose
// names have a dot) of target/<name>; the fabric's own default groups,
// such as iscsi/discovery_auth, are left out.
func fabricTargets(t *testing.T, name string) []string {
	t.Helper()
	dir := filepath.Join(cfgTarget, name)
	var out []string
	for _, p := range configTree(t, dir) {
		rel, _ := filepath.Rel(dir, p)
		if first, _, _ := strings.Cut(rel, "/"); strings.Contains(first, ".") {
			out = append(out, p)
		}
	}
	return out
}

// gone waits until path no longer exists.
func gone(path string) bool {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return true
		}
	}
	return false
}

// TestFabricLoop exports in-kernel fileio backstores through
// fabric.LoopTarget: AddLUN must return the right /dev/sdX (size, data
// written with O_DIRECT lands in the backing file), a second LUN gets its
// own disk, RemoveLUN deletes one disk only, and Remove leaves
// target/loopback as it was.
func TestFabricLoop(t *testing.T) {
	if guestHalf(t) {
		fabricLoopGuest(t)
		return
	}
	runSelf(t, vmtest.Options{Timeout: 3 * time.Minute}, "", "target_leftovers")
}

func fabricLoopGuest(t *testing.T) {
	ctx := t.Context()
	const size = 16 << 20
	bs0, file0 := fileioBackstore(t, "fab0", size)
	bs1, _ := fileioBackstore(t, "fab1", size/2)
	before := fabricTargets(t, "loopback")

	// The harness loaded every module and mounted configfs.
	if err := fabric.LoadModules(ctx, fabric.ModuleOptions{NoLoad: true},
		fabric.ModConfigfs, fabric.ModTargetCore, fabric.ModUser, fabric.ModLoop, fabric.ModISCSI); err != nil {
		t.Errorf("LoadModules(NoLoad) in a prepared guest = %v", err)
	}
	if err := fabric.LoadModules(ctx, fabric.ModuleOptions{NoLoad: true}, "no_such_module"); err == nil ||
		!strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("LoadModules(no_such_module) = %v, want an error naming it", err)
	}

	wwn, nexus := fabric.LoopWWNs("fab")
	lt := &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus}
	dev0, err := lt.AddLUN(ctx, 0, bs0)
	if err != nil {
		t.Fatal(err)
	}
	// tcmu.ListDevices reports a backstore as linked from this status.
	if info := readTrim(t, filepath.Join(bs0, "info")); !strings.Contains(info, "Status: ACTIVATED") {
		t.Errorf("backstore info while linked = %q, want Status: ACTIVATED", info)
	}
	tpg := filepath.Join(cfgTarget, "loopback", wwn, "tpgt_1")
	t.Logf("LUN 0 is %s; tpgt_1/address %s, nexus %s", dev0,
		readTrim(t, filepath.Join(tpg, "address")), readTrim(t, filepath.Join(tpg, "nexus")))
	if got := readTrim(t, "/sys/block/"+filepath.Base(dev0)+"/size"); got != strconv.Itoa(size/512) {
		t.Errorf("%s: %s sectors, want %d", dev0, got, size/512)
	}
	// The disk's SCSI address must be the LUN's.
	link, err := os.Readlink("/sys/block/" + filepath.Base(dev0) + "/device")
	if err != nil {
		t.Fatal(err)
	}
	if addr := readTrim(t, filepath.Join(tpg, "address")) + ":0"; filepath.Base(link) != addr {
		t.Errorf("%s is SCSI %s, want %s", dev0, filepath.Base(link), addr)
	}

	pattern := alignedBuf(t, 1<<20)
	rand.NewChaCha8([32]byte{'f', 'a', 'b'}).Read(pattern)
	const off = 3 << 20
	if back := directIO(t, dev0, off, pattern); !bytes.Equal(back, pattern) {
		t.Error("read back through the loop LUN differs from the pattern")
	}
	data, err := os.ReadFile(file0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[off:off+len(pattern)], pattern) {
		t.Error("backing file differs from the pattern written through the LUN")
	}

	dev1, err := lt.AddLUN(ctx, 3, bs1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LUN 3 is %s", dev1)
	if dev1 == dev0 {
		t.Errorf("LUN 3 and LUN 0 are both %s", dev0)
	}
	if got := readTrim(t, "/sys/block/"+filepath.Base(dev1)+"/size"); got != strconv.Itoa(size/2/512) {
		t.Errorf("%s: %s sectors, want %d", dev1, got, size/2/512)
	}
	if err := lt.RemoveLUN(3); err != nil {
		t.Fatal(err)
	}
	if !gone(dev1) {
		t.Errorf("%s still exists after RemoveLUN", dev1)
	}
	if _, err := os.Stat(dev0); err != nil {
		t.Errorf("%s after removing the other LUN: %v", dev0, err)
	}

	// A new LoopTarget with the same names adopts LUN 0 (a restart).
	again := &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus}
	if dev, err := again.AddLUN(ctx, 0, bs0); err != nil || dev != dev0 {
		t.Errorf("adopting LUN 0 = %q, %v; want %s", dev, err, dev0)
	}
	third := &fabric.LoopTarget{WWN: wwn, NexusWWN: nexus}
	if _, err := third.AddLUN(ctx, 0, bs1); err == nil {
		t.Error("AddLUN over LUN 0 with another backstore succeeded")
		third.Remove()
	}
	if err := again.Remove(); err != nil {
		t.Error(err)
	}
	if !gone(dev0) {
		t.Errorf("%s still exists after the adopted LUN was removed", dev0)
	}
	if err := lt.Remove(); err != nil {
		t.Fatal(err)
	}
	if info := readTrim(t, filepath.Join(bs0, "info")); !strings.Contains(info, "Status: DEACTIVATED") {
		t.Errorf("backstore info after Remove = %q, want Status: DEACTIVATED", info)
	}
	if after := fabricTargets(t, "loopback"); !slices.Equal(after, before) {
		t.Errorf("target/loopback after Remove = %q, want %q", after, before)
	}
}

// TestFabricISCSI exports a fileio backstore through two fabric.ISCSITargets
// (one with an ACL and CHAP in the ACL, one in demo mode with CHAP in
// tpgt_1/auth) and logs in from the host through qemu's port forward with
// libiscsi's iscsi-inq: the right secret works, a wrong or missing one is
// refused, an initiator outside the ACL is refused. Remove must leave
// target/iscsi as it was.
func TestFabricISCSI(t *testing.T) {
	const (
		aclIQN  = "iqn.2026-11.org.lunbridge.test:acl"
		demoIQN = "iqn.2026-11.org.lunbridge.test:demo"
		allowed = "iqn.2026-11.org.lunbridge.test:host-allowed"
		other   = "iqn.2026-11.org.lunbridge.test:host-other"
		user    = "lbuser"
		secret  = "lb-secret-0123"
	)
	if guestHalf(t) {
		fabricISCSIGuest(t, aclIQN, demoIQN, allowed, user, secret)
		return
	}
	vmtest.RequireTools(t, "iscsi-inq")
	vm := vmtest.Boot(t, selfInVM(t, vmtest.Options{Net: true, Timeout: 4 * time.Minute}, "", "target_leftovers"))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "exported"); err != nil {
		t.Fatal(err)
	}
	url := func(cred, iqn string) string {
		if cred != "" {
			cred += "@"
		}
		return fmt.Sprintf("iscsi://%s127.0.0.1:%d/%s/0", cred, vm.HostPort(), iqn)
	}
	for _, tc := range []struct {
		name, initiator, cred, iqn string
		ok                         bool
	}{
		{"acl right secret", allowed, user + "%" + secret, aclIQN, true},
		{"acl wrong secret", allowed, user + "%wrong-secret-99", aclIQN, false},
		{"acl wrong user", allowed, "other%" + secret, aclIQN, false},
		{"acl no chap", allowed, "", aclIQN, false},
		{"initiator not in acl", other, user + "%" + secret, aclIQN, false},
		{"demo right secret", other, user + "%" + secret, demoIQN, true},
		{"demo wrong secret", other, user + "%wrong-secret-99", demoIQN, false},
		{"demo no chap", other, "", demoIQN, false},
	} {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, "iscsi-inq", "-i", tc.initiator, url(tc.cred, tc.iqn)).CombinedOutput()
		ccancel()
		// Never log the secret: mask it in what the initiator printed.
		shown := strings.ReplaceAll(string(out), secret, "<secret>")
		t.Logf("%s: iscsi-inq: err %v\n%s", tc.name, err, shown)
		switch {
		case tc.ok && (err != nil || !strings.Contains(shown, "LIO-ORG")):
			t.Errorf("%s: login refused or no LIO-ORG inquiry data: %v", tc.name, err)
		case !tc.ok && err == nil:
			t.Errorf("%s: login succeeded, want it refused", tc.name)
		}
	}
	if err := vm.Signal("done"); err != nil {
		t.Fatal(err)
	}
	waitSelf(t, vm)
}

func fabricISCSIGuest(t *testing.T, aclIQN, demoIQN, allowed, user, secret string) {
	ctx := t.Context()
	bs, _ := fileioBackstore(t, "fabi", 8<<20)
	before := fabricTargets(t, "iscsi")

	acl := &fabric.ISCSITarget{IQN: aclIQN, Initiators: []string{allowed}, CHAPUser: user, CHAPPassword: secret}
	where, err := acl.AddLUN(ctx, 0, bs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ACL target at %s", where)
	demo := &fabric.ISCSITarget{IQN: demoIQN, AllowAnyInitiator: true, CHAPUser: user, CHAPPassword: secret}
	if where, err = demo.AddLUN(ctx, 0, bs); err != nil {
		t.Fatal(err)
	}
	t.Logf("demo target at %s", where)
	for _, dir := range []string{
		filepath.Join(cfgTarget, "iscsi", aclIQN, "tpgt_1", "attrib"),
		filepath.Join(cfgTarget, "iscsi", demoIQN, "tpgt_1", "attrib"),
	} {
		logAttribs(t, dir)
	}
	if got := readTrim(t, filepath.Join(cfgTarget, "iscsi", demoIQN, "tpgt_1", "auth", "userid")); got != user {
		t.Errorf("demo tpgt_1/auth/userid = %q, want %q", got, user)
	}
	guestLib(t, "signal", "exported")
	guestLib(t, "waitfor", "done", "200")
	for _, tgt := range []string{aclIQN, demoIQN} {
		t.Logf("%s dynamic_sessions: %q", tgt, readTrim(t, filepath.Join(cfgTarget, "iscsi", tgt, "tpgt_1", "dynamic_sessions")))
	}

	// A target abandoned by a crashed run is refused by AddLUN; when its
	// LUNs link backstores of ours, RemoveStaleISCSI tears it down and it
	// is built afresh; when they do not, it is left alone.
	crashIQN := aclIQN + ".crash"
	crashed := &fabric.ISCSITarget{IQN: crashIQN, Initiators: []string{allowed}, CHAPUser: user, CHAPPassword: secret}
	for lun := range 2 {
		if _, err := crashed.AddLUN(ctx, lun, bs); err != nil {
			t.Fatal(err)
		}
	}
	again := &fabric.ISCSITarget{IQN: crashIQN, Initiators: []string{allowed}, CHAPUser: user, CHAPPassword: secret}
	if _, err := again.AddLUN(ctx, 0, bs); err == nil {
		t.Error("AddLUN over an existing target without Adopt succeeded")
	}
	if err := fabric.RemoveStaleISCSI(nil, "", crashIQN, func(string) bool { return false }); !errors.Is(err, fs.ErrExist) {
		t.Errorf("RemoveStaleISCSI of a target that is not ours = %v, want fs.ErrExist", err)
	}
	if err := fabric.RemoveStaleISCSI(nil, "", crashIQN, func(p string) bool { return p == filepath.Clean(bs) }); err != nil {
		t.Errorf("RemoveStaleISCSI of a leftover target = %v", err)
	}
	if _, err := again.AddLUN(ctx, 0, bs); err != nil {
		t.Errorf("AddLUN after RemoveStaleISCSI = %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfgTarget, "iscsi", crashIQN, "tpgt_1", "lun", "lun_1")); !os.IsNotExist(err) {
		t.Errorf("leftover LUN 1 after RemoveStaleISCSI: %v", err)
	}

	for _, it := range []*fabric.ISCSITarget{acl, demo, again} {
		if err := it.Remove(); err != nil {
			t.Error(err)
		}
	}
	if after := fabricTargets(t, "iscsi"); !slices.Equal(after, before) {
		t.Errorf("target/iscsi after Remove = %q, want %q", after, before)
	}
}
