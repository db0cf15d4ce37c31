// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestHarness checks the vmtest machinery the other real-kernel tests rely
// on, in one guest: files in and out of the share, a static lunbridge from
// BuildLunbridge, host tools through hostrun, both directions of
// signal/waitfor/signalled, target_leftovers noticing a leftover, and a
// non-zero exit status reported as such (not as a crash).
func TestHarness(t *testing.T) {
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := vmtest.Boot(t, vmtest.Options{
		Files: map[string]string{
			"bin/lunbridge": vmtest.BuildLunbridge(t),
			"data/in.txt":   in,
		},
		// Options.KernelArgs reach the guest kernel's command line.
		KernelArgs: "lunbridge_harness_arg=1",
		Script: `
grep -q ' lunbridge_harness_arg=1' /proc/cmdline || die "KernelArgs missing from $(cat /proc/cmdline)"
cp /mnt/host/data/in.txt /mnt/host/out.txt
/mnt/host/bin/lunbridge --version > /mnt/host/version.txt
echo guest-tmp > /tmp/seen-by-host-tools
hostrun cat /tmp/seen-by-host-tools > /mnt/host/hostrun.txt
hostrun fio --version >> /mnt/host/hostrun.txt
d=$(fileio_create stray /tmp/stray.img 1048576)
if target_leftovers; then die "target_leftovers missed $d"; fi
fileio_remove stray
target_leftovers
! signalled go || die "signalled go before the host's VM.Signal"
signal up
waitfor go 120
signalled go || die "waitfor go returned, signalled go is false"
exit 7
`})
	if err := vm.WaitReady(t.Context(), "up"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"out.txt":     "from the host\n",
		"version.txt": "lunbridge",
		"hostrun.txt": "guest-tmp\nfio-",
	} {
		got, err := os.ReadFile(filepath.Join(vm.ShareDir(), name))
		if err != nil {
			t.Errorf("guest output: %v", err)
			continue
		}
		if !strings.Contains(string(got), want) {
			t.Errorf("guest %s = %q, want it to contain %q", name, got, want)
		}
	}
	if err := vm.Signal("go"); err != nil {
		t.Fatal(err)
	}
	res, err := vm.Wait()
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if res.ExitCode != 7 {
		t.Errorf("ExitCode = %d, want 7", res.ExitCode)
	}
	if !strings.Contains(res.Console, "vmtest: script exit status 7") {
		t.Errorf("console lacks the exit marker")
	}
}

// TestHarnessCrash: a kernel panic ends the run with ErrCrashed, not with an
// exit status, and the panic is in the console.
func TestHarnessCrash(t *testing.T) {
	vm := vmtest.Boot(t, vmtest.Options{Script: `echo c > /proc/sysrq-trigger; sleep 60`})
	res, err := vm.Wait()
	if !errors.Is(err, vmtest.ErrCrashed) {
		t.Fatalf("Wait = %+v, %v; want ErrCrashed", res, err)
	}
	if !strings.Contains(res.Console, "Kernel panic") {
		t.Errorf("console lacks the kernel panic")
	}
}

// TestHarnessTimeout: a guest that outlives Options.Timeout is killed and
// Wait reports ErrTimeout.
func TestHarnessTimeout(t *testing.T) {
	vm := vmtest.Boot(t, vmtest.Options{Script: `sleep 600`, Timeout: 3 * time.Second})
	_, err := vm.Wait()
	if !errors.Is(err, vmtest.ErrTimeout) {
		t.Fatalf("Wait: %v, want ErrTimeout", err)
	}
}
