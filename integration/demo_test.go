// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestDemo is scripts/demo.sh: lunbridge's main job in a VM, narrated on
// stdout. It runs only with LUNBRIDGE_DEMO set; the checks it makes are
// the other tests' too, but it fails like them if the disk misbehaves.
func TestDemo(t *testing.T) {
	if os.Getenv("LUNBRIDGE_DEMO") == "" {
		t.Skip("set LUNBRIDGE_DEMO=1 (scripts/demo.sh) to run the demo")
	}
	lb := vmtest.BuildLunbridge(t)
	vmtest.Run(t, vmtest.Options{
		Files:   map[string]string{"lunbridge": lb},
		Console: os.Stdout,
		NoTrace: true,
		Script:  guestScript("demo"),
	})
}
