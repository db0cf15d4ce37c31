// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"testing"
)

func TestParseMember(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Member
		ok   bool
	}{
		{"1", Member{Group: 1, RelativePort: 1}, true},
		{"2:7", Member{Group: 2, RelativePort: 7}, true},
		{"65535:65535", Member{Group: 65535, RelativePort: 65535}, true},
		{"0", Member{}, false},
		{"1:0", Member{}, false},
		{"65536", Member{}, false},
		{"a:1", Member{}, false},
		{"1:", Member{}, false},
		{"", Member{}, false},
	} {
		got, err := ParseMember(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMember(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
