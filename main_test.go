package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestImportBoundaries enforces the package edges of STYLE.md §1: main ->
// {fusefs, bridge, fabric, metrics}, fusefs -> bridge -> {tcmu, scsi},
// metrics -> bridge (value types) and client_golang, tcmuservice ->
// godbus only (main wires it to the daemon), lease -> scsi (it is a
// scsi.ALUA provider) and x/sys/unix; tcmu never
// imports scsi, scsi imports the standard library only, fusefs never
// imports tcmu, and unsafe only in *_unsafe.go files.
func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	const mod = "github.com/lunbridge/lunbridge"
	allowed := map[string][]string{
		mod + "/tcmu":   {"golang.org/x/sys/unix"},
		mod + "/scsi":   {},
		mod + "/fabric": {"golang.org/x/sys/unix"},
		mod + "/bridge": {mod + "/tcmu", mod + "/scsi", "golang.org/x/sys/unix"},
		mod + "/fusefs": {mod + "/bridge", "github.com/hanwen/go-fuse/v2/fs", "github.com/hanwen/go-fuse/v2/fuse", "golang.org/x/sys/unix"},
		mod + "/metrics": {mod + "/bridge", "github.com/prometheus/client_golang/prometheus",
			"github.com/prometheus/client_golang/prometheus/collectors",
			"github.com/prometheus/client_golang/prometheus/promhttp"},
		mod + "/tcmuservice": {"github.com/godbus/dbus/v5", "github.com/godbus/dbus/v5/introspect",
			"github.com/godbus/dbus/v5/prop"},
		mod + "/lease":             {mod + "/scsi", "golang.org/x/sys/unix"},
		mod + "/internal/fakering": {},
		mod + "/internal/memdisk":  {},
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
			GoFiles    []string
			Dir        string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for _, f := range p.GoFiles {
			if strings.HasSuffix(f, "_unsafe.go") {
				continue
			}
			src, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(src), "\"unsafe\"") {
				t.Errorf("%s/%s imports unsafe outside a *_unsafe.go file", p.ImportPath, f)
			}
		}
		allow, ok := allowed[p.ImportPath]
		if !ok {
			continue
		}
		seen++
		for _, imp := range p.Imports {
			std := !strings.Contains(strings.Split(imp, "/")[0], ".")
			if imp == "unsafe" || (std && imp != "C") || slices.Contains(allow, imp) {
				continue
			}
			t.Errorf("%s imports %s; allowed besides the standard library: %v", p.ImportPath, imp, allow)
		}
	}
	if seen != len(allowed) {
		t.Errorf("checked %d of the %d packages with rules: a package was renamed?", seen, len(allowed))
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "chap")
	if err := os.WriteFile(secret, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := `
mount = ""
cmd_timeout = "10s"
max_transfer = "1M"
metrics = "127.0.0.1:9573"
[[target]]
fabric = "iscsi"
iqn = "iqn.2026-11.org.example:t"
chap_user = "u"
chap_password_file = "` + secret + `"
  [[target.lun]]
  name = "a"
  path = "/srv/a.img"
  size = "1G"
  block_size = 4096
[[target]]
  [[target.lun]]
  name = "b"
  path = "/srv/b.img"
`
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"good", good, ""},
		{"unknown key", "colour = 1\n", "unknown key"},
		{"duplicate LUN", "[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\n[[target.lun]]\nname=\"a\"\npath=\"/b\"\n", "two LUNs"},
		{"no path", "[[target]]\n[[target.lun]]\nname=\"a\"\n", "no path"},
		{"bad name", "[[target]]\n[[target.lun]]\nname=\"a/b\"\npath=\"/a\"\n", "only letters"},
		{"bad size", "[[target]]\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\nsize=\"ten\"\n", "size"},
		{"bad fabric", "[[target]]\nfabric=\"fc\"\n", "fabric"},
		{"loop with iqn", "[[target]]\nfabric=\"loop\"\niqn=\"iqn.2026-11.org.example:x\"\n", "need --fabric iscsi"},
		{"any initiator and a list", "[[target]]\nfabric=\"iscsi\"\ninsecure_allow_any_initiator=true\ninitiators=[\"iqn.2026-11.org.example:h\"]\n", "drop it or the --initiator list"},
		{"mutual without one-way", "[[target]]\nfabric=\"iscsi\"\nchap_mutual_user=\"t\"\nchap_mutual_password_file=\"` + secret + `\"\n", "one-way CHAP too"},
		{"bad max_transfer", "max_transfer = \"1000\"\n", "max_transfer"},
		{"bad duration", "cmd_timeout = \"soon\"\n", "cmd_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			fc, luns, maxTransfer, err := loadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadConfig = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fc.Mount != "" || fc.CmdTimeout.Duration != 10*time.Second || maxTransfer != 1<<20 || fc.Metrics != "127.0.0.1:9573" {
				t.Errorf("config = %+v, max transfer %d", fc, maxTransfer)
			}
			if len(luns) != 2 {
				t.Fatalf("luns = %+v, want 2", luns)
			}
			a, b := luns[0], luns[1]
			if a.Name != "a" || a.Size != 1<<30 || a.BlockSize != 4096 || a.Spec.Fabric != "iscsi" ||
				a.Spec.CHAPPassword != "0123456789abcdef" || a.Spec.Portal != "0.0.0.0:3260" || a.MaxTransfer != 1<<20 {
				t.Errorf("LUN a = %+v", a)
			}
			if b.Name != "b" || b.Spec.Fabric != "loop" || b.Size != 0 {
				t.Errorf("LUN b = %+v", b)
			}
		})
	}
}

func TestExportSpec(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort"), 0o600)
	for _, tc := range []struct {
		name                   string
		fab, iqn, user, secret string
		initiators             []string
		wantErr                string
	}{
		{"loop", "loop", "", "", "", nil, ""},
		{"iscsi, no initiator", "iscsi", "", "", "", nil, ""},
		{"bad fabric", "fc", "", "", "", nil, "want loop, iscsi or none"},
		{"iqn on loop", "loop", "iqn.2026-11.org.example:x", "", "", nil, "need --fabric iscsi"},
		{"initiator on loop", "loop", "", "", "", []string{"iqn.x"}, "need --fabric iscsi"},
		{"user without secret", "iscsi", "", "u", "", nil, "go together"},
		{"short secret", "iscsi", "", "u", short, nil, "12 to 255"},
		{"missing secret file", "iscsi", "", "u", filepath.Join(dir, "none"), nil, "chap-password-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exportSpec(tc.fab, tc.iqn, "0.0.0.0:3260", tc.initiators, tc.user, tc.secret)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("exportSpec = %v, want error %q", err, tc.wantErr)
			}
		})
	}
}

func TestNameFromPath(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/disk0.img":                  "disk0",
		"/srv/vm disk.raw":                "vm_disk",
		"relative/.hidden":                "hidden",
		"/srv/-x.img":                     "x",
		"/srv/ünïcode.img":                "__n__code",
		"/srv/a.b.c":                      "a.b",
		"/srv/" + strings.Repeat("x", 80): strings.Repeat("x", 64),
	} {
		if got := nameFromPath(in); got != want {
			t.Errorf("nameFromPath(%q) = %q, want %q", in, got, want)
		}
	}
}
