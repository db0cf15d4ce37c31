// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// stoppingKernel is fakeKernel with StopFabrics, recording the order of
// StopFabrics and every device's Unexport.
type stoppingKernel struct {
	fakeKernel
	mu  sync.Mutex
	log []string // protected by mu
}

func (k *stoppingKernel) record(s string) {
	k.mu.Lock()
	k.log = append(k.log, s)
	k.mu.Unlock()
}

func (k *stoppingKernel) StopFabrics(ctx context.Context) error {
	k.record("stop fabrics")
	return nil
}

func (k *stoppingKernel) Attach(ctx context.Context, l *LUN, spec ExportSpec) (Device, error) {
	dev, err := k.fakeKernel.Attach(ctx, l, spec)
	if err != nil {
		return nil, err
	}
	return &recordingDevice{Device: dev, k: k, name: l.Name()}, nil
}

type recordingDevice struct {
	Device
	k    *stoppingKernel
	name string
}

func (d *recordingDevice) Unexport(ctx context.Context) error {
	d.k.record("unexport " + d.name)
	return d.Device.Unexport(ctx)
}

// Close stops the fabrics before it unexports any LUN: initiators must
// see their path fail, not a LUN vanish under their session.
func TestDaemonCloseStopsFabricsFirst(t *testing.T) {
	k := &stoppingKernel{fakeKernel: fakeKernel{t: t}}
	d := NewDaemon(DaemonOptions{Kernel: k})
	dir := t.TempDir()
	for _, n := range []string{"a", "b"} {
		if _, err := d.Add(t.Context(), Options{Name: n, Path: filepath.Join(dir, n+".img"), Size: 1 << 20}, ExportSpec{Fabric: "none"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"stop fabrics", "unexport b", "unexport a"}
	if !slices.Equal(k.log, want) {
		t.Errorf("Close did %q, want %q", k.log, want)
	}
}

// A control "remove" of a gateway LUN is refused: the LUN stays, served.
// Removing it alone would unlink it under the initiators' sessions with
// its lease still running.
func TestControlRemoveGatewayRefused(t *testing.T) {
	k := &stoppingKernel{fakeKernel: fakeKernel{t: t}}
	d := NewDaemon(DaemonOptions{Kernel: k})
	defer d.Close(context.Background())
	dir := t.TempDir()
	if _, err := d.Add(t.Context(), Options{Name: "gw", Path: filepath.Join(dir, "gw.img"), Size: 1 << 20, Gateway: &fakeGateway{}}, ExportSpec{Fabric: "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(t.Context(), Options{Name: "plain", Path: filepath.Join(dir, "plain.img"), Size: 1 << 20}, ExportSpec{Fabric: "none"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Control(t.Context(), "", "remove gw"); !errors.Is(err, ErrInvalid) {
		t.Errorf(`Control("remove gw") = %v, want %v`, err, ErrInvalid)
	}
	if err := d.Control(t.Context(), "", "remove plain"); err != nil {
		t.Errorf(`Control("remove plain") = %v, want nil`, err)
	}
	if got := d.Names(); !slices.Equal(got, []string{"gw"}) {
		t.Errorf("Names() = %q, want [gw]", got)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if want := []string{"unexport plain"}; !slices.Equal(k.log, want) {
		t.Errorf("the kernel saw %q, want %q", k.log, want)
	}
}
