// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// fakeView lays out the files of a view with LUN d0 and its snapshot s1:
// the CLI only reads and writes files, so a directory stands in for the
// FUSE mount.
func fakeView(t *testing.T) string {
	t.Helper()
	mnt := t.TempDir()
	files := map[string]string{
		"version":                  "test\n",
		"d0/ctl":                   "",
		"d0/snapshots/s1/state":    "ready\n",
		"d0/snapshots/s1/method":   "copy\n",
		"d0/snapshots/s1/progress": "4096 / 4096\n",
		"d0/snapshots/s1/pause_us": "17\n",
		"d0/snapshots/s1/created":  "2026-01-02T03:04:05Z\n",
		"d0/snapshots/s1/path":     "/srv/d0.img@s1\n",
		"d0/snapshots/s2/state":    "failed: interrupted\n",
		"d0/snapshots/s2/method":   "copy\n",
		"d0/snapshots/s2/progress": "0 / 4096\n",
		"d0/snapshots/s2/pause_us": "5\n",
		"d0/snapshots/s2/created":  "2026-01-02T03:04:06Z\n",
		"d0/snapshots/s2/path":     "/srv/d0.img@s2\n",
	}
	for p, s := range files {
		p = filepath.Join(mnt, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return mnt
}

func TestSnapshotCommand(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		ctl      string // what ctl holds after
		out      []string
		exitCode int
	}{
		{args: []string{"d0", "s1"}, ctl: "snapshot s1\n", out: []string{"/srv/d0.img@s1: ready copy, pause 17 µs"}},
		{args: []string{"--rate", "64M", "d0", "s1"}, ctl: "snapshot s1 rate=67108864\n"},
		{args: []string{"--delete", "d0", "s1"}, ctl: "delete-snapshot s1\n"},
		{args: []string{"--list", "d0"}, out: []string{"s1    ready    ", "s2    failed: interrupted  copy", "PAUSE µs"}},
		{args: []string{"--list", "--json", "d0"}, out: []string{`"state": "failed: interrupted"`}},
		{args: []string{"--rate", "0", "d0", "s1"}, exitCode: exitUsage},
		{args: []string{"d0", "a/b"}, exitCode: exitUsage},
		{args: []string{"d0"}, exitCode: exitUsage},
		{args: []string{"--list", "d0", "s1"}, exitCode: exitUsage},
		{args: []string{"nope", "s1"}, exitCode: exitFailure},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			mnt := fakeView(t)
			var out bytes.Buffer
			app := newApp(&out, &out)
			err := app.Run(append([]string{"lunbridge", "snapshot", "--mount", mnt}, tc.args...))
			var ec cli.ExitCoder
			code := 0
			if errors.As(err, &ec) {
				code = ec.ExitCode()
			} else if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if code != tc.exitCode {
				t.Fatalf("exit code = %d (%v), want %d; output:\n%s", code, err, tc.exitCode, out.String())
			}
			b, _ := os.ReadFile(filepath.Join(mnt, "d0/ctl"))
			if string(b) != tc.ctl {
				t.Errorf("ctl = %q, want %q", b, tc.ctl)
			}
			for _, w := range tc.out {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
