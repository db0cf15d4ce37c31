// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
)

// sibling is newRig for a second lunbridge process on the same machine:
// its own Kernel (LUN numbers, targets) over r's fake kernel.
func (r *rig) sibling(t *testing.T) *rig {
	t.Helper()
	s := newRig(t)
	s.fake = r.fake
	s.k.cfg.FS = r.fake
	s.k.cfg.ConfigfsRoot, s.k.cfg.SysfsRoot, s.k.cfg.DevRoot = r.fake.Configfs, r.fake.Sysfs, r.fake.Dev
	return s
}

// attachGateway attaches a 1 MiB LUN that is gateway self of a group of
// two (groups 1 and 2) over one shared file in dir.
func (r *rig) attachGateway(t *testing.T, dir, name string, self, peer Member) bridge.Device {
	t.Helper()
	shared := filepath.Join(dir, "shared.img")
	gs := NewGateways(GatewayConfig{Self: self, Peers: []Member{peer}})
	t.Cleanup(func() { gs.Close() })
	gw, err := gs.Open(name, shared)
	if err != nil {
		t.Fatal(err)
	}
	l, err := bridge.Open(bridge.Options{Name: name, Path: shared, Size: 1 << 20, Gateway: gw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dev, err := r.k.Attach(t.Context(), l, bridge.ExportSpec{Fabric: FabricLoop})
	if err != nil {
		t.Fatalf("Attach(%s) = %v", name, err)
	}
	return dev
}

// Two gateways of one group on one machine, each its own lunbridge with
// --fabric loop --alua-group N: each gets a loopback target of its own
// (and so LUN 0 of it), where they once both claimed lun_0 of the one
// shared target and the second failed with "lun_0 exists and links
// ../gw1, not gw2".
func TestLoopGatewaysOnOneMachine(t *testing.T) {
	r1 := newRig(t)
	r2 := r1.sibling(t)
	before, _ := r1.fake.Tree()
	dir := t.TempDir()
	g1, g2 := Member{Group: 1, RelativePort: 1}, Member{Group: 2, RelativePort: 2}
	d1 := r1.attachGateway(t, dir, "gw1", g1, g2)
	d2 := r2.attachGateway(t, dir, "gw2", g2, g1)
	var wheres []string
	for _, d := range []bridge.Device{d1, d2} {
		_, where, err := d.Export(t.Context())
		if err != nil {
			t.Fatalf("Export = %v, want two gateways of one group to coexist", err)
		}
		wheres = append(wheres, where)
	}
	if wheres[0] == wheres[1] {
		t.Errorf("both gateways exported as %s", wheres[0])
	}
	for i, name := range []string{"gw1", "gw2"} {
		wwn, _ := fabric.LoopWWNs(loopTargetName(&bridge.GatewayInfo{Group: uint16(i + 1)}))
		link := filepath.Join(r1.fake.Configfs, "target", "loopback", wwn, "tpgt_1", "lun", "lun_0", "lunbridge")
		got, err := os.Readlink(link)
		if err != nil || filepath.Base(got) != name {
			t.Errorf("%s links %q (%v), want %s", link, got, err, name)
		}
	}
	// The second gateway leaves first: the first one's target stays.
	if err := d2.Unexport(t.Context()); err != nil {
		t.Fatal(err)
	}
	wwn1, _ := fabric.LoopWWNs(loopTargetName(&bridge.GatewayInfo{Group: 1}))
	if !r1.exists(filepath.Join("target", "loopback", wwn1, "tpgt_1", "lun", "lun_0")) {
		t.Error("gw1's LUN went with gw2")
	}
	if err := d1.Unexport(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []bridge.Device{d1, d2} {
		if err := d.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := r1.fake.Tree(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("configfs after both gateways left:\n got %q\nwant %q", after, before)
	}
}

// Plain loop exports of two lunbridge processes share the one loopback
// target and cannot agree on LUN numbers: the second is refused at
// start with a message that says why, and the first is left alone.
func TestLoopSecondProcessRefused(t *testing.T) {
	r1 := newRig(t)
	r2 := r1.sibling(t)
	r1.export(t, "a", bridge.ExportSpec{Fabric: FabricLoop})
	d := r2.attach(t, "b", bridge.ExportSpec{Fabric: FabricLoop})
	t.Cleanup(func() { d.Unexport(context.Background()); d.Remove() })
	_, _, err := d.Export(t.Context())
	if err == nil || !strings.Contains(err.Error(), "in use by another lunbridge on this machine") {
		t.Fatalf("second process's Export = %v, want a refusal naming another lunbridge", err)
	}
	wwn, _ := fabric.LoopWWNs(loopName)
	got, err := os.Readlink(filepath.Join(r1.fake.Configfs, "target", "loopback", wwn, "tpgt_1", "lun", "lun_0", "lunbridge"))
	if err != nil || filepath.Base(got) != "a" {
		t.Errorf("lun_0 links %q (%v) after the refusal, want a", got, err)
	}
}
