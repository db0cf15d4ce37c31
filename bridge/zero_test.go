// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// liar returns a fallocate that answers 0 for the modes in lies without
// doing anything, refuses those in refuses with EOPNOTSUPP, and runs the
// real fallocate otherwise: GlusterFS's FUSE client lies about
// FALLOC_FL_ZERO_RANGE; MooseFS refuses every mode.
func liar(lies, refuses uint32) fallocFunc {
	return func(fd int, mode uint32, off, n int64) error {
		m := mode &^ unix.FALLOC_FL_KEEP_SIZE
		switch {
		case m&lies != 0:
			return nil
		case m&refuses != 0:
			return unix.EOPNOTSUPP
		}
		return unix.Fallocate(fd, mode, off, n)
	}
}

// realFallocate skips the test when the temp directory's file system
// cannot punch holes and zero ranges itself (the fakes build on it).
func realFallocate(t *testing.T) {
	t.Helper()
	caps, err := probeZeroing(t.TempDir(), unix.Fallocate)
	if err != nil {
		t.Fatal(err)
	}
	if !caps.punch || !caps.zeroRange {
		t.Skipf("temp file system: %v; want both fallocate modes", caps)
	}
}

func TestProbeZeroing(t *testing.T) {
	realFallocate(t)
	const (
		punch = unix.FALLOC_FL_PUNCH_HOLE
		zero  = unix.FALLOC_FL_ZERO_RANGE
	)
	for _, tc := range []struct {
		name          string
		lies, refuses uint32
		want          zeroCaps
	}{
		{"honest", 0, 0, zeroCaps{punch: true, zeroRange: true}},
		{"gluster zero-range lie", zero, 0, zeroCaps{punch: true}},
		{"no fallocate", 0, punch | zero, zeroCaps{}},
		{"lies about both", punch | zero, 0, zeroCaps{}},
		{"punch refused", 0, punch, zeroCaps{zeroRange: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := probeZeroing(dir, liar(tc.lies, tc.refuses))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("probeZeroing = %+v, want %+v", got, tc.want)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
				t.Errorf("probe left %v behind", left)
			}
		})
	}
}

func TestProbeZeroingReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to a read-only directory")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	if caps, err := probeZeroing(dir, unix.Fallocate); err == nil || caps != (zeroCaps{}) {
		t.Errorf("probeZeroing(read-only dir) = %+v, %v; want nothing proven and an error", caps, err)
	}
}

// writeSame16 returns a WRITE SAME(16) CDB; its data is one block.
func writeSame16(lba uint64, blocks uint32, unmap bool) []byte {
	c := make([]byte, 16)
	c[0] = 0x93
	if unmap {
		c[1] = 0x08
	}
	binary.BigEndian.PutUint64(c[2:], lba)
	binary.BigEndian.PutUint32(c[10:], blocks)
	return c
}

// TestZeroingTruth: on file systems whose fallocate lies or refuses, every
// zeroing command (WRITE SAME with and without UNMAP, UNMAP, FORMAT UNIT)
// reads back zeros through the disk and in the backing file.
func TestZeroingTruth(t *testing.T) {
	realFallocate(t)
	const (
		punch = unix.FALLOC_FL_PUNCH_HOLE
		zero  = unix.FALLOC_FL_ZERO_RANGE
	)
	formatUnit := []byte{0x04, 0, 0, 0, 0, 0}
	for _, fs := range []struct {
		name          string
		lies, refuses uint32
	}{
		{"honest", 0, 0},
		{"gluster zero-range lie", zero, 0},
		{"no fallocate", 0, punch | zero},
		{"lies about both", punch | zero, 0},
	} {
		t.Run(fs.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			const size = 4 << 20
			l := serveLUN(t, Options{Name: "z", Path: path, Size: size, fallocate: liar(fs.lies, fs.refuses)})
			for _, cmd := range []struct {
				name      string
				cdb, data []byte
				lba       uint64
				blocks    int
			}{
				{"write same unmap", writeSame16(16, 128, true), make([]byte, 512), 16, 128},
				{"write same", writeSame16(200, 128, false), make([]byte, 512), 200, 128},
				{"unmap", nil, nil, 400, 256},
				{"format unit", formatUnit, nil, 0, size / 512},
			} {
				t.Run(cmd.name, func(t *testing.T) {
					old := bytes.Repeat([]byte{0xee}, size)
					if err := os.WriteFile(path, old, 0o600); err != nil {
						t.Fatal(err)
					}
					// Through the disk too, so no cache holds the old bytes
					// apart from the file.
					l.mustGood(t, write10(uint32(cmd.lba), uint16(min(cmd.blocks, 1024)), false), old[:min(cmd.blocks, 1024)*512], 0)
					cdb, data := cmd.cdb, cmd.data
					if cdb == nil {
						cdb, data = unmap(cmd.lba, uint32(cmd.blocks))
					}
					l.mustGood(t, cdb, data, 0)
					want := make([]byte, cmd.blocks*512)
					for off := 0; off < len(want); off += 1024 * 512 {
						n := min(1024*512, len(want)-off)
						lba := uint32(cmd.lba) + uint32(off/512)
						if back := l.mustGood(t, read10(lba, uint16(n/512)), nil, n); !bytes.Equal(back, want[off:off+n]) {
							t.Errorf("%s: disk reads non-zero bytes at LBA %d", cmd.name, lba)
						}
					}
					file, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					start := int(cmd.lba) * 512
					if !bytes.Equal(file[start:start+len(want)], want) {
						t.Errorf("%s: backing file holds non-zero bytes in the zeroed range", cmd.name)
					}
					if end := start + len(want); end < size && file[end] != 0xee {
						t.Errorf("%s: byte after the range = %#x, want 0xee", cmd.name, file[end])
					}
				})
			}
		})
	}
}
