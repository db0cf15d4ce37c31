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
// checks its control fields and contents on the host, then installs it in
// the guest with dpkg (into an empty root, through hostrun) and runs the
// installed lunbridge: --version, one export (with --metrics) written and
// read back through /dev/sdX and its /metrics, then dpkg -r.
func TestDebianPackage(t *testing.T) {
	vmtest.RequireTools(t, "dpkg-deb", "dpkg", "man")
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

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
