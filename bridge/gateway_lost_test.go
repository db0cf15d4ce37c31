// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lunbridge/lunbridge/scsi"
)

// TestGatewayLostFile: the owner gateway's file system client dies under
// it (its FUSE mount answers ENOTCONN, or ECONNABORTED for calls in
// flight, or the server forgets the handle: ESTALE). The failing write is
// not acknowledged; it completes with the gateway's 02/04/0C (LOGICAL UNIT
// NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE), which Linux fails as
// a path error so that multipath retries on another gateway, not with
// NOT READY, MANUAL INTERVENTION REQUIRED or a MEDIUM ERROR; the gateway
// is fenced (Gateway.Lost) and the LUN stays online, so that every later
// command gets the ALUA answer without reaching the file. A read that
// hits the loss is fenced the same way. An EIO stays a MEDIUM ERROR.
func TestGatewayLostFile(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name  string
		write bool
		errno syscall.Errno
		// key, asc, ascq: the sense of the failing command; lost: whether
		// the gateway must be fenced.
		key, asc, ascq uint8
		lost           bool
	}{
		{"write ENOTCONN", true, syscall.ENOTCONN, 0x02, 0x04, 0x0c, true},
		{"write ECONNABORTED", true, syscall.ECONNABORTED, 0x02, 0x04, 0x0c, true},
		{"write ESTALE", true, syscall.ESTALE, 0x02, 0x04, 0x0c, true},
		{"read ENOTCONN", false, syscall.ENOTCONN, 0x02, 0x04, 0x0c, true},
		{"write EIO", true, syscall.EIO, 0x03, 0x0c, 0x00, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ffs := newFaultFS(t, size)
			mnt := mountFUSE(t, ffs)
			path := filepath.Join(mnt, "disk.img")
			g := &fakeGateway{}
			g.state.Store(uint32(scsi.StateActiveOptimized))
			l := serveLUN(t, Options{Name: "gw", Path: path, Gateway: g})
			l.mustGood(t, write10(0, 8, false), pattern(4096, 1), 0)

			ffs.inject(fault{write: tc.write, off: 8 * 512, errno: tc.errno})
			checks := g.checks.Load()
			if tc.write {
				l.wantSense(t, write10(8, 8, false), pattern(4096, 2), 0, tc.key, tc.asc, tc.ascq)
			} else {
				l.mustGood(t, write10(8, 8, false), pattern(4096, 2), 0)
				checks = g.checks.Load()
				l.wantSense(t, read10(8, 8), nil, 4096, tc.key, tc.asc, tc.ascq)
			}
			p := g.lostErr.Load()
			if !tc.lost {
				if p != nil {
					t.Fatalf("Lost(%v) after %v, want no fencing", *p, tc.errno)
				}
				return
			}
			if p == nil || !errors.Is(*p, tc.errno) {
				t.Fatalf("Lost called with %v, want %v", p, tc.errno)
			}
			if tc.write && g.checks.Load() != checks+1 {
				// Only the check before the write ran: the failed write
				// never reached the after-check that acknowledges.
				t.Errorf("fence checked %d times for the failed write, want 1", g.checks.Load()-checks)
			}
			info := l.Info()
			if info.State != StateOnline || info.Reason != "" {
				t.Errorf("LUN state %v (%q) after the loss, want online: the gateway answers, not the LUN", info.State, info.Reason)
			}
			if info.Gateway == nil || info.Gateway.State != scsi.StateUnavailable || info.Gateway.Owner {
				t.Errorf("gateway info after the loss = %+v, want unavailable, not the owner", info.Gateway)
			}
			// Everything after answers the ALUA state without reaching
			// the file: a write to a healthy block is not made.
			l.wantSense(t, write10(16, 8, false), pattern(4096, 3), 0, 0x02, 0x04, 0x0c)
			l.wantSense(t, read10(0, 8), nil, 4096, 0x02, 0x04, 0x0c)
			l.wantSense(t, testUnitReady, nil, 0, 0x02, 0x04, 0x0c)
			got := make([]byte, 512)
			if _, err := ffs.data.ReadAt(got, 16*512); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, pattern(4096, 3)[:512]) {
				t.Error("a write after the loss reached the file")
			}
		})
	}
}
