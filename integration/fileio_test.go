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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestFileioLoopback checks the harness end to end against LIO's own fileio
// backstore: a 64 MiB random pattern written with O_DIRECT through the
// tcm_loop /dev/sdX must read back identically and be what the backing file
// holds. It is the reference the TCMU tests compare lunbridge with.
func TestFileioLoopback(t *testing.T) {
	vmtest.Run(t, vmtest.Options{Script: `
dd if=/dev/urandom of=/tmp/pattern bs=1M count=64 2>/dev/null
d=$(fileio_create ref /tmp/ref.img 67108864)
cat "$d/info"
dev=$(loop_export 5001405000000001 "$d")
echo "fileio LUN is $dev"
[ "$(cat /sys/block/${dev#/dev/}/size)" = 131072 ] || die "size $(cat /sys/block/${dev#/dev/}/size) sectors, want 131072"
[ "$(loop_dev 5001405000000001)" = "$dev" ] || die "loop_dev disagrees"
dd if=/tmp/pattern of="$dev" bs=1M oflag=direct
dd if="$dev" of=/tmp/readback bs=1M iflag=direct
want=$(md5sum < /tmp/pattern)
got=$(md5sum < /tmp/readback)
file=$(md5sum < /tmp/ref.img)
echo "pattern $want"
echo "device  $got"
echo "file    $file"
[ "$got" = "$want" ] || die "device read-back differs from the pattern"
[ "$file" = "$want" ] || die "backing file differs from the pattern"
loop_unexport 5001405000000001
[ ! -e "$dev" ] || die "$dev still exists after unexport"
fileio_remove ref
target_leftovers
`})
}

// TestFileioISCSI proves the network path that lunbridge's iSCSI tests use:
// the guest exports a fileio LUN through iscsi_target_mod, and the host
// reaches it only through qemu's hostfwd on 127.0.0.1, with libiscsi's
// iscsi-inq and qemu-img (a libiscsi initiator) writing and reading a
// pattern that the guest checks in the backing file.
func TestFileioISCSI(t *testing.T) {
	vmtest.RequireTools(t, "iscsi-inq", "qemu-img")
	const (
		iqn  = "iqn.2026-11.org.lunbridge:fileio"
		size = 16 << 20
	)
	vm := vmtest.Boot(t, vmtest.Options{Net: true, Script: `
d=$(fileio_create ref /tmp/ref.img ` + strconv.Itoa(size) + `)
iscsi_export ` + iqn + ` "$d"
signal exported
waitfor written
md5sum < /tmp/ref.img | cut -d' ' -f1 > /mnt/host/backing.md5
signal hashed
waitfor done
iscsi_unexport ` + iqn + `
fileio_remove ref
target_leftovers
`})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if err := vm.WaitReady(ctx, "exported"); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", vm.HostPort(), iqn)

	inq := hostCmd(ctx, t, "iscsi-inq", url)
	if !strings.Contains(inq, "LIO-ORG") {
		t.Errorf("iscsi-inq %s: no LIO-ORG vendor in:\n%s", url, inq)
	}

	dir := t.TempDir()
	pattern := make([]byte, size)
	rand.NewChaCha8([32]byte{'l', 'u', 'n'}).Read(pattern)
	patternFile := filepath.Join(dir, "pattern.raw")
	if err := os.WriteFile(patternFile, pattern, 0o644); err != nil {
		t.Fatal(err)
	}
	hostCmd(ctx, t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", patternFile, url)
	if err := vm.Signal("written"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitReady(ctx, "hashed"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(vm.ShareDir(), "backing.md5"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", md5.Sum(pattern)); strings.TrimSpace(string(got)) != want {
		t.Errorf("backing file md5 = %s, want %s (the pattern written over iSCSI)", got, want)
	}

	back := filepath.Join(dir, "back.raw")
	hostCmd(ctx, t, "qemu-img", "convert", "-f", "raw", "-O", "raw", url, back)
	data, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, pattern) {
		t.Errorf("read back over iSCSI: %d bytes, md5 %x; want %d bytes, md5 %x",
			len(data), md5.Sum(data), len(pattern), md5.Sum(pattern))
	}

	if err := vm.Signal("done"); err != nil {
		t.Fatal(err)
	}
	waitScript(t, vm)
}

// hostCmd runs a host program, fails the test if it fails, and returns its
// combined output.
func hostCmd(ctx context.Context, t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	t.Logf("host: %s %s\n%s", name, strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}
