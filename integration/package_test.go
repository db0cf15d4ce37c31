// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/integration/vmtest"
)

// TestDebianPackage builds the .deb with scripts/package.sh (one command),
// checks its control fields and contents on the host (lintian reports no
// error or warning; the copyright file names every module that "go
// version -m" finds in the packaged binary), then installs it in
// the guest with dpkg (into an empty root, through hostrun) and runs the
// installed lunbridge: --version, one export (with --metrics) written and
// read back through /dev/sdX and its /metrics, then dpkg -r.
func TestDebianPackage(t *testing.T) {
	vmtest.RequireTools(t, "dpkg-deb", "dpkg", "man", "lintian")
	root, err := vmtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "scripts/package.sh", out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "VERSION=1.2.3~test")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/package.sh: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	if base := filepath.Base(deb); !strings.HasPrefix(base, "lunbridge_1.2.3~test_") || !strings.HasSuffix(base, ".deb") {
		t.Fatalf("scripts/package.sh printed %q", deb)
	}
	for field, want := range map[string]string{"Package": "lunbridge", "Version": "1.2.3~test", "Section": "admin"} {
		got, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("dpkg-deb -f %s = %q, %v; want %q", field, got, err, want)
		}
	}

	checkLintian(t, deb)
	checkCopyright(t, deb, "1.2.3~test")

	res := vmtest.Run(t, vmtest.Options{
		Files:  map[string]string{"lunbridge.deb": deb},
		Script: lunbridgeLib + scenario("package_install"),
	})
	share := res.ShareDir
	for file, wants := range map[string][]string{
		"version.txt": {"lunbridge version 1.2.3~test"},
		"status.txt":  {"Status: install ok installed", "Version: 1.2.3~test"},
		"files.txt": {
			"/usr/sbin/lunbridge", "/lib/systemd/system/lunbridge.service",
			"/usr/share/man/man8/lunbridge.8.gz", "/usr/share/bash-completion/completions/lunbridge",
			"/usr/share/fish/vendor_completions.d/lunbridge.fish",
			"/usr/share/dbus-1/system.d/org.kernel.TCMUService1.conf",
			"/usr/share/doc/lunbridge/examples/lunbridge.toml", "/usr/share/doc/lunbridge/examples/alerts.yml",
			"/usr/share/doc/lunbridge/copyright", "/usr/share/doc/lunbridge/changelog.gz",
			"/usr/share/lintian/overrides/lunbridge",
		},
		"man.txt":  {"export files as SCSI LUNs", "--metrics"},
		"done.txt": {"package-ok"},
		"metrics.txt": {
			`lunbridge_bytes_total{kind="write",lun="pkgdisk"} 8.388608e+06`,
			`lunbridge_build_info{version="1.2.3~test"} 1`,
		},
	} {
		got := string(readFile(t, filepath.Join(share, file)))
		for _, want := range wants {
			if !strings.Contains(got, want) {
				t.Errorf("guest %s lacks %q:\n%s", file, want, got)
			}
		}
	}
}

// checkLintian runs Debian's package checker on the .deb: no error and no
// warning may be left, except those overridden in the package's
// /usr/share/lintian/overrides/lunbridge (packaging/lintian-overrides,
// each with its reason). Info tags are shown too, so the log says what
// lintian noticed.
func checkLintian(t *testing.T, deb string) {
	t.Helper()
	cmd := exec.Command("lintian", "--fail-on", "error,warning", "--display-info", deb)
	out, err := cmd.CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
}

// checkCopyright unpacks the .deb and checks its DEP-5 copyright file
// against the packaged binary's own module list, as "go version -m"
// prints it (a second reading of the build info, independent of the
// generator's), and its changelog against the version.
func checkCopyright(t *testing.T, deb, version string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	copyright := string(readFile(t, filepath.Join(dir, "usr/share/doc/lunbridge/copyright")))
	if !strings.HasPrefix(copyright, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n") {
		t.Errorf("copyright is not DEP-5:\n%.300s", copyright)
	}
	// Files paragraph -> its License field's first line.
	licenses := map[string]string{}
	for _, para := range strings.Split(copyright, "\n\n") {
		var files, lic string
		for _, line := range strings.Split(para, "\n") {
			if v, ok := strings.CutPrefix(line, "Files: "); ok {
				files = v
			}
			if v, ok := strings.CutPrefix(line, "License: "); ok {
				lic = v
			}
		}
		if files != "" {
			licenses[files] = lic
		}
	}
	if licenses["*"] != "Apache-2.0" {
		t.Errorf("copyright: Files: * has License %q, want Apache-2.0", licenses["*"])
	}
	if licenses["go/src/*"] == "" {
		t.Errorf("copyright: no paragraph for the Go standard library (go/src/*)")
	}
	if !strings.Contains(copyright, "/usr/share/common-licenses/Apache-2.0") {
		t.Errorf("copyright does not point at /usr/share/common-licenses/Apache-2.0")
	}
	out, err := exec.Command("go", "version", "-m", filepath.Join(dir, "usr/sbin/lunbridge")).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	deps := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "dep" {
			continue
		}
		deps++
		if lic := licenses[f[1]+"/*"]; lic == "" {
			t.Errorf("copyright: module %s %s (go version -m) has no Files paragraph with a License", f[1], f[2])
		}
	}
	if deps == 0 {
		t.Errorf("go version -m lists no dep of the packaged binary:\n%s", out)
	}
	if got, want := len(licenses), deps+2; got != want {
		t.Errorf("copyright has %d Files paragraphs, want %d (lunbridge, Go, %d modules): %v", got, want, deps, licenses)
	}

	zc, err := exec.Command("zcat", filepath.Join(dir, "usr/share/doc/lunbridge/changelog.gz")).Output()
	if err != nil {
		t.Fatalf("zcat changelog.gz: %v", err)
	}
	if want := "lunbridge (" + version + ") "; !strings.HasPrefix(string(zc), want) {
		t.Errorf("changelog.gz starts %q, want %q", strings.SplitN(string(zc), "\n", 2)[0], want)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
