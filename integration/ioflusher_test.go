// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestIOFlusherAllThreads checks that every thread of a serving lunbridge,
// including those the Go runtime started after the LUN came up, carries
// PR_SET_IO_FLUSHER: the task flags PF_MEMALLOC_NOIO (0x80000) and
// PF_LOCAL_THROTTLE (0x100000), field 9 of /proc/PID/task/TID/stat
// (proc(5); include/linux/sched.h). The I/O workers run on any of them.
func TestIOFlusherAllThreads(t *testing.T) {
	lb := vmtest.BuildLunbridge(t)
	vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge": lb},
		Script: guestScript("ioflusher"),
	})
}
