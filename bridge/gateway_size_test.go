// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lunbridge/lunbridge/scsi"
)

// A gateway never changes the size of an existing shared file at start
// (it does not own the file yet): it serves the size it finds. A LUN
// that is not a gateway grows the file to the size asked; a gateway that
// creates the file sizes it.
func TestGatewayOpenKeepsFileSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gateway  bool
		existing int64 // -1: no file
		asked    int64
		want     int64
	}{
		{"gateway serves the smaller file", true, 1 << 20, 4 << 20, 1 << 20},
		{"gateway, same size", true, 4 << 20, 4 << 20, 4 << 20},
		{"gateway creates the file", true, -1, 4 << 20, 4 << 20},
		{"no gateway grows the file", false, 1 << 20, 4 << 20, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "shared.img")
			if tc.existing >= 0 {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			o := Options{Name: "shared", Path: path, Size: tc.asked}
			if tc.gateway {
				o.Gateway = &fakeGateway{}
			}
			l, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != tc.want || l.Info().Size != tc.want {
				t.Errorf("Open(size %d) of a %d-byte file: file %d bytes, LUN %d; want %d", tc.asked, tc.existing, st.Size(), l.Info().Size, tc.want)
			}
		})
	}
}

// TestGatewayOwnerAdoptsFileSize: a gateway that becomes the owner reads
// the file's size again, so a resize by the previous owner (the file
// grew after this gateway opened it) is what it reports; a smaller file
// never shrinks the LUN, and a standby keeps its size.
func TestGatewayOwnerAdoptsFileSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 1<<20); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Options{Name: "shared", Path: path, Size: 1 << 20, Gateway: &fakeGateway{}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var hooked int64
	l.resizeHook = func(size int64) error { hooked = size; return nil }
	// The other gateway, the owner, grew the file (and a byte more than
	// whole blocks).
	if err := os.Truncate(path, 4<<20+100); err != nil {
		t.Fatal(err)
	}
	if err := l.gatewayChanged(scsi.StateStandby); err != nil {
		t.Fatal(err)
	}
	if got := l.Info().Size; got != 1<<20 {
		t.Errorf("standby: LUN size %d, want it unchanged (%d)", got, 1<<20)
	}
	if err := l.gatewayChanged(scsi.StateActiveOptimized); err != nil {
		t.Fatal(err)
	}
	if got := l.Info().Size; got != 4<<20 || hooked != 4<<20 {
		t.Errorf("owner: LUN size %d, kernel told %d; want %d", got, hooked, 4<<20)
	}
	if err := os.Truncate(path, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := l.gatewayChanged(scsi.StateActiveOptimized); err != nil {
		t.Fatal(err)
	}
	if got := l.Info().Size; got != 4<<20 {
		t.Errorf("a smaller file shrank the LUN to %d", got)
	}
}
