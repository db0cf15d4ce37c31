// SPDX-License-Identifier: Apache-2.0

package fusefs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/fusefs"
)

// TestViewSnapshots drives a snapshot through the view of a real daemon
// (fake ring): made and listed through ctl and snapshots/, refused when
// bad, exported read-only through /luns, deleted.
func TestViewSnapshots(t *testing.T) {
	needMount(t)
	k := &ringKernel{}
	var view *fusefs.View
	d := bridge.NewDaemon(bridge.DaemonOptions{
		Kernel:      k,
		Defaults:    bridge.Options{BlockSize: 512, Workers: 2},
		DefaultSpec: bridge.ExportSpec{Fabric: "loop"},
		OnChange:    func() { view.Refresh() },
	})
	mnt := t.TempDir()
	img := filepath.Join(t.TempDir(), "d0.img")
	view = fusefs.New(d, fusefs.Options{Mountpoint: mnt, Version: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- view.Run(ctx) }()
	select {
	case <-view.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("Daemon.Close: %v", err)
		}
	})
	write := func(p, line string) error {
		return os.WriteFile(filepath.Join(mnt, p), []byte(line+"\n"), 0)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(string(b), "\n")
	}

	if err := write("luns", "export d0 "+img+" size=4M"); err != nil {
		t.Fatal(err)
	}
	dev := k.dev("d0")
	for i := range 8 {
		if st, key := dev.rw(t, true, uint32(16*i), 16); st != 0 {
			t.Fatalf("WRITE(10): status %#x key %#x", st, key)
		}
	}
	if err := write("d0/ctl", "snapshot s1"); err != nil {
		t.Fatal(err)
	}
	if got := read("d0/snapshots/s1/path"); got != img+"@s1" {
		t.Errorf("path = %q, want %q", got, img+"@s1")
	}
	deadline := time.Now().Add(20 * time.Second)
	for read("d0/snapshots/s1/state") == "copying" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := read("d0/snapshots/s1/state"); got != "ready" {
		t.Fatalf("state = %q, want ready", got)
	}
	if got := read("d0/snapshots/s1/progress"); got != "4194304 / 4194304" {
		t.Errorf("progress = %q, want 4194304 / 4194304", got)
	}
	if m := read("d0/snapshots/s1/method"); m != "copy" && m != "reflink" {
		t.Errorf("method = %q", m)
	}
	for _, f := range []string{"created", "pause_us"} {
		if read("d0/snapshots/s1/"+f) == "" {
			t.Errorf("%s is empty", f)
		}
	}
	ents, err := os.ReadDir(filepath.Join(mnt, "d0/snapshots"))
	if err != nil || len(ents) != 1 || ents[0].Name() != "s1" {
		t.Fatalf("ls d0/snapshots = %v, %v; want s1", ents, err)
	}
	for line, want := range map[string]error{
		"snapshot s1":       syscall.EEXIST,
		"snapshot a/b":      syscall.EINVAL,
		"snapshot ..":       syscall.EINVAL,
		"delete-snapshot x": syscall.ENOENT,
	} {
		if err := write("d0/ctl", line); !errors.Is(err, want) {
			t.Errorf("write %q to ctl: %v, want %v", line, err, want)
		}
	}

	// The snapshot is an ordinary file: exported read-only, it reads
	// what the LUN held at the snapshot point.
	if err := write("luns", "export s1 "+img+"@s1 read-only=1"); err != nil {
		t.Fatal(err)
	}
	if got := read("s1/read_only"); got != "1" {
		t.Errorf("s1/read_only = %q, want 1", got)
	}
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(img + "@s1")
	if !bytes.Equal(got, want) {
		t.Error("the snapshot differs from the LUN it was taken of (no write since)")
	}
	if err := write("luns", "remove s1"); err != nil {
		t.Fatal(err)
	}
	if err := write("d0/ctl", "delete-snapshot s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "d0/snapshots/s1")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat d0/snapshots/s1 after delete: %v, want ENOENT", err)
	}
	if _, err := os.Stat(img + "@s1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot file after delete: %v", err)
	}
}
