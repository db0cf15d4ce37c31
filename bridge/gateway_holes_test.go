// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lunbridge/lunbridge/scsi"
)

// Hole 2: a gateway LUN is write-through. WCE is 0 in the caching mode
// page, and a WRITE without FUA is durable before GOOD even if MODE
// SELECT turned WCE on: a sync that fails fails the write.
func TestGatewayWriteThrough(t *testing.T) {
	g := &fakeGateway{}
	l, _ := openGatewayLUN(t, g)
	d := l.Disk()
	page := make([]byte, 64)
	if _, err := d.Execute([]byte{0x1a, 0x08, 0x08, 0, 64, 0}, [][]byte{page}); err != nil {
		t.Fatalf("MODE SENSE(6) caching page = %v", err)
	}
	// Mode parameter header (4; DBD=1: no block descriptor), then the
	// caching page: WCE is bit 2 of its byte 2 (SBC-4 6.5.5).
	if page[4]&0x3f != 0x08 || page[4+2]&0x04 != 0 {
		t.Errorf("caching page % x: want page 08h with WCE=0", page[4:8])
	}
	if d.WriteCache() {
		t.Error("gateway LUN: WCE = 1, want 0 (write-through)")
	}
	fail := errors.New("fdatasync: input/output error")
	l.fenced.syncFile = func() error { return fail }
	for _, wce := range []bool{false, true} {
		d.SetWriteCache(wce)
		_, err := d.Execute(write10(2, 1, false), [][]byte{make([]byte, 512)})
		if !errors.Is(err, fail) {
			t.Errorf("WCE=%v: WRITE(10) without FUA whose sync fails = %v, want %v inside", wce, err, fail)
		}
	}
	if err := g.drain(t.Context()); !errors.Is(err, fail) {
		t.Errorf("drain whose sync fails = %v, want %v inside", err, fail)
	}
}

// Hole 6: a READ admitted while the gateway owned the file, that
// finishes after its validity ended, completes with 02/04/0A, not data.
func TestGatewayReadAfterCheck(t *testing.T) {
	g := &fakeGateway{}
	l, _ := openGatewayLUN(t, g)
	d := l.Disk()
	if _, err := d.Execute(read10(3, 1), [][]byte{make([]byte, 512)}); err != nil {
		t.Fatalf("READ as owner = %v", err)
	}
	// The disk still admits (State is active/optimized), the fence no
	// longer holds when the data is back.
	g.setFence(scsi.ErrALUATransitioning)
	_, err := d.Execute(read10(3, 1), [][]byte{make([]byte, 512)})
	if se, ok := errors.AsType[*scsi.Error](err); !ok || !errors.Is(se, scsi.ErrALUATransitioning) {
		t.Fatalf("READ that outlived the validity = %v, want %v inside", err, scsi.ErrALUATransitioning)
	}
}

// Hole 4: before the gateway becomes the owner, the LUN drops its page
// cache of the file and checks that nothing is left; pages it cannot drop
// (mapped by someone) keep it from becoming the owner.
func TestGatewayDropsCacheBeforeOwnership(t *testing.T) {
	g := &fakeGateway{}
	l, path := openGatewayLUN(t, g)
	d := l.Disk()
	if _, err := d.Execute(write10(0, 8, false), [][]byte{bytes.Repeat([]byte{1}, 8*512)}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Execute(read10(0, 8), [][]byte{make([]byte, 8*512)}); err != nil {
		t.Fatal(err)
	}
	n, err := residentPages(l.be.fd)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Skip("the file system of the temporary directory keeps no page cache")
	}
	if err := g.changed(scsi.StateActiveOptimized); err != nil {
		t.Fatalf("changed(active/optimized) = %v", err)
	}
	if n, err := residentPages(l.be.fd); err != nil || n != 0 {
		t.Fatalf("pages cached after changed(active/optimized) = %d, %v; want 0", n, err)
	}

	// A mapping keeps its pages: the check must see it.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if m[0] != 1 { // fault the page in
		t.Fatalf("mapped byte 0 = %d, want 1", m[0])
	}
	if err := g.changed(scsi.StateActiveOptimized); err == nil {
		t.Error("changed(active/optimized) with a mapped page = nil, want an error")
	}
}

// Minor: only the owner changes the shared file's size.
func TestGatewayResizeOnlyByOwner(t *testing.T) {
	g := &fakeGateway{}
	l, path := openGatewayLUN(t, g)
	g.setFence(scsi.ErrALUAStandby)
	if err := l.Resize(2 << 20); !errors.Is(err, scsi.ErrALUAStandby) {
		t.Errorf("Resize on a standby = %v, want %v inside", err, scsi.ErrALUAStandby)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 1<<20 {
		t.Errorf("file after a standby's resize: %v, %v; want 1 MiB", fi.Size(), err)
	}
	g.setFence(nil)
	if err := l.Resize(2 << 20); err != nil {
		t.Errorf("Resize on the owner = %v", err)
	}
}

// On tmpfs the page cache is the file, shared by every gateway of the
// kernel: its pages stay after FADV_DONTNEED, and that must not keep the
// gateway from becoming the owner.
func TestGatewayOwnsFileOnTmpfs(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "lunbridge-gateway-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &fakeGateway{}
	l, err := Open(Options{Name: "shm", Path: dir + "/shared.img", Size: 1 << 20, Gateway: g})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !inMemoryFS(l.be.fd) {
		t.Skip("/dev/shm is not tmpfs here")
	}
	if _, err := l.Disk().Execute(write10(0, 8, false), [][]byte{make([]byte, 8*512)}); err != nil {
		t.Fatal(err)
	}
	if err := g.changed(scsi.StateActiveOptimized); err != nil {
		t.Errorf("changed(active/optimized) on tmpfs = %v, want nil", err)
	}
}
