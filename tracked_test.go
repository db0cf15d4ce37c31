// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoTrackedBinaries fails when git tracks an ELF file. Build output
// (go build of internal/cmd/loopfs at the root, a stray test binary) is
// easy to commit by accident with git add -A and makes every clone
// carry megabytes nobody can review; .gitignore names the usual ones,
// this test catches the rest in CI and locally.
func TestNoTrackedBinaries(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		// A source tarball without .git has nothing tracked to check.
		t.Skipf("git ls-files: %v", err)
	}
	elf := []byte("\x7fELF")
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			// Deleted in the work tree but not yet in the index.
			continue
		}
		head := make([]byte, len(elf))
		n, _ := io.ReadFull(f, head)
		f.Close()
		if bytes.Equal(head[:n], elf) {
			t.Errorf("%s is an ELF binary tracked by git: git rm --cached it and add it to .gitignore", name)
		}
	}
}
