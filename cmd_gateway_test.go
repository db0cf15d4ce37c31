package main

import (
	"testing"

	"github.com/lunbridge/lunbridge/lease"
)

func TestParseMember(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want lease.Member
		ok   bool
	}{
		{"1", lease.Member{Group: 1, RelativePort: 1}, true},
		{"2:7", lease.Member{Group: 2, RelativePort: 7}, true},
		{"65535:65535", lease.Member{Group: 65535, RelativePort: 65535}, true},
		{"0", lease.Member{}, false},
		{"1:0", lease.Member{}, false},
		{"65536", lease.Member{}, false},
		{"a:1", lease.Member{}, false},
		{"1:", lease.Member{}, false},
		{"", lease.Member{}, false},
	} {
		got, err := parseMember(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseMember(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
