// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fabric"
	"github.com/lunbridge/lunbridge/lease"
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

// exportedBeforeKill sets up two lunbridge processes sharing a name lock
// directory: the first has exported loop LUNs a (lun_0) and b (lun_1),
// whose devices it returns (the caller kills it by closing their name
// locks); next is its successor.
func exportedBeforeKill(t *testing.T) (locks string, next *rig, old []bridge.Device) {
	t.Helper()
	locks = t.TempDir()
	killed := newRig(t)
	killed.k.cfg.NameLockDir = locks
	next = killed.sibling(t)
	next.k.cfg.NameLockDir = locks
	for _, name := range []string{"a", "b"} {
		d := killed.attach(t, name, bridge.ExportSpec{Fabric: FabricLoop})
		if _, _, err := d.Export(t.Context()); err != nil {
			t.Fatal(err)
		}
		old = append(old, d)
	}
	return locks, next, old
}

// A lunbridge killed with loop LUNs a (lun_0) and b (lun_1) leaves them in
// configfs, and its successor serves b and a new c: b keeps lun_1 (its
// disk stays where it was), c takes lun_2, not the stale lun_0 of a,
// which nobody serves and which is logged; where once c was refused as if
// another lunbridge held lun_0. A clean stop then removes b and c and
// leaves a's LUN, with the target holding it. With a's name held by a live
// lunbridge, the refusal stands.
func TestLoopRestartOtherLUNs(t *testing.T) {
	for _, aLive := range []bool{false, true} {
		t.Run(map[bool]string{false: "a stale", true: "a live"}[aLive], func(t *testing.T) {
			_, next, old := exportedBeforeKill(t)
			loop := bridge.ExportSpec{Fabric: FabricLoop}
			// The kill: the kernel keeps configfs; the name locks go with
			// the process (a's stays when it is another live daemon's).
			for i, d := range old {
				if i > 0 || !aLive {
					d.(*device).nameLock.Close()
				}
			}
			wwn, _ := fabric.LoopWWNs(loopName)
			lunDir := filepath.Join("target", "loopback", wwn, "tpgt_1", "lun")
			links := func() map[string]string {
				m := map[string]string{}
				names, _ := next.fake.ReadDir(filepath.Join(next.fake.Configfs, lunDir))
				for _, n := range names {
					got, _ := os.Readlink(filepath.Join(next.fake.Configfs, lunDir, n, "lunbridge"))
					m[n] = filepath.Base(got)
				}
				return m
			}

			b := next.attach(t, "b", loop)
			c := next.attach(t, "c", loop)
			_, _, errB := b.Export(t.Context())
			_, _, errC := c.Export(t.Context())
			if errB != nil {
				t.Fatalf("b's Export = %v, want b adopted at its LUN number", errB)
			}
			if aLive {
				if errC == nil || !strings.Contains(errC.Error(), "in use by another lunbridge on this machine") {
					t.Fatalf("c's Export = %v, want a refusal naming another lunbridge", errC)
				}
				if got, want := links(), map[string]string{"lun_0": "a", "lun_1": "b"}; !maps.Equal(got, want) {
					t.Errorf("LUNs after the refusal %v, want %v", got, want)
				}
				b.Unexport(t.Context())
				b.Remove()
				c.Remove()
				old[0].Unexport(t.Context())
				old[0].Remove()
				return
			}
			if errC != nil {
				t.Fatalf("c's Export = %v, want it beside a's stale LUN", errC)
			}
			if got, want := links(), map[string]string{"lun_0": "a", "lun_1": "b", "lun_2": "c"}; !maps.Equal(got, want) {
				t.Errorf("LUNs %v, want %v", got, want)
			}
			if !strings.Contains(next.logs.String(), "nobody serves it") || !strings.Contains(next.logs.String(), "user_0/a") {
				t.Errorf("no warning about a's stale LUN in the log:\n%s", next.logs)
			}
			for _, d := range []bridge.Device{c, b} {
				if err := d.Unexport(t.Context()); err != nil {
					t.Errorf("Unexport = %v, want a clean stop beside a's stale LUN", err)
				}
				if err := d.Remove(); err != nil {
					t.Error(err)
				}
			}
			if got, want := links(), map[string]string{"lun_0": "a"}; !maps.Equal(got, want) {
				t.Errorf("LUNs after the clean stop %v, want a's alone", got)
			}
		})
	}
}

// A restarted daemon that exports two LUNs at once after a kill: while
// one of them, a, is between Attach's ClaimName and the end of its
// attach, its old LUN in the loopback target has a live name lock (this
// daemon's) and a backstore not attached yet. Another LUN exported at
// that moment skips a's number as this daemon's own, neither refused as
// another lunbridge's nor logged as stale; a then takes its number back.
func TestLoopRestartClaimWindow(t *testing.T) {
	locks, next, old := exportedBeforeKill(t)
	loop := bridge.ExportSpec{Fabric: FabricLoop}
	for _, d := range old {
		d.(*device).nameLock.Close() // the kill
	}
	// a's Attach in next, stopped right after its first step.
	hold, err := lease.ClaimName(locks, "a", filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	next.k.claim("a", true)

	c := next.attach(t, "c", loop)
	_, where, err := c.Export(t.Context())
	if err != nil {
		t.Fatalf("c's Export during a's attach = %v, want it beside a's LUN", err)
	}
	t.Cleanup(func() { c.Unexport(context.Background()); c.Remove() })
	if lun := c.(*device).lun; lun != 2 {
		t.Errorf("c got LUN %d (%s), want 2: lun_0 is a's, lun_1 b's stale one", lun, where)
	}
	logs := next.logs.String()
	if strings.Contains(logs, "user_0/a") {
		t.Errorf("a's LUN, being served again by this daemon, was logged:\n%s", logs)
	}
	if !strings.Contains(logs, "nobody serves it") || !strings.Contains(logs, "user_0/b") {
		t.Errorf("no warning about b's stale LUN in the log:\n%s", logs)
	}

	// a's attach goes on (its real Attach claims the name itself).
	next.k.claim("a", false)
	hold.Close()
	a := next.attach(t, "a", loop)
	if _, _, err := a.Export(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Unexport(context.Background()); a.Remove() })
	if lun := a.(*device).lun; lun != 0 {
		t.Errorf("a got LUN %d, want its old 0", lun)
	}
}
