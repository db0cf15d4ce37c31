// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
)

// StopFabrics disables the iSCSI portal group before any LUN is
// unlinked: a LUN unlinked under a logged-in session would answer the
// initiator's writes with DATA PROTECT (LIO's virtual LUN 0), a target
// error that dm-multipath does not retry on another path. Loop targets
// are left alone (tcm_loop removes the initiator's disk itself before it
// unlinks a LUN).
func TestStopFabricsDisablesBeforeUnlink(t *testing.T) {
	r := newRig(t)
	iqn := "iqn.2026-12.org.lunbridge.test:stop"
	spec := bridge.ExportSpec{Fabric: FabricISCSI, IQN: iqn, Portal: "127.0.0.1:3260", Initiators: []string{"iqn.2026-12.org.lunbridge.test:init"}}
	dev := r.attach(t, "a", spec)
	if _, _, err := dev.Export(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer dev.Remove()
	loop := r.attach(t, "b", bridge.ExportSpec{Fabric: FabricLoop})
	if _, _, err := loop.Export(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer loop.Remove()
	r.fake.TakeLog()
	if err := r.k.StopFabrics(t.Context()); err != nil {
		t.Fatal(err)
	}
	tpg := filepath.Join("config", "target", "iscsi", iqn, "tpgt_1")
	if got, want := r.fake.TakeLog(), []string{"write " + tpg + "/enable=0"}; !slices.Equal(got, want) {
		t.Errorf("StopFabrics did %q, want %q", got, want)
	}
	for _, d := range []bridge.Device{dev, loop} {
		if err := d.Unexport(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	log := r.fake.TakeLog()
	if i := slices.IndexFunc(log, func(op string) bool { return strings.HasPrefix(op, "unlink "+tpg+"/lun/lun_0/") }); i < 0 {
		t.Errorf("Unexport did not unlink lun_0: %q", log)
	}
	if slices.Contains(log, "write "+tpg+"/enable=0") {
		t.Errorf("Unexport wrote enable=0 again, after StopFabrics: %q", log)
	}
}

// The whole shutdown: a daemon over this Kernel closes with its iSCSI
// LUN exported; the portal group is disabled before lun_0 is unlinked.
func TestDaemonCloseDisablesBeforeUnlink(t *testing.T) {
	r := newRig(t)
	iqn := "iqn.2026-12.org.lunbridge.test:close"
	spec := bridge.ExportSpec{Fabric: FabricISCSI, IQN: iqn, Portal: "127.0.0.1:3260", Initiators: []string{"iqn.2026-12.org.lunbridge.test:init"}}
	d := bridge.NewDaemon(bridge.DaemonOptions{Kernel: r.k})
	if _, err := d.Add(t.Context(), bridge.Options{Name: "a", Path: filepath.Join(t.TempDir(), "a.img"), Size: 1 << 20}, spec); err != nil {
		t.Fatal(err)
	}
	r.fake.TakeLog()
	if err := d.Close(context.Background()); err != nil {
		// The fake kernel's UIO device is a plain file, so the LUN's
		// Serve may have ended at its EOF: only the order of the
		// configfs operations matters here.
		t.Logf("Close: %v", err)
	}
	log := r.fake.TakeLog()
	tpg := filepath.Join("config", "target", "iscsi", iqn, "tpgt_1")
	disabled := slices.Index(log, "write "+tpg+"/enable=0")
	// The ACL's mapped lun_0 is what the session sees go first.
	unlinked := slices.IndexFunc(log, func(op string) bool { return strings.HasPrefix(op, "unlink ") && strings.Contains(op, "/lun_0/") })
	if disabled < 0 || unlinked < 0 || disabled > unlinked {
		t.Errorf("Close: enable=0 at %d, lun_0 unlinked at %d in %q; want both, enable=0 first", disabled, unlinked, log)
	}
}

// Removing LUNs at run time (the control interface's unexport): a LUN
// that leaves others behind is unlinked under the live portal group,
// whose sessions keep the other LUNs; the last one is unlinked only after
// the group is disabled, so that a session sees a path error rather than
// DATA PROTECT.
func TestUnexportLastISCSILUNDisablesFirst(t *testing.T) {
	r := newRig(t)
	iqn := "iqn.2026-12.org.lunbridge.test:last"
	spec := bridge.ExportSpec{Fabric: FabricISCSI, IQN: iqn, Portal: "127.0.0.1:3260", Initiators: []string{"iqn.2026-12.org.lunbridge.test:init"}}
	a := r.attach(t, "a", spec)
	b := r.attach(t, "b", spec)
	for _, d := range []bridge.Device{a, b} {
		if _, _, err := d.Export(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer d.Remove()
	}
	tpg := filepath.Join("config", "target", "iscsi", iqn, "tpgt_1")
	unlinked := func(log []string, lun string) int {
		return slices.IndexFunc(log, func(op string) bool {
			return strings.HasPrefix(op, "unlink ") && strings.Contains(op, "/"+lun+"/")
		})
	}
	r.fake.TakeLog()
	if err := a.Unexport(t.Context()); err != nil {
		t.Fatal(err)
	}
	log := r.fake.TakeLog()
	if unlinked(log, "lun_0") < 0 {
		t.Errorf("Unexport(a) did not unlink lun_0: %q", log)
	}
	if slices.Contains(log, "write "+tpg+"/enable=0") {
		t.Errorf("Unexport(a) disabled the group while b is still served: %q", log)
	}
	if err := b.Unexport(t.Context()); err != nil {
		t.Fatal(err)
	}
	log = r.fake.TakeLog()
	disabled, gone := slices.Index(log, "write "+tpg+"/enable=0"), unlinked(log, "lun_1")
	if disabled < 0 || gone < 0 || disabled > gone {
		t.Errorf("Unexport(b): enable=0 at %d, lun_1 unlinked at %d in %q; want both, enable=0 first", disabled, gone, log)
	}
	if n := strings.Count(strings.Join(log, "\n"), "/enable=0"); n != 1 {
		t.Errorf("Unexport(b) wrote enable=0 %d times, want once: %q", n, log)
	}
	if r.exists(filepath.Join("target", "iscsi", iqn)) {
		t.Error("iSCSI target left after its last LUN went")
	}
}
