// SPDX-License-Identifier: Apache-2.0

package lio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lease"
)

// TestNameInUse: a LUN name another daemon of this machine serves is
// refused in one line naming the holder and its file, before configfs is
// touched; once the holder removes it, the name is free.
func TestNameInUse(t *testing.T) {
	locks := t.TempDir()
	first, second := newRig(t), newRig(t) // two daemons
	first.k.cfg.NameLockDir, second.k.cfg.NameLockDir = locks, locks
	dev := first.attach(t, "d0", bridge.ExportSpec{Fabric: FabricNone})

	path := filepath.Join(t.TempDir(), "other.img")
	l, err := bridge.Open(bridge.Options{Name: "d0", Path: path, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = second.k.Attach(t.Context(), l, bridge.ExportSpec{Fabric: FabricNone})
	var nerr *lease.NameHeldError
	if !errors.As(err, &nerr) || !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("Attach of a name in use = %v, want a *lease.NameHeldError", err)
	}
	msg := err.Error()
	for _, w := range []string{"LUN name d0 is in use by another lunbridge", fmt.Sprintf("pid %d", os.Getpid()), "file " + firstPath(t, first)} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q lacks %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message %q is more than one line", msg)
	}
	if second.exists("target/core/user_0") {
		t.Error("the refused Attach touched configfs")
	}
	if err := dev.Remove(); err != nil {
		t.Fatal(err)
	}
	dev2, err := second.k.Attach(t.Context(), l, bridge.ExportSpec{Fabric: FabricNone})
	if err != nil {
		t.Fatalf("Attach after the holder removed the name = %v", err)
	}
	dev2.Remove()
}

// firstPath is the backing file rig.attach gave the first daemon's d0,
// as its name lock records it.
func firstPath(t *testing.T, r *rig) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.k.cfg.NameLockDir, "d0.lock"))
	if err != nil {
		t.Fatal(err)
	}
	_, p, ok := strings.Cut(string(b), "\npath ")
	if !ok || !strings.HasSuffix(strings.TrimSpace(p), "/d0") {
		t.Fatalf("name lock %q names no backing file ending in /d0", b)
	}
	return strings.TrimSpace(p)
}
