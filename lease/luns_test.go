// SPDX-License-Identifier: Apache-2.0

package lease_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lunbridge/lunbridge/bridge"
	"github.com/lunbridge/lunbridge/lease"
	"github.com/lunbridge/lunbridge/scsi"
)

// lunGateway adapts a Lease to bridge.Gateway, as package lio does.
type lunGateway struct{ *lease.Lease }

func (g lunGateway) Info() bridge.GatewayInfo {
	s := g.Status()
	return bridge.GatewayInfo{Group: g.Local().Group, State: s.State, Owner: s.Owner, Epoch: s.Epoch, OwnerGroup: s.OwnerGroup, OwnerKnown: s.OwnerKnown}
}

func openLUN(t *testing.T, name, path string, l *lease.Lease) *scsi.Disk {
	t.Helper()
	lun, err := bridge.Open(bridge.Options{Name: name, Identity: "shared", Path: path, Size: 1 << 20, Gateway: lunGateway{l}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lun.Close() })
	return lun.Disk()
}

func blockOf(t *testing.T, path string, lba int) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[lba*512 : (lba+1)*512]
}

// Holes 1 and 6 end to end: two LUNs of one file, each with a real Lease.
// The owner is paused (its clocks stand still, its lock goes), the other
// gateway takes over and acknowledges a write WITHOUT FUA; on resume the
// old owner neither acknowledges a write nor returns the block it wrote
// before: both complete with 02/04/0A, and the file holds the new owner's
// data.
func TestPausedOwnerOnTwoLUNs(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "shared.img")
	a, clkA := lease.ManualGateway(t, file+".lease", lease.MemberA, lease.MemberB, nil)
	diskA := openLUN(t, "a", file, a)
	b, clkB := lease.ManualGateway(t, file+".lease", lease.MemberB, lease.MemberA, nil)
	diskB := openLUN(t, "b", file, b)
	write := func(d *scsi.Disk, p byte) error {
		_, err := d.Execute([]byte{0x2a, 0, 0, 0, 0, 5, 0, 0, 1, 0}, [][]byte{bytes.Repeat([]byte{p}, 512)})
		return err
	}
	read := func(d *scsi.Disk) ([]byte, error) {
		buf := make([]byte, 512)
		_, err := d.Execute([]byte{0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0}, [][]byte{buf})
		return buf, err
	}
	// Each LUN raises a unit attention on its state changes: read it.
	drainUA := func(d *scsi.Disk) {
		for range 3 {
			if _, err := read(d); !errors.Is(err, scsi.ErrAccessStateChanged) {
				return
			}
		}
	}

	lease.BecomeOwner(t, a, clkA)
	drainUA(diskA)
	if err := write(diskA, 0xa1); err != nil {
		t.Fatalf("WRITE on owner A = %v", err)
	}
	if got, err := read(diskA); err != nil || got[0] != 0xa1 {
		t.Fatalf("READ on owner A = %x..., %v; want a1", got[0], err)
	}

	a.Unlock() // A is paused; the file system drops its lock
	lease.BecomeOwner(t, b, clkB)
	drainUA(diskB)
	if err := write(diskB, 0xb2); err != nil {
		t.Fatalf("WRITE on new owner B = %v", err)
	}

	clkA.Step(10*time.Millisecond, time.Minute) // A resumes
	if err := write(diskA, 0xa3); !errors.Is(err, scsi.ErrALUATransitioning) {
		t.Errorf("WRITE on resumed A = %v, want %v", err, scsi.ErrALUATransitioning)
	}
	if got, err := read(diskA); !errors.Is(err, scsi.ErrALUATransitioning) {
		t.Errorf("READ on resumed A = %x..., %v; want %v", got[0], err, scsi.ErrALUATransitioning)
	}
	if got := blockOf(t, file, 5); got[0] != 0xb2 {
		t.Errorf("block 5 of the file = %x..., want b2 (the new owner's write)", got[0])
	}
	if got, err := read(diskB); err != nil || got[0] != 0xb2 {
		t.Errorf("READ on B = %x..., %v; want b2", got[0], err)
	}
}
