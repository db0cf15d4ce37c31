// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/scsi"
)

// fakeGateway is a Gateway whose fence answers are set by the test.
type fakeGateway struct {
	state   atomic.Uint32 // scsi.AccessState
	fence   atomic.Pointer[error]
	checks  atomic.Int32
	drain   func(context.Context) error
	changed func(scsi.AccessState) error
	// onCheck, if set, runs inside CheckWrite (after the count).
	onCheck func(n int32)
	// lostErr is the error Lost was called with, if it was.
	lostErr atomic.Pointer[error]
}

func (g *fakeGateway) Local() scsi.LocalPort   { return scsi.LocalPort{Group: 1, RelativePort: 1} }
func (g *fakeGateway) State() scsi.AccessState { return scsi.AccessState(g.state.Load()) }
func (g *fakeGateway) PortGroups() []scsi.PortGroup {
	return []scsi.PortGroup{{ID: 1, State: g.State(), Ports: []uint16{1}}}
}
func (g *fakeGateway) Refused() {}
func (g *fakeGateway) Bind(drain func(context.Context) error, changed func(scsi.AccessState) error) {
	g.drain, g.changed = drain, changed
}

func (g *fakeGateway) Info() GatewayInfo {
	return GatewayInfo{Group: 1, State: g.State(), Owner: g.State() == scsi.StateActiveOptimized, Epoch: 7}
}

func (g *fakeGateway) CheckWrite() error {
	n := g.checks.Add(1)
	if g.onCheck != nil {
		g.onCheck(n)
	}
	if p := g.fence.Load(); p != nil {
		return *p
	}
	return nil
}

// CheckRead answers as CheckWrite, without counting or onCheck.
func (g *fakeGateway) CheckRead() error {
	if p := g.fence.Load(); p != nil {
		return *p
	}
	return nil
}

func (g *fakeGateway) setFence(err error) { g.fence.Store(&err) }

// Lost records err and fences the gateway as package lease does:
// unavailable, every check failing with 02/04/0C.
func (g *fakeGateway) Lost(err error) error {
	g.lostErr.Store(&err)
	g.state.Store(uint32(scsi.StateUnavailable))
	g.setFence(scsi.ErrALUAUnavailable)
	return scsi.ErrALUAUnavailable
}

func openGatewayLUN(t *testing.T, g *fakeGateway) (*LUN, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shared.img")
	l, err := Open(Options{Name: "shared", Path: path, Size: 1 << 20, Gateway: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if g.drain == nil || g.changed == nil {
		t.Fatal("Open did not bind the gateway's hooks")
	}
	return l, path
}

func fileBlock(t *testing.T, path string, lba int64) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[lba*512 : (lba+1)*512]
}

func TestGatewayFencesWrites(t *testing.T) {
	g := &fakeGateway{}
	l, path := openGatewayLUN(t, g)
	d := l.Disk()
	block := bytes.Repeat([]byte{0xab}, 512)

	// The owner writes.
	if _, err := d.Execute(write10(3, 1, false), [][]byte{block}); err != nil {
		t.Fatalf("WRITE as owner = %v", err)
	}
	if !bytes.Equal(fileBlock(t, path, 3), block) {
		t.Error("the owner's write is not in the file")
	}

	// A gateway that is no longer sure it owns the file issues nothing
	// and completes with the gateway's sense.
	g.setFence(scsi.ErrALUATransitioning)
	other := bytes.Repeat([]byte{0xcd}, 512)
	_, err := d.Execute(write10(4, 1, false), [][]byte{other})
	if se, ok := errors.AsType[*scsi.Error](err); !ok || !errors.Is(se, scsi.ErrALUATransitioning) {
		t.Fatalf("WRITE while fenced = %v, want %v inside", err, scsi.ErrALUATransitioning)
	}
	if bytes.Equal(fileBlock(t, path, 4), other) {
		t.Error("a fenced write reached the file")
	}

	// Ownership lost while the write was in the file system: the data
	// may be there, but the write is not acknowledged.
	g.setFence(nil)
	g.onCheck = func(n int32) {
		if n%2 == 0 { // the check after the write
			g.setFence(scsi.ErrALUATransitioning)
		}
	}
	g.checks.Store(0)
	_, err = d.Execute(write10(5, 1, false), [][]byte{other})
	if !errors.Is(err, scsi.ErrALUATransitioning) {
		t.Errorf("WRITE that lost ownership midway = %v, want %v", err, scsi.ErrALUATransitioning)
	}
	g.onCheck = nil
	g.setFence(nil)

	// Every path that changes the file is fenced: WRITE SAME, UNMAP
	// (through WRITE SAME with UNMAP), SYNCHRONIZE CACHE.
	g.setFence(scsi.ErrALUAStandby)
	for _, cdb := range [][]byte{
		{0x93, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0},    // WRITE SAME(16)
		{0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0}, // WRITE SAME(16) UNMAP
		{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0},                      // SYNCHRONIZE CACHE(10)
	} {
		_, err := d.Execute(cdb, [][]byte{make([]byte, 512)})
		if !errors.Is(err, scsi.ErrALUAStandby) {
			t.Errorf("% x while fenced = %v, want %v", cdb, err, scsi.ErrALUAStandby)
		}
	}
}

func TestGatewayInfo(t *testing.T) {
	plain, err := Open(Options{Name: "plain", Path: filepath.Join(t.TempDir(), "p.img"), Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if g := plain.Info().Gateway; g != nil {
		t.Errorf("Info().Gateway of a plain LUN = %+v, want nil", g)
	}
	g := &fakeGateway{}
	l, _ := openGatewayLUN(t, g)
	g.state.Store(uint32(scsi.StateStandby))
	if got := l.Info().Gateway; got == nil || got.State != scsi.StateStandby || got.Owner || got.Epoch != 7 {
		t.Errorf("Info().Gateway = %+v, want standby at epoch 7", got)
	}
}

func TestGatewayHooks(t *testing.T) {
	g := &fakeGateway{}
	l, _ := openGatewayLUN(t, g)
	d := l.Disk()
	// Becoming the owner raises ASYMMETRIC ACCESS STATE CHANGED.
	g.changed(scsi.StateActiveOptimized)
	_, err := d.Execute(read10(0, 1), [][]byte{make([]byte, 512)})
	if !errors.Is(err, scsi.ErrAccessStateChanged) {
		t.Errorf("READ after a state change = %v, want %v", err, scsi.ErrAccessStateChanged)
	}
	// Drain returns at once with nothing in flight, and waits for a
	// write that is in the file system.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.drain(ctx); err != nil {
		t.Errorf("drain = %v", err)
	}
	inWrite := make(chan struct{})
	release := make(chan struct{})
	g.onCheck = func(n int32) {
		if n == 1 {
			close(inWrite)
			<-release
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Execute(write10(1, 1, false), [][]byte{make([]byte, 512)})
		done <- err
	}()
	<-inWrite
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := g.drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drain with a write in flight = %v, want the deadline", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("WRITE = %v", err)
	}
	if err := g.drain(ctx); err != nil {
		t.Errorf("drain after the write = %v", err)
	}
}
