// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lunbridge/lunbridge/internal/memdisk"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testBlocks = 4096

// newDisk returns a 512-byte-block thin disk of testBlocks blocks over a
// memory backend; mod adjusts the config first.
func newDisk(t testing.TB, mod func(*Config)) (*Disk, *memdisk.Disk) {
	t.Helper()
	cfg := Config{
		BlockSize:           512,
		Blocks:              testBlocks,
		WriteCache:          true,
		Serial:              "lb0123456789abcdef",
		NAA:                 NAAFromName("test-lun"),
		MaxTransferBlocks:   256,
		ThinProvisioning:    true,
		MaxUnmapBlocks:      1024,
		MaxUnmapDescriptors: 4,
		MaxWriteSameBlocks:  2048,
	}
	if mod != nil {
		mod(&cfg)
	}
	mem := memdisk.New(int64(cfg.Blocks)*int64(cfg.BlockSize), int64(cfg.BlockSize))
	d, err := NewDisk(cfg, mem)
	if err != nil {
		t.Fatalf("NewDisk: %v", err)
	}
	return d, mem
}

// exec runs cdb with data buffers and returns the result.
func exec(t testing.TB, d *Disk, cdb []byte, data ...[]byte) (Result, error) {
	t.Helper()
	res, err := d.Execute(cdb, data)
	if err != nil {
		var se *Error
		if !errors.As(err, &se) && !strings.Contains(err.Error(), "memdisk") {
			t.Fatalf("Execute(% x) = %v: neither *Error nor a backend error", cdb, err)
		}
	}
	return res, err
}

// mustIn runs a data-in command with an n-byte buffer and returns the
// data it placed.
func mustIn(t testing.TB, d *Disk, cdb []byte, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	res, err := exec(t, d, cdb, buf)
	if err != nil {
		t.Fatalf("Execute(% x) = %v, want GOOD", cdb, err)
	}
	return buf[:res.DataIn]
}

// mustOK runs cdb and fails on any error.
func mustOK(t testing.TB, d *Disk, cdb []byte, data ...[]byte) Result {
	t.Helper()
	res, err := exec(t, d, cdb, data...)
	if err != nil {
		t.Fatalf("Execute(% x) = %v, want GOOD", cdb, err)
	}
	return res
}

// wantErr checks that err matches want by key/ASC/ASCQ and, if field >=
// 0, that its field pointer names that byte (and bit, if bit >= 0).
func wantErr(t testing.TB, err error, want *Error, field, bit int) *Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var se *Error
	errors.As(err, &se)
	if field >= 0 {
		if !se.FieldValid || int(se.FieldByte) != field {
			t.Errorf("error %v: field pointer byte %d (valid %v), want %d", se, se.FieldByte, se.FieldValid, field)
		}
		if bit >= 0 && (!se.BitValid || int(se.FieldBit) != bit) {
			t.Errorf("error %v: bit pointer %d (valid %v), want %d", se, se.FieldBit, se.BitValid, bit)
		}
	}
	return se
}

func cdb6(op Opcode, lba uint32, n uint8) []byte {
	return []byte{byte(op), byte(lba >> 16 & 0x1f), byte(lba >> 8), byte(lba), n, 0}
}

func cdb10(op Opcode, lba uint32, n uint16) []byte {
	b := make([]byte, 10)
	b[0] = byte(op)
	put32(b[2:], lba)
	put16(b[7:], n)
	return b
}

func cdb12(op Opcode, lba uint32, n uint32) []byte {
	b := make([]byte, 12)
	b[0] = byte(op)
	put32(b[2:], lba)
	put32(b[6:], n)
	return b
}

func cdb16(op Opcode, lba uint64, n uint32) []byte {
	b := make([]byte, 16)
	b[0] = byte(op)
	put64(b[2:], lba)
	put32(b[10:], n)
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// golden compares got with testdata/name.golden (a hex dump), or
// rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	dump := hex.Dump(got)
	if *update {
		if err := os.WriteFile(path, []byte(dump), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal([]byte(dump), want) {
		t.Errorf("%s differs from %s:\ngot:\n%swant:\n%s", name, path, dump, want)
	}
}
