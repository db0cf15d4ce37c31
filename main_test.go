// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/lunbridge/lunbridge/lio"
)

// TestImportBoundaries enforces the package edges of CONTRIBUTING.md on
// every package of the module, the root included: main -> {fusefs,
// bridge, lio, metrics, targetcli}, lio -> {fabric, tcmu, bridge, lease},
// targetcli -> {bridge, tcmu, tcmuservice}, fusefs -> bridge -> {tcmu,
// scsi, lease}; tcmu and fabric reach configfs only through internal/configfs;
// tcmu never imports scsi, scsi imports the standard library only, fusefs
// never imports tcmu. A package with no rule fails the test, so a new
// package must be placed in the table, and the table in CONTRIBUTING.md
// must equal importRules, so the document cannot drift from the rule. It
// also checks that unsafe is imported only in *_unsafe.go files, and that
// only package main exits, reads flags or the environment, or sets the
// default logger.
func TestImportBoundaries(t *testing.T) {
	allowed := importRules()
	doc, err := contributingImportTable("CONTRIBUTING.md")
	if err != nil {
		t.Fatal(err)
	}
	checkImportTable(t, allowed, doc)
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Name       string
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
			// Only package main exits, reads flags or the environment,
			// or sets the default logger (CONTRIBUTING.md).
			if p.Name == "main" || strings.HasPrefix(p.ImportPath, importModule+"/integration") {
				continue
			}
			for _, call := range []string{"os.Exit(", "os.Getenv(", "os.LookupEnv(", "os.Environ(", "slog.SetDefault(", "\"flag\""} {
				if strings.Contains(string(src), call) {
					t.Errorf("%s/%s uses %s: only package main may", p.ImportPath, f, strings.Trim(call, "(\""))
				}
			}
		}
		allow, ok := allowed[p.ImportPath]
		if !ok {
			t.Errorf("package %s has no rule in TestImportBoundaries: add it to importRules and to CONTRIBUTING.md's table", p.ImportPath)
			continue
		}
		seen++
		if slices.Equal(allow, anyImport) {
			continue
		}
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

// importModule is the module path; importRules and CONTRIBUTING.md's
// table name its packages relative to it.
const importModule = "github.com/lunbridge/lunbridge"

// anyImport is the rule of a package that may import anything.
var anyImport = []string{"*"}

// importRules returns, for each package of the module, what it may import
// besides the standard library. CONTRIBUTING.md shows the same table.
func importRules() map[string][]string {
	const mod = importModule
	const (
		unix     = "golang.org/x/sys/unix"
		configfs = mod + "/internal/configfs"
		fuseFS   = "github.com/hanwen/go-fuse/v2/fs"
		fuse     = "github.com/hanwen/go-fuse/v2/fuse"
	)
	return map[string][]string{
		mod: {mod + "/fusefs", mod + "/bridge", mod + "/lio", mod + "/metrics", mod + "/targetcli",
			"github.com/urfave/cli/v2", "github.com/BurntSushi/toml", "github.com/schollz/progressbar/v3",
			"golang.org/x/term", "golang.org/x/sync/errgroup"},
		mod + "/lease": {mod + "/scsi", unix},
		mod + "/metrics": {mod + "/bridge", "github.com/prometheus/client_golang/prometheus",
			"github.com/prometheus/client_golang/prometheus/collectors",
			"github.com/prometheus/client_golang/prometheus/promhttp"},
		mod + "/tcmuservice": {"github.com/godbus/dbus/v5", "github.com/godbus/dbus/v5/introspect",
			"github.com/godbus/dbus/v5/prop"},
		// lio also owns the gateway leases of a scale-out group
		// (gateway.go: lease decides ALUA ownership).
		mod + "/lio": {mod + "/fabric", mod + "/tcmu", mod + "/bridge", configfs, mod + "/lease"},
		// targetcli serves the backstores targetcli makes; tcmuservice
		// answers targetcli's D-Bus questions.
		mod + "/targetcli": {mod + "/bridge", mod + "/tcmu", mod + "/tcmuservice"},
		mod + "/fusefs":    {mod + "/bridge", fuseFS, fuse, unix},
		// bridge opens the backing file and holds its ownership lock
		// for the LUN's lifetime (lease.Claim): the lock lives in lease
		// so that plain exports and gateway leases use one mechanism
		// and refuse each other; large buffered writes go through
		// internal/uring.
		mod + "/bridge":              {mod + "/tcmu", mod + "/scsi", mod + "/lease", mod + "/internal/uring", unix},
		mod + "/tcmu":                {unix, configfs},
		mod + "/scsi":                {},
		mod + "/fabric":              {unix, configfs},
		mod + "/internal/configfs":   {},
		mod + "/internal/fakering":   {},
		mod + "/internal/memdisk":    {},
		mod + "/internal/uring":      {unix},
		mod + "/internal/cmd/loopfs": {fuseFS, fuse},
		// The packaging tool (scripts/package.sh): std only.
		mod + "/internal/cmd/debcopyright": {},
		// The copy benchmark the real-kernel guest runs (TestBenchCopy).
		mod + "/internal/cmd/copycost": {unix},
		mod + "/integration":           anyImport,
		mod + "/integration/blocktest": anyImport,
		mod + "/integration/vmtest":    anyImport,
	}
}

// contributingImportTable reads the import table of CONTRIBUTING.md: the
// rows between the "import table" and "end import table" comments. The
// first cell's first `code` span is the package path relative to the
// module ("." is the root); every `code` span of the last cell is one
// allowed import: a module package relative to the module, another in
// full (its first element has a dot), or "*" for anything.
func contributingImportTable(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := string(b)
	_, rest, ok := strings.Cut(text, "<!-- import table:")
	if !ok {
		return nil, fmt.Errorf("%s: no <!-- import table: ... --> comment", path)
	}
	rest, _, ok = strings.Cut(rest, "<!-- end import table -->")
	if !ok {
		return nil, fmt.Errorf("%s: no <!-- end import table --> comment", path)
	}
	spans := func(cell string) []string {
		var out []string
		for i, part := range strings.Split(cell, "`") {
			if i%2 == 1 {
				out = append(out, part)
			}
		}
		return out
	}
	table := map[string][]string{}
	for _, line := range strings.Split(rest, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| package ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			return nil, fmt.Errorf("%s: import table row %q has too few cells", path, line)
		}
		name := spans(cells[0])
		if len(name) == 0 {
			return nil, fmt.Errorf("%s: import table row %q names no package in `code`", path, line)
		}
		pkg := importModule
		if name[0] != "." {
			pkg += "/" + name[0]
		}
		if _, dup := table[pkg]; dup {
			return nil, fmt.Errorf("%s: import table has %s twice", path, name[0])
		}
		imports := []string{}
		for _, imp := range spans(cells[len(cells)-1]) {
			switch {
			case imp == "*":
			case strings.Contains(strings.Split(imp, "/")[0], "."):
			default:
				imp = importModule + "/" + imp
			}
			imports = append(imports, imp)
		}
		table[pkg] = imports
	}
	return table, nil
}

// checkImportTable reports every difference between the rules and the
// documented table, as sets.
func checkImportTable(t *testing.T, rules, doc map[string][]string) {
	t.Helper()
	for _, pkg := range slices.Sorted(maps.Keys(rules)) {
		got, ok := doc[pkg]
		if !ok {
			t.Errorf("CONTRIBUTING.md's import table has no row for %s", pkg)
			continue
		}
		want := slices.Sorted(slices.Values(rules[pkg]))
		got = slices.Sorted(slices.Values(got))
		if !slices.Equal(got, want) {
			t.Errorf("CONTRIBUTING.md's import table: %s may import %q, importRules says %q", pkg, got, want)
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(doc)) {
		if _, ok := rules[pkg]; !ok {
			t.Errorf("CONTRIBUTING.md's import table has %s, which importRules does not", pkg)
		}
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
	lun := "\n[[target.lun]]\nname=\"a\"\npath=\"/a\"\n"
	iscsi := "[[target]]\nfabric=\"iscsi\"\niqn=\"iqn.2026-11.org.example:x\"\n"
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"good", good, ""},
		{"unknown key", "colour = 1\n", "unknown key"},
		{"duplicate LUN", "[[target]]" + lun + lun, "two LUNs"},
		{"no path", "[[target]]\n[[target.lun]]\nname=\"a\"\n", "no path"},
		{"bad name", "[[target]]\n[[target.lun]]\nname=\"a/b\"\npath=\"/a\"\n", "only letters"},
		{"bad size", "[[target]]" + lun + "size=\"ten\"\n", "size"},
		{"bad block size", "[[target]]" + lun + "block_size=1000\n", "block_size"},
		{"bad fabric", "[[target]]\nfabric=\"fc\"" + lun, "fabric"},
		{"no LUN", "[[target]]\nfabric=\"loop\"\n", "no LUN"},
		{"loop with iqn", "[[target]]\nfabric=\"loop\"\niqn=\"iqn.2026-11.org.example:x\"" + lun, "need the iscsi fabric"},
		{"loop open to any", "[[target]]\ninsecure_allow_any_initiator=true" + lun, "need the iscsi fabric"},
		{"open to any and listed", iscsi + "insecure_allow_any_initiator=true\ninitiators=[\"iqn.2026-11.org.example:i\"]" + lun, "open to any initiator"},
		{"bad initiator", iscsi + "initiators=[\"host1\"]" + lun, "initiator"},
		{"chap user without secret", iscsi + "chap_user=\"u\"" + lun, "go together"},
		{"missing secret file", iscsi + "chap_user=\"u\"\nchap_password_file=\"" + filepath.Join(dir, "none") + "\"" + lun, "chap_password_file"},
		{"conflicting targets", iscsi + lun + iscsi + "initiators=[\"iqn.2026-11.org.example:i\"]\n[[target.lun]]\nname=\"b\"\npath=\"/b\"\n", "two settings"},
		{"bad max_transfer", "max_transfer = \"1000\"\n", "max_transfer"},
		{"bad duration", "cmd_timeout = \"soon\"\n", "cmd_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			dc, err := loadConfig(path, "host1")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadConfig = %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dc.Mount != "" || dc.CmdTimeout != 10*time.Second || dc.MaxTransfer != 1<<20 || dc.Metrics != "127.0.0.1:9573" {
				t.Errorf("config = %+v", dc)
			}
			if len(dc.LUNs) != 2 {
				t.Fatalf("luns = %+v, want 2", dc.LUNs)
			}
			a, b := dc.LUNs[0], dc.LUNs[1]
			if a.Name != "a" || a.Size != 1<<30 || a.BlockSize != 4096 || a.Spec.Fabric != "iscsi" ||
				a.Spec.CHAPPassword != "0123456789abcdef" || a.Spec.Portal != "0.0.0.0:3260" || a.MaxTransfer != 1<<20 {
				t.Errorf("LUN a = %+v", a)
			}
			if len(a.Spec.Initiators) != 0 || a.Spec.AllowAnyInitiator {
				t.Errorf("LUN a spec = %+v, want no initiator admitted (deny by default)", a.Spec)
			}
			if b.Name != "b" || b.Spec.Fabric != "loop" || b.Size != 0 {
				t.Errorf("LUN b = %+v", b)
			}
		})
	}
}

// TestDefaults: an empty config gets the defaults the export flags show,
// and an iSCSI target without an IQN is named after its first LUN.
func TestDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	text := "[[target]]\nfabric=\"iscsi\"\n[[target.lun]]\nname=\"db\"\npath=\"/db\"\n[[target.lun]]\nname=\"logs\"\npath=\"/logs\"\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	dc, err := loadConfig(path, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if dc.Mount != defaultMount || dc.CmdTimeout != lio.DefaultCmdTimeout || dc.MaxTransfer != lio.DefaultMaxTransfer {
		t.Errorf("defaults = %+v", dc)
	}
	want := lio.DefaultIQN("host1", "db")
	for _, l := range dc.LUNs {
		if l.Spec.IQN != want {
			t.Errorf("LUN %s IQN = %q, want %q (the target's first LUN)", l.Name, l.Spec.IQN, want)
		}
	}
}

// TestExportIsConfig: export's flags and the equivalent config file give
// the same configuration (one type, one resolver).
func TestExportIsConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "chap")
	if err := os.WriteFile(secret, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"lunbridge", "export", "--fabric", "iscsi", "--initiator", "iqn.2026-11.org.example:i",
		"--chap-user", "u", "--chap-password-file", secret, "--size", "64M", "--block-size", "4096",
		"--name", "db", "--mount", "", "/srv/db.img", "/srv/logs.img"}
	var got daemonConfig
	cmd := exportCommand()
	cmd.Action = func(c *cli.Context) error {
		fc, err := exportConfig(c, c.Args().Slice(), c.StringSlice("name"))
		if err != nil {
			return err
		}
		got, err = fc.resolve("host1", readSecretFile)
		return err
	}
	app := &cli.App{Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard}
	if err := app.Run(args); err != nil {
		t.Fatal(err)
	}
	text := `mount = ""
[[target]]
fabric = "iscsi"
initiators = ["iqn.2026-11.org.example:i"]
chap_user = "u"
chap_password_file = "` + secret + `"
  [[target.lun]]
  name = "db"
  path = "/srv/db.img"
  size = "64M"
  block_size = 4096
  [[target.lun]]
  name = "logs"
  path = "/srv/logs.img"
  size = "64M"
  block_size = 4096
`
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := loadConfig(path, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("export flags give\n%+v\nthe config file gives\n%+v", got, want)
	}
}

// TestExportSizes: --size once gives every FILE that size, once per FILE
// gives each its own, and any other count is refused before anything is
// created.
func TestExportSizes(t *testing.T) {
	files := []string{"/srv/a.img", "/srv/b.img", "/srv/c.img"}
	for _, tc := range []struct {
		sizes []string
		want  []string // nil: refused
	}{
		{nil, []string{"", "", ""}},
		{[]string{"64M"}, []string{"64M", "64M", "64M"}},
		{[]string{"1G", "2G", "3G"}, []string{"1G", "2G", "3G"}},
		{[]string{"1G", "2G"}, nil},
		{[]string{"1G", "2G", "3G", "4G"}, nil},
	} {
		args := []string{"lunbridge", "export", "--mount", ""}
		for _, sz := range tc.sizes {
			args = append(args, "--size", sz)
		}
		args = append(args, files...)
		var got []string
		cmd := exportCommand()
		cmd.Action = func(c *cli.Context) error {
			fc, err := exportConfig(c, c.Args().Slice(), nil)
			if err != nil {
				return err
			}
			for _, l := range fc.Targets[0].LUNs {
				got = append(got, l.Size)
			}
			return nil
		}
		app := &cli.App{Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard,
			ExitErrHandler: func(*cli.Context, error) {}} // usage errors are cli.Exit: no os.Exit here
		err := app.Run(args)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("--size %q for 3 FILEs: sizes %q, want a refusal", tc.sizes, got)
		case tc.want == nil && !strings.Contains(err.Error(), "give one for every FILE, or one per FILE"):
			t.Errorf("--size %q for 3 FILEs: %v, want the rule in the error", tc.sizes, err)
		case tc.want != nil && err != nil:
			t.Errorf("--size %q: %v", tc.sizes, err)
		case tc.want != nil && !slices.Equal(got, tc.want):
			t.Errorf("--size %q: sizes %q, want %q", tc.sizes, got, tc.want)
		}
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
