// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

// TestSizeMessages: each wrong size says what is wrong with it in one
// line, instead of one generic "want a byte count".
func TestSizeMessages(t *testing.T) {
	for _, tc := range []struct {
		size, want string
	}{
		{"0", `LUN a: size "0": a LUN needs at least one block; leave the size out to use the file's`},
		{"0M", `LUN a: size "0M": a LUN needs at least one block`},
		{"8192P", `LUN a: size "8192P" is more than the largest LUN, 2^63 bytes less one block`},
		{"99999999999999999999", `LUN a: size "99999999999999999999" is more than the largest LUN`},
		{"ten", `LUN a: size "ten": want a byte count such as 64M`},
		{"64M", ""},
		{"8191P", ""},
	} {
		text := "[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/srv/a.img\"\nsize=\"" + tc.size + "\"\n"
		_, err := parseConfig([]byte(text), "host1", readSecretFile)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("size %q: %v, want no error", tc.size, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("size %q: %v, want %q", tc.size, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("size %q: %q is more than one line", tc.size, err)
		}
	}
}

// TestSamePathTwice: two LUNs of one config on one file are refused with
// both names.
func TestSamePathTwice(t *testing.T) {
	text := "[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/srv/x.img\"\n[[target.lun]]\nname=\"b\"\npath=\"/srv/./x.img\"\n"
	_, err := parseConfig([]byte(text), "host1", readSecretFile)
	if err == nil || !strings.Contains(err.Error(), "LUNs a and b both export /srv/./x.img") {
		t.Fatalf("parseConfig = %v, want both LUNs and the file named", err)
	}
}
