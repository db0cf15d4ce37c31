// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestExportISCSI exports two files as LUNs 0 and 1 of one iSCSI target
// with "lunbridge export --fabric iscsi", an initiator ACL and CHAP, and
// drives it from the host through the harness's 127.0.0.1 port forward
// with real initiators (libiscsi's tools, qemu-img): the right initiator
// and secret get in, a wrong secret or an unlisted initiator is refused,
// data moves both ways on both LUNs and lands in the backing files, and
// shutdown leaves configfs as it was. After a SIGKILL the restarted daemon
// replaces the target the killed one left and serves the same data. An
// export without --initiator refuses every initiator and says how to
// allow one; --insecure-allow-any-initiator lets any in, with a warning.
func TestExportISCSI(t *testing.T) {
	vmtest.RequireTools(t, "iscsi-inq", "iscsi-readcapacity16", "qemu-img")
	const (
		iqn    = "iqn.2026-11.org.lunbridge.test:store"
		user   = "lbuser"
		secret = "s3cret-s3cret-42"
		// qemu-img's libiscsi initiator name (qemu's default).
		qemuIQN  = "iqn.2008-11.org.linux-kvm"
		otherIQN = "iqn.2026-11.org.example:intruder"
		size     = 8 << 20
	)
	lb := vmtest.BuildLunbridge(t)
	vm := vmtest.Boot(t, vmtest.Options{
		Net:    true,
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("export-iscsi", "IQN", iqn, "QEMU_IQN", qemuIQN, "CHAP_USER", user, "SECRET", secret),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "exported"); err != nil {
		t.Fatal(err)
	}
	port := vm.HostPort()
	url := func(cred string, lun int) string {
		if cred != "" {
			cred += "@"
		}
		return fmt.Sprintf("iscsi://%s127.0.0.1:%d/%s/%d", cred, port, iqn, lun)
	}
	good := user + "%" + secret

	inq := hostCmd(ctx, t, "iscsi-inq", "-i", qemuIQN, url(good, 0))
	if !strings.Contains(strings.ToLower(inq), "lunbridge") {
		t.Errorf("iscsi-inq: no lunbridge product in:\n%s", inq)
	}
	capOut := hostCmd(ctx, t, "iscsi-readcapacity16", "-i", qemuIQN, url(good, 1))
	if !strings.Contains(capOut, fmt.Sprint(size/512-1)) && !strings.Contains(capOut, fmt.Sprint(size)) {
		t.Errorf("iscsi-readcapacity16: no %d-byte capacity in:\n%s", size, capOut)
	}
	for _, tc := range []struct{ name, initiator, cred string }{
		{"wrong secret", qemuIQN, user + "%wrong-secret-123"},
		{"no credentials", qemuIQN, ""},
		{"unlisted initiator", otherIQN, good},
	} {
		out, err := exec.CommandContext(ctx, "iscsi-inq", "-i", tc.initiator, url(tc.cred, 0)).CombinedOutput()
		t.Logf("host: iscsi-inq (%s): %v\n%s", tc.name, err, out)
		if err == nil {
			t.Errorf("iscsi-inq with %s got in; want a refused login", tc.name)
		}
	}

	dir := t.TempDir()
	var patterns [2][]byte
	for lun := range patterns {
		p := make([]byte, size)
		rand.NewChaCha8([32]byte{'i', 's', byte(lun)}).Read(p)
		patterns[lun] = p
		f := filepath.Join(dir, fmt.Sprintf("pattern%d.raw", lun))
		if err := os.WriteFile(f, p, 0o644); err != nil {
			t.Fatal(err)
		}
		hostCmd(ctx, t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", f, url(good, lun))
	}
	if err := vm.Signal("written"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "hashed"); err != nil {
		t.Fatal(err)
	}
	sums := md5s(t, filepath.Join(vm.ShareDir(), "backing.md5"))
	for lun, p := range patterns {
		if want := fmt.Sprintf("%x", md5.Sum(p)); lun >= len(sums) || sums[lun] != want {
			t.Errorf("backing file of LUN %d: md5s %v, want %s", lun, sums, want)
		}
		back := filepath.Join(dir, fmt.Sprintf("back%d.raw", lun))
		hostCmd(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url(good, lun), back)
		data, err := os.ReadFile(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, p) {
			t.Errorf("LUN %d read back over iSCSI: %d bytes, md5 %x; want %d bytes, md5 %x",
				lun, len(data), md5.Sum(data), len(p), md5.Sum(p))
		}
	}
	if err := vm.Signal("done"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "restarted"); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "after-restart.raw")
	hostCmd(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url(good, 1), back)
	if data, err := os.ReadFile(back); err != nil || !bytes.Equal(data, patterns[1]) {
		t.Errorf("LUN 1 after a SIGKILL and restart: %d bytes (%v), want the pattern", len(data), err)
	}
	if err := vm.Signal("checked"); err != nil {
		t.Fatal(err)
	}
	// Deny by default: the listed initiator of before, with no CHAP now,
	// is refused by a target exported without --initiator; with
	// --insecure-allow-any-initiator any initiator gets in.
	if err := vm.WaitReady(ctx, "denied"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "iscsi-inq", "-i", qemuIQN, url("", 0)).CombinedOutput()
	t.Logf("host: iscsi-inq (default export): %v\n%s", err, out)
	if err == nil {
		t.Error("iscsi-inq got into a target exported without --initiator; want a refused login")
	}
	if err := vm.Signal("denied-checked"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "open"); err != nil {
		t.Fatal(err)
	}
	if inq := hostCmd(ctx, t, "iscsi-inq", "-i", otherIQN, url("", 0)); !strings.Contains(strings.ToLower(inq), "lunbridge") {
		t.Errorf("iscsi-inq on a target open to any initiator: no lunbridge product in:\n%s", inq)
	}
	if err := vm.Signal("open-checked"); err != nil {
		t.Fatal(err)
	}
	waitScript(t, vm)
}
