// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"strings"
	"testing"
)

// TestDiedBooting checks which crashed guests are booted again: only those
// whose script never started.
func TestDiedBooting(t *testing.T) {
	if !strings.Contains(initScript, `echo "`+readyLine) {
		t.Fatalf("the guest's init no longer prints %q: diedBooting would reboot every crash", readyLine)
	}
	if !strings.Contains(initScript, `echo "`+setupFailedLine) {
		t.Fatalf("the guest's init no longer prints %q: a broken setup would be booted again", setupFailedLine)
	}
	for _, tc := range []struct {
		name, console string
		want          bool
	}{
		{"panic in early boot", "SeaBIOS\n[    1.287962] Kernel panic - not syncing: Fatal exception in interrupt\n", true},
		{"qemu failed to start", "qemu-system-x86_64: -kernel: could not open\n", true},
		{"panic during the script", "vmtest: guest ready (kernel 6.1.0), running script\n+ lunbridge export\n[ 9.1] Kernel panic\n", false},
		{"setup failure", "vmtest: SETUP FAILED: mount 9p share\n", false},
	} {
		if got := diedBooting(tc.console); got != tc.want {
			t.Errorf("%s: diedBooting = %v, want %v", tc.name, got, tc.want)
		}
	}
}
