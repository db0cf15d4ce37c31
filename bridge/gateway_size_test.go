// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"os"
	"path/filepath"
	"testing"
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
