// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident reports how many of the pages of f's first n bytes are in the
// page cache, with mincore(2) over a shared mapping (x/sys has no
// Mincore on Linux).
func resident(t *testing.T, f *os.File, n int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (n+page-1)/page)
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	k := 0
	for _, v := range vec {
		k += int(v & 1)
	}
	return k
}
