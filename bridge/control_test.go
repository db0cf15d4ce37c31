// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// TestParseControl is the one table of the control grammar: every accepted
// line with its canonical form, and every rejected one.
func TestParseControl(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string // canonical; "!": ErrInvalid
	}{
		// LUN verbs.
		{"online", "online"},
		{"offline", "offline"},
		{"offline\n", "offline"},
		{"flush", "flush"},
		{"reset-stats", "reset-stats"},
		{"read-only 1", "read-only 1"},
		{"read-only 0", "read-only 0"},
		{"resize 2G", "resize 2147483648"},
		{"resize 2147483648", "resize 2147483648"},
		{"resize 2GiB", "resize 2147483648"},
		{"failed", "!"},
		{"Offline", "!"},
		{"offline extra", "!"},
		{"read-only", "!"},
		{"read-only true", "!"},
		{"read-only 01", "!"},
		{"read-only 1 1", "!"},
		{"resize", "!"},
		{"resize 0", "!"},
		{"resize -2G", "!"},
		{"resize +2G", "!"},
		{"resize 2X", "!"},
		{"resize 2G 3G", "!"},
		{"resize 99999999999P", "!"},
		{"reset_stats", "!"},
		{"flush now", "!"},
		{"snapshot s1", "snapshot s1"},
		{"snapshot s1 rate=64M", "snapshot s1 rate=67108864"},
		{"snapshot a..b", "!"},
		{"snapshot ..", "!"},
		{"snapshot a/b", "!"},
		{"snapshot .s", "!"},
		{"snapshot a@b", "!"},
		{"snapshot", "!"},
		{"snapshot s1 rate=0", "!"},
		{"snapshot s1 speed=1M", "!"},
		{"snapshot s1 rate=1M rate=2M", "!"},
		{"delete-snapshot s1", "delete-snapshot s1"},
		{"delete-snapshot", "!"},
		{"delete-snapshot s1 s2", "!"},
		{"delete-snapshot ../s1", "!"},
		// Daemon verbs.
		{"remove d0", "remove d0"},
		{"remove", "!"},
		{"remove d0 d1", "!"},
		{"remove ..", "!"},
		{"remove .hidden", "!"},
		{"remove a/b", "!"},
		{"remove " + strings.Repeat("x", MaxNameLen+1), "!"},
		{"export d1 /img", "export d1 /img"},
		{"export luns /img", "export luns /img"}, // the view reserves its own names
		{"export d1 /pâth/ü", "export d1 /pâth/ü"},
		{"export d1 /img fabric=iscsi write-through=1 read-only=0 block-size=4096 size=1M",
			"export d1 /img size=1048576 block-size=4096 read-only=0 fabric=iscsi write-through=1"},
		{"export d1 /img size=10G", "export d1 /img size=10737418240"},
		{"export d1 /img fabric=none", "export d1 /img fabric=none"},
		{"export d1 /img fabric=loop block-size=512", "export d1 /img block-size=512 fabric=loop"},
		{"export d1 img", "!"}, // relative path
		{"export d1 ./img", "!"},
		{"export d1", "!"},
		{"export", "!"},
		{"export a/b /img", "!"},
		{"export -d1 /img", "!"},
		{"export d:1 /img", "!"},
		{"export d1 /img size=1G size=2G", "!"},
		{"export d1 /img size", "!"},
		{"export d1 /img size=", "!"},
		{"export d1 /img size=0", "!"},
		{"export d1 /img =1", "!"},
		{"export d1 /img colour=red", "!"},
		{"export d1 /img block-size=1024", "!"},
		{"export d1 /img block-size=0512", "!"},
		{"export d1 /img fabric=nvme", "!"},
		{"export d1 /img read-only=yes", "!"},
		{"export d1 /img write-through=2", "!"},
		{"add d1 /img", "!"},
		{"EXPORT d1 /img", "!"},
		// Lexical rules.
		{"", "!"},
		{"\n", "!"},
		{"offline\n\n", "!"},
		{"online\noffline\n", "!"},
		{"offline\r\n", "!"},
		{"off\tline", "!"},
		{" offline", "!"},
		{"offline ", "!"},
		{"export  d1 /img", "!"},
		{"a\x00b", "!"},
		{"a\x7fb", "!"},
		{"\xff\xfe", "!"},
		{"export d1 /" + strings.Repeat("x", MaxControlLine), "!"},
	} {
		c, err := ParseControl(tc.line)
		if tc.want == "!" {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseControl(%q) = %q, %v, want ErrInvalid", tc.line, c, err)
			}
			continue
		}
		if err != nil || c.String() != tc.want {
			t.Errorf("ParseControl(%q) = %q, %v, want %q", tc.line, c, err, tc.want)
		}
	}
}

// FuzzControlLine: any input is rejected with ErrInvalid or parses to a
// command whose canonical line parses back to the same command.
func FuzzControlLine(f *testing.F) {
	for _, s := range []string{
		"online", "read-only 1", "resize 2G", "remove d0", "export d1 /img size=1M fabric=iscsi",
		"export d1 /img block-size=4096 read-only=0 write-through=1", "offline\n", "a\x00b",
		"snapshot s1 rate=1M", "delete-snapshot s1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseControl(line)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseControl(%q) = %v, want ErrInvalid", line, err)
			}
			return
		}
		if !utf8.ValidString(line) || len(line) > MaxControlLine+1 {
			t.Fatalf("ParseControl(%q) accepted a line the grammar refuses", line)
		}
		canon := c.String()
		c2, err := ParseControl(canon)
		if err != nil || c2 != c {
			t.Fatalf("ParseControl(%q) = %+v; its canonical %q parses to %+v, %v", line, c, canon, c2, err)
		}
		snap := c.Op == OpSnapshot || c.Op == OpDeleteSnapshot
		if c.Op != OpExport && c.Op != OpRemove && !snap && c.Name != "" {
			t.Fatalf("ParseControl(%q): LUN verb %s with a name", line, c.Op)
		}
		if snap && ValidSnapshotName(c.Name) != nil {
			t.Fatalf("ParseControl(%q): invalid snapshot name %q accepted", line, c.Name)
		}
		if (c.Op == OpExport || c.Op == OpRemove) && ValidName(c.Name) != nil {
			t.Fatalf("ParseControl(%q): invalid name %q accepted", line, c.Name)
		}
	})
}

// A storm of failing commands is logged at Debug per command and at Warn
// once per failReportEvery, with the count.
func TestFailureLogRateLimit(t *testing.T) {
	var buf strings.Builder
	l := &LUN{name: "d0", log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	s := &server{l: l, ctx: t.Context()}
	cdb := []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	for range 100 {
		s.logFailure(slog.LevelWarn, "backing store I/O error", cdb, syscall.EIO)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 || !strings.Contains(buf.String(), "failed=1 ") {
		t.Fatalf("100 failures logged %d lines at Info and above, want 1 (the first):\n%s", n, buf.String())
	}
	buf.Reset()
	s.fails.mu.Lock()
	s.fails.next = time.Now() // the interval is over
	s.fails.mu.Unlock()
	s.logFailure(slog.LevelWarn, "backing store I/O error", cdb, syscall.EIO)
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "failed=100 ") {
		t.Errorf("report after the interval = %q, want a Warn counting the 99 unreported failures and this one", buf.String())
	}
}
