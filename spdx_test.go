// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The SPDX lines lunbridge's sources carry (the license is LICENSE).
const (
	spdxGo    = "// SPDX-License-Identifier: Apache-2.0"
	spdxShell = "# SPDX-License-Identifier: Apache-2.0"
)

// shellShebang matches the #! line of a shell script: #!/bin/sh,
// #!/bin/bash -e, #!/usr/bin/env bash (a script such as .ci/run has no
// .sh suffix).
var shellShebang = regexp.MustCompile(`^#!\s*(?:/\S*/)?(?:env\s+)?(?:ba|da|k|z)?sh(?:\s|$)`)

// spdxLine is the SPDX line a file must carry, from its name and first
// line, or "" for a file that is neither Go nor shell.
func spdxLine(name, first string) string {
	switch {
	case strings.HasSuffix(name, ".go"):
		return spdxGo
	case strings.HasSuffix(name, ".sh"), shellShebang.MatchString(first):
		return spdxShell
	}
	return ""
}

func TestSPDXLine(t *testing.T) {
	for _, tc := range []struct{ name, first, want string }{
		{"main.go", "package main", spdxGo},
		{"tcmu/ring_unsafe.go", "//go:build linux", spdxGo},
		{"integration/testdata/lib.sh", "# lib.sh: shell functions", spdxShell},
		{".ci/run", "#!/usr/bin/env bash", spdxShell},
		{"tool", "#!/bin/sh", spdxShell},
		{"tool", "#! /bin/bash -e", spdxShell},
		{"tool", "#!/usr/bin/env python3", ""},
		{"tool", "#!/usr/bin/perl", ""},
		{"tool", "#!/bin/shfmt", ""},
		{"README.md", "# lunbridge", ""},
		{"loopfs", "\x7fELF\x02\x01\x01", ""},
	} {
		if got := spdxLine(tc.name, tc.first); got != tc.want {
			t.Errorf("spdxLine(%q, %q) = %q, want %q", tc.name, tc.first, got, tc.want)
		}
	}
}

// TestSPDXHeaders checks that every Go and shell source file of the
// repository (tracked or new, as git lists them; a walk of the tree
// without git) has its SPDX line within its first three lines, so a new
// file cannot miss it. The failure names every such file.
func TestSPDXHeaders(t *testing.T) {
	files := repoFiles(t)
	var missing []string
	checked := 0
	for _, name := range files {
		fi, err := os.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			t.Logf("%s: listed by git but deleted in the work tree; not checked", name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			t.Logf("%s: not a regular file (%v); not checked", name, fi.Mode().Type())
			continue
		}
		lines, err := firstLines(name, 3)
		if err != nil {
			t.Fatal(err)
		}
		first := ""
		if len(lines) > 0 {
			first = lines[0]
		}
		want := spdxLine(name, first)
		if want == "" {
			continue
		}
		checked++
		found := false
		for _, l := range lines {
			found = found || strings.TrimRight(l, "\r") == want
		}
		if !found {
			missing = append(missing, name)
		}
	}
	t.Logf("checked %d Go and shell files", checked)
	if checked == 0 {
		t.Fatalf("found no Go or shell file among %d files", len(files))
	}
	if len(missing) > 0 {
		t.Errorf("%d files lack %q (Go) or %q (shell, after the #! line) in their first 3 lines:\n%s",
			len(missing), spdxGo, spdxShell, strings.Join(missing, "\n"))
	}
}

// repoFiles lists the repository's files, relative to its root (the
// root package's directory): git's tracked and untracked-but-not-ignored
// files, or, without git or a git checkout (a source tarball), a walk of
// the tree that says in the log what it leaves out.
func repoFiles(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err == nil {
		t.Logf("files from git ls-files")
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" {
				files = append(files, f)
			}
		}
		sort.Strings(files)
		return files
	}
	t.Logf("git ls-files: %v; walking the tree instead", err)
	// Git's data and the top-level directories .gitignore ignores
	// ("/.cache/": downloaded tools and kernels, "/dist/": packages).
	skip := map[string]bool{".git": true}
	if ignore, err := os.ReadFile(".gitignore"); err == nil {
		for _, l := range strings.Split(string(ignore), "\n") {
			if strings.HasPrefix(l, "/") && strings.HasSuffix(l, "/") && len(l) > 2 {
				skip[strings.Trim(l, "/")] = true
			}
		}
	}
	var files []string
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip[path] {
			t.Logf("walk: not checking %s/ (.gitignore)", path)
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// firstLines returns up to n lines from the start of a file (reading at
// most 4 KiB, since binaries have no short lines).
func firstLines(name string, n int) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 4096)
	var lines []string
	for len(lines) < n && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return nil, err
	}
	return lines, nil
}
