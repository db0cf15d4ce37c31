// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/internal/configfs"
)

const testHost = "host1"

// rig is a Kernel over the one fake kernel, with its log and the modules
// it asked for.
type rig struct {
	k       *Kernel
	fake    *configfs.Fake
	logs    *bytes.Buffer
	modules []string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	fake, err := configfs.NewFake(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{fake: fake, logs: &bytes.Buffer{}}
	r.k, err = New(t.Context(), Config{
		ConfigfsRoot: fake.Configfs,
		SysfsRoot:    fake.Sysfs,
		DevRoot:      fake.Dev,
		FS:           fake,
		MaxTransfer:  bridge.DefaultMaxTransfer,
		Hostname:     testHost,
		Logger:       slog.New(slog.NewTextHandler(r.logs, nil)),
		LoadModules: func(_ context.Context, mods ...string) error {
			r.modules = append(r.modules, mods...)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// attach opens a 1 MiB LUN and attaches it.
func (r *rig) attach(t *testing.T, name string, spec bridge.ExportSpec) bridge.Device {
	t.Helper()
	l, err := bridge.Open(bridge.Options{Name: name, Path: filepath.Join(t.TempDir(), name), Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dev, err := r.k.Attach(t.Context(), l, spec)
	if err != nil {
		t.Fatalf("Attach(%s) = %v", name, err)
	}
	return dev
}

// export attaches and exports a LUN, and removes it at the end of the test.
func (r *rig) export(t *testing.T, name string, spec bridge.ExportSpec) (bridge.Device, string) {
	t.Helper()
	dev := r.attach(t, name, spec)
	_, where, err := dev.Export(t.Context())
	if err != nil {
		dev.Remove()
		t.Fatalf("Export(%s) = %v", name, err)
	}
	t.Cleanup(func() { dev.Unexport(context.Background()); dev.Remove() })
	return dev, where
}

func (r *rig) exists(p string) bool {
	_, err := os.Lstat(filepath.Join(r.fake.Configfs, p))
	return err == nil
}

func (r *rig) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.fake.Configfs, p))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Loop LUNs share one target and take the lowest free LUN number; the
// target goes with its last LUN; modules are loaded once each.
func TestLoopNumbering(t *testing.T) {
	r := newRig(t)
	before, _ := r.fake.Tree()
	loop := bridge.ExportSpec{Fabric: FabricLoop}
	a := r.attach(t, "a", loop)
	b := r.attach(t, "b", loop)
	for _, d := range []bridge.Device{a, b} {
		if _, _, err := d.Export(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	wwn, _ := fabric.LoopWWNs(loopName)
	tpg := filepath.Join("target", "loopback", wwn, "tpgt_1")
	for _, lun := range []string{"lun_0", "lun_1"} {
		if !r.exists(filepath.Join(tpg, "lun", lun)) {
			t.Errorf("%s/lun/%s missing", tpg, lun)
		}
	}
	if err := a.Unexport(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := r.attach(t, "c", loop)
	if _, _, err := c.Export(t.Context()); err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink(filepath.Join(r.fake.Configfs, tpg, "lun", "lun_0", "lunbridge"))
	if err != nil || filepath.Base(link) != "c" {
		t.Errorf("lun_0 links %q (%v), want the freed number reused by c", link, err)
	}
	for _, d := range []bridge.Device{b, c} {
		if err := d.Unexport(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if r.exists(filepath.Join("target", "loopback", wwn)) {
		t.Error("loopback target left after its last LUN went")
	}
	for _, d := range []bridge.Device{a, b, c} {
		if err := d.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := r.fake.Tree(); !slices.Equal(after, before) {
		t.Errorf("configfs after removing every LUN:\n got %q\nwant %q", after, before)
	}
	want := []string{fabric.ModConfigfs, fabric.ModTargetCore, fabric.ModUser, fabric.ModLoop}
	if !slices.Equal(r.modules, want) {
		t.Errorf("modules loaded = %q, want %q", r.modules, want)
	}
}

// An iSCSI export admits nobody unless initiators are listed or every
// initiator is allowed explicitly; either way the log says so.
func TestISCSIAccess(t *testing.T) {
	const init = "iqn.2026-11.org.example:i"
	for _, tc := range []struct {
		name       string
		spec       bridge.ExportSpec
		generate   string // attrib/generate_node_acls
		acls       []string
		wantLog    string
		wantNotLog string
	}{
		{"deny by default", bridge.ExportSpec{Fabric: FabricISCSI}, "0", nil, "--initiator", "EVERY"},
		{"listed", bridge.ExportSpec{Fabric: FabricISCSI, Initiators: []string{init}}, "0", []string{init}, "", "level=WARN"},
		{"insecure", bridge.ExportSpec{Fabric: FabricISCSI, AllowAnyInitiator: true}, "1", nil, "EVERY initiator", "--initiator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			_, where := r.export(t, "disk0", tc.spec)
			iqn := DefaultIQN(testHost, "disk0")
			if want := "iscsi://" + DefaultPortal + "/" + iqn + "/0 lun 0"; where != want {
				t.Errorf("Export = %q, want %q", where, want)
			}
			tpg := filepath.Join("target", "iscsi", iqn, "tpgt_1")
			if got := r.read(t, filepath.Join(tpg, "attrib", "generate_node_acls")); got != tc.generate {
				t.Errorf("generate_node_acls = %s, want %s", got, tc.generate)
			}
			ents, _ := os.ReadDir(filepath.Join(r.fake.Configfs, tpg, "acls"))
			var acls []string
			for _, e := range ents {
				acls = append(acls, e.Name())
			}
			if !slices.Equal(acls, tc.acls) {
				t.Errorf("ACLs = %q, want %q", acls, tc.acls)
			}
			logs := r.logs.String()
			if tc.wantLog != "" && !strings.Contains(logs, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs)
			}
			if strings.Contains(logs, tc.wantNotLog) {
				t.Errorf("log has %q:\n%s", tc.wantNotLog, logs)
			}
		})
	}
}

// LUNs naming one IQN share its target; one with other settings is
// refused and leaves the target as it was.
func TestISCSIConflict(t *testing.T) {
	r := newRig(t)
	const iqn = "iqn.2026-11.org.example:t"
	spec := bridge.ExportSpec{Fabric: FabricISCSI, IQN: iqn, Initiators: []string{"iqn.2026-11.org.example:i"}}
	r.export(t, "a", spec)
	_, where := r.export(t, "b", spec)
	if !strings.HasSuffix(where, "lun 1") {
		t.Errorf("second LUN of the target = %q, want LUN 1", where)
	}
	r.fake.TakeLog()
	other := spec
	other.Initiators = []string{"iqn.2026-11.org.example:j"}
	dev := r.attach(t, "c", other)
	defer dev.Remove()
	_, _, err := dev.Export(t.Context())
	if !errors.Is(err, bridge.ErrInvalid) || !strings.Contains(err.Error(), "initiators") {
		t.Errorf("Export with other initiators = %v, want a conflict naming them", err)
	}
	for _, l := range r.fake.TakeLog() {
		if strings.Contains(l, "target/iscsi") {
			t.Errorf("the refused LUN changed the target: %s", l)
		}
	}
}

// A stale iSCSI target whose LUNs link lunbridge backstores (a killed
// run) is removed and made anew; one linking another backstore is not
// ours, and the export fails with fs.ErrExist.
func TestStaleTarget(t *testing.T) {
	const iqn = "iqn.2026-11.org.example:t"
	spec := bridge.ExportSpec{Fabric: FabricISCSI, IQN: iqn, Initiators: []string{"iqn.2026-11.org.example:i"}}
	for _, tc := range []struct {
		name    string
		ours    bool
		wantErr error
	}{
		{"ours", true, nil},
		{"someone else's", false, fs.ErrExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			// The killed run's backstore, and its target linking it.
			old := r.attach(t, "old", bridge.ExportSpec{Fabric: FabricNone})
			backstore := filepath.Join(r.fake.Configfs, "target", "core", "user_0", "old")
			if !tc.ours {
				backstore = filepath.Join(r.fake.Configfs, "target", "core", "fileio_0", "theirs")
				if err := os.MkdirAll(backstore, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			stale := &fabric.ISCSITarget{IQN: iqn, ConfigfsRoot: r.fake.Configfs, FS: r.fake}
			if _, err := stale.AddLUN(t.Context(), 3, backstore); err != nil {
				t.Fatal(err)
			}
			dev := r.attach(t, "new", spec)
			defer dev.Remove()
			_, where, err := dev.Export(t.Context())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Export = %q, %v, want error %v", where, err, tc.wantErr)
			}
			lun3 := r.exists(filepath.Join("target", "iscsi", iqn, "tpgt_1", "lun", "lun_3"))
			if lun3 == tc.ours {
				t.Errorf("stale lun_3 exists = %v after Export, want %v", lun3, !tc.ours)
			}
			if err == nil {
				if err := dev.Unexport(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else {
				stale.Remove()
			}
			if err := old.Remove(); err != nil {
				t.Errorf("remove the old backstore: %v", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	const init = "iqn.2026-11.org.example:i"
	for _, tc := range []struct {
		name    string
		in      bridge.ExportSpec
		want    bridge.ExportSpec
		wantErr string
	}{
		{"default fabric", bridge.ExportSpec{}, bridge.ExportSpec{Fabric: FabricLoop}, ""},
		{"loop drops the portal", bridge.ExportSpec{Fabric: FabricLoop, Portal: DefaultPortal}, bridge.ExportSpec{Fabric: FabricLoop}, ""},
		{"iscsi defaults", bridge.ExportSpec{Fabric: FabricISCSI},
			bridge.ExportSpec{Fabric: FabricISCSI, IQN: DefaultIQN(testHost, "disk0"), Portal: DefaultPortal}, ""},
		{"bad fabric", bridge.ExportSpec{Fabric: "fc"}, bridge.ExportSpec{}, "want loop, iscsi or none"},
		{"loop with iqn", bridge.ExportSpec{Fabric: FabricLoop, IQN: "iqn.2026-11.org.example:x"}, bridge.ExportSpec{}, "iscsi fabric"},
		{"none with initiators", bridge.ExportSpec{Fabric: FabricNone, Initiators: []string{init}}, bridge.ExportSpec{}, "iscsi fabric"},
		{"loop open to any", bridge.ExportSpec{Fabric: FabricLoop, AllowAnyInitiator: true}, bridge.ExportSpec{}, "iscsi fabric"},
		{"any and listed", bridge.ExportSpec{Fabric: FabricISCSI, AllowAnyInitiator: true, Initiators: []string{init}}, bridge.ExportSpec{}, "open to any"},
		{"bad initiator", bridge.ExportSpec{Fabric: FabricISCSI, Initiators: []string{"host2"}}, bridge.ExportSpec{}, "initiator"},
		{"bad portal", bridge.ExportSpec{Fabric: FabricISCSI, Portal: "example.org:3260"}, bridge.ExportSpec{}, "not an IP address"},
		{"bad iqn", bridge.ExportSpec{Fabric: FabricISCSI, IQN: "iqn.x"}, bridge.ExportSpec{}, "date"},
		{"user without password", bridge.ExportSpec{Fabric: FabricISCSI, CHAPUser: "u"}, bridge.ExportSpec{}, "CHAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.in, testHost, "disk0")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Resolve(%+v) = %v, want an error with %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%+v) = %v", tc.in, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Resolve(%+v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestSameTarget(t *testing.T) {
	a := bridge.ExportSpec{Fabric: FabricISCSI, IQN: "iqn.2026-11.org.example:t", Portal: DefaultPortal,
		Initiators: []string{"iqn.2026-11.org.example:i", "iqn.2026-11.org.example:j"}}
	b := a
	b.Initiators = []string{"iqn.2026-11.org.example:j", "iqn.2026-11.org.example:i"}
	if err := SameTarget(a, b); err != nil {
		t.Errorf("SameTarget with initiators in another order = %v", err)
	}
	for what, change := range map[string]func(*bridge.ExportSpec){
		"portal":              func(s *bridge.ExportSpec) { s.Portal = "127.0.0.1:3260" },
		"initiators":          func(s *bridge.ExportSpec) { s.Initiators = s.Initiators[:1] },
		"allow-any-initiator": func(s *bridge.ExportSpec) { s.AllowAnyInitiator = true },
		"CHAP":                func(s *bridge.ExportSpec) { s.CHAPUser = "u" },
	} {
		c := a
		change(&c)
		if err := SameTarget(a, c); err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("SameTarget with another %s = %v, want an error naming it", what, err)
		}
	}
	c := a
	c.IQN += "x"
	c.Portal = "127.0.0.1:3260"
	if err := SameTarget(a, c); err != nil {
		t.Errorf("SameTarget of two targets = %v, want nil", err)
	}
}
