// SPDX-License-Identifier: Apache-2.0

package vmtest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// apt-cache depends output as Debian 12 prints it (bookworm and
// bookworm-security, 2026-12).
const (
	depends61 = `linux-image-amd64
  Depends: linux-image-6.1.0-57-amd64
`
	depends612 = `linux-image-6.12-amd64
  Depends: linux-image-6.12.118+deb12-amd64
`
)

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		line, out string
		want      string // "" means ErrMissingAsset
	}{
		{"6.1", depends61, "linux-image-6.1.0-57-amd64"},
		{"6.12", depends612, "linux-image-6.12.118+deb12-amd64-unsigned"},
		// A metapackage of the other line must not be taken for this one.
		{"6.1", depends612, ""},
		{"6.12", depends61, ""},
		{"6.12", "linux-image-6.12-amd64\n", ""},
	}
	for _, tt := range tests {
		got, err := parseKernelDepends(kernelLines[tt.line], []byte(tt.out))
		if tt.want == "" {
			if !errors.Is(err, ErrMissingAsset) {
				t.Errorf("parseKernelDepends(%s, %q) = %q, %v, want ErrMissingAsset", tt.line, tt.out, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseKernelDepends(%s, %q) = %q, %v, want %q", tt.line, tt.out, got, err, tt.want)
		}
	}
}

// TestKernelLineGlobs checks that the offline fallback of one line never
// picks the other line's cached package.
func TestKernelLineGlobs(t *testing.T) {
	debs := map[string]string{
		"6.1":  "linux-image-6.1.0-57-amd64_6.1.192-3_amd64.deb",
		"6.12": "linux-image-6.12.118+deb12-amd64-unsigned_6.12.118-1~deb12u1_amd64.deb",
	}
	for line, l := range kernelLines {
		for debLine, deb := range debs {
			ok, err := filepath.Match(l.glob, deb)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (line == debLine) {
				t.Errorf("line %s glob %q matches %s = %v, want %v", line, l.glob, deb, ok, line == debLine)
			}
		}
	}
}

func TestSelectedKernelLine(t *testing.T) {
	for _, tt := range []struct{ env, want string }{{"", "6.1"}, {"6.1", "6.1"}, {"6.12", "6.12"}, {"5.10", ""}} {
		t.Setenv(KernelEnv, tt.env)
		l, err := selectedKernelLine()
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s=%q: got line %q, want an error", KernelEnv, tt.env, l.name)
			}
			continue
		}
		if err != nil || l.name != tt.want {
			t.Errorf("%s=%q: got %q, %v, want %q", KernelEnv, tt.env, l.name, err, tt.want)
		}
	}
}

// TestReadModuleXZ: 6.12's modules are .ko.xz; the initramfs gets them
// decompressed under the plain .ko name.
func TestReadModuleXZ(t *testing.T) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		t.Skip("no xz on this machine")
	}
	dir := t.TempDir()
	want := []byte("\x7fELF a module, or so it says\n")
	if err := os.MkdirAll(filepath.Join(dir, "kernel", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "kernel", "fs", "configfs.ko")
	if err := os.WriteFile(plain, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(xz, "-k", plain).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v\n%s", err, out)
	}
	for _, rel := range []string{"kernel/fs/configfs.ko", "kernel/fs/configfs.ko.xz"} {
		name, data, err := readModule(dir, rel)
		if err != nil || name != "kernel/fs/configfs.ko" || !bytes.Equal(data, want) {
			t.Errorf("readModule(%s) = %q, %q, %v, want kernel/fs/configfs.ko, %q", rel, name, data, err, want)
		}
	}
	if _, _, err := readModule(dir, "kernel/fs/missing.ko.xz"); err == nil {
		t.Error("readModule of a missing .ko.xz: no error")
	}
}
