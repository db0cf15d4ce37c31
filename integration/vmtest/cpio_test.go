// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bytes"
	"strconv"
	"testing"
)

// cpioEntry is one parsed newc entry.
type cpioEntry struct {
	name string
	mode uint32
	data string
}

// parseNewc is an independent reader of the newc format, written from the
// kernel's buffer-format.rst: "070701", 13 fields of 8 hex digits, the name
// (namesize includes the NUL), padding to 4, the data, padding to 4.
func parseNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("magic at %d = %q", off, h[:6])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		nameStart := off + 110
		name := string(b[nameStart : nameStart+namesize-1])
		if b[nameStart+namesize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataStart := (nameStart + namesize + 3) &^ 3
		data := string(b[dataStart : dataStart+size])
		off = (dataStart + size + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name, uint32(mode), data})
	}
}

func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	w.file("a/b/c.txt", 0o644, []byte("hello"))
	w.symlink("bin/sh", "busybox")
	w.file("a/d", 0o755, []byte("1234"))
	w.mkdirAll("a/b") // already there: no second entry
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	got := parseNewc(t, buf.Bytes())
	want := []cpioEntry{
		{"a", cpioModeDir | 0o755, ""},
		{"a/b", cpioModeDir | 0o755, ""},
		{"a/b/c.txt", cpioModeFile | 0o644, "hello"},
		{"bin", cpioModeDir | 0o755, ""},
		{"bin/sh", cpioModeLink | 0o777, "busybox"},
		{"a/d", cpioModeFile | 0o755, "1234"},
	}
	if len(got) != len(want) {
		t.Fatalf("entries = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCleanLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain\r", "plain"},
		{"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)", "SeaBIOS (version 1.16)"},
		{"[    6.0] reboot: Power down", "[    6.0] reboot: Power down"},
	} {
		if got := cleanLine(tt.in); got != tt.want {
			t.Errorf("cleanLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
