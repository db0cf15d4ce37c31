// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"regexp"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestBenchCopy runs internal/cmd/copycost in the guest of the fio
// benchmark (same kernel, 2 vCPUs under TCG, clocksource tsc): what 1 MiB
// costs moved between a tmpfs file and a data-area-shaped buffer with
// preadv/pwritev, and through the file's mapping. A measurement, not a
// check: it logs the lines and fails only if the tool did not run.
// BENCHMARKS.md ("Memory-backed files are mapped") quotes it.
//
//	LUNBRIDGE_INTEGRATION=1 LUNBRIDGE_BENCH=1 go test -run '^TestBenchCopy$' -v ./integration/
func TestBenchCopy(t *testing.T) {
	if os.Getenv("LUNBRIDGE_BENCH") == "" {
		t.Skip("set LUNBRIDGE_BENCH=1 to run the copy benchmark")
	}
	vm := vmtest.Boot(t, vmtest.Options{
		MemoryMB:   2048,
		KernelArgs: "clocksource=tsc tsc=reliable",
		Files:      map[string]string{"bin/copycost": vmtest.BuildCommand(t, "./internal/cmd/copycost")},
		Script: `
mkdir -p /mnt/t && mount -t tmpfs -o size=600m none /mnt/t
grep -m1 -o -w 'erms\|fsrm' /proc/cpuinfo | sed 's/^/copycost cpu flag: /' || true
cp /mnt/host/bin/copycost /tmp/copycost
/tmp/copycost -size 256 -passes 4 -rounds 3 /mnt/t/file
`})
	res, err := vm.Wait()
	if err != nil {
		t.Fatal(err)
	}
	lines := regexp.MustCompile(`(?m)^copycost .*$`).FindAllString(res.Console, -1)
	for _, l := range lines {
		t.Log(l)
	}
	if res.ExitCode != 0 || len(lines) < 12 {
		t.Fatalf("copycost exited %d with %d result lines", res.ExitCode, len(lines))
	}
}
