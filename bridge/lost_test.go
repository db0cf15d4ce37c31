// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBackingLost: a backing store that answers ENOTCONN (a FUSE client
// gone) fails the command with NOT READY, MANUAL INTERVENTION REQUIRED,
// turns the LUN failed with the reason, and answers every media command
// the same way without touching the file; "online" brings it back.
func TestBackingLost(t *testing.T) {
	const size = 1 << 20
	ffs := newFaultFS(t, size)
	mnt := mountFUSE(t, ffs)
	ffs.inject(fault{write: true, off: 8 * 512, errno: syscall.ENOTCONN})
	l := serveLUN(t, Options{Name: "lost", Path: filepath.Join(mnt, "disk.img")})

	l.mustGood(t, write10(0, 8, false), pattern(4096, 1), 0)
	l.wantSense(t, write10(8, 8, false), pattern(4096, 2), 0, 0x02, 0x04, 0x03)
	info := l.Info()
	if info.State != StateFailed || !strings.Contains(info.Reason, "backing store lost") ||
		!strings.Contains(info.Reason, syscall.ENOTCONN.Error()) {
		t.Errorf("after ENOTCONN: state %v, reason %q; want failed, backing store lost with the error", info.State, info.Reason)
	}
	// Fails fast: the disk is offline, the file is not asked.
	l.wantSense(t, read10(0, 8), nil, 4096, 0x02, 0x04, 0x03)
	if err := l.Control("online"); err != nil {
		t.Fatalf("online: %v", err)
	}
	if info := l.Info(); info.State != StateOnline || info.Reason != "" {
		t.Errorf("after online: state %v, reason %q; want online, none", info.State, info.Reason)
	}
	if got := l.mustGood(t, read10(0, 8), nil, 4096); string(got) != string(pattern(4096, 1)) {
		t.Error("data written before the loss reads back different")
	}
}
