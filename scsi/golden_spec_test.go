// SPDX-License-Identifier: Apache-2.0

package scsi

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specField is one field of a parameter data or VPD page layout, as an
// SBC-4 table gives it: n whole bytes from byte off (big-endian), or,
// with n 0, bits hi..lo of byte off.
type specField struct {
	name   string
	off    int
	n      int
	hi, lo int
	value  uint64
}

// bytesField is a field of n whole bytes.
func bytesField(name string, off, n int, value uint64) specField {
	return specField{name: name, off: off, n: n, value: value}
}

// bitsField is a field of bits hi..lo of one byte.
func bitsField(name string, off, hi, lo int, value uint64) specField {
	return specField{name: name, off: off, hi: hi, lo: lo, value: value}
}

// buildFromSpec lays fields out in size bytes; every bit no field covers
// is reserved and stays 0. It fails on a value too wide for its field and
// on fields that overlap, so that the table itself is checked.
func buildFromSpec(t *testing.T, size int, fields []specField) []byte {
	t.Helper()
	b := make([]byte, size)
	used := make([]byte, size)
	for _, f := range fields {
		if f.n == 0 {
			width := f.hi - f.lo + 1
			if f.value >= 1<<width {
				t.Fatalf("%s: %#x does not fit in bits %d..%d", f.name, f.value, f.hi, f.lo)
			}
			mask := byte((1<<width - 1) << f.lo)
			if used[f.off]&mask != 0 {
				t.Fatalf("%s: overlaps another field in byte %d", f.name, f.off)
			}
			used[f.off] |= mask
			b[f.off] |= byte(f.value) << f.lo
			continue
		}
		if f.n < 8 && f.value >= 1<<(8*f.n) {
			t.Fatalf("%s: %#x does not fit in %d bytes", f.name, f.value, f.n)
		}
		for i := range f.n {
			if used[f.off+i] != 0 {
				t.Fatalf("%s: overlaps another field in byte %d", f.name, f.off+i)
			}
			used[f.off+i] = 0xff
			b[f.off+i] = byte(f.value >> (8 * (f.n - 1 - i)))
		}
	}
	return b
}

// readGolden parses testdata/name.golden, a hex.Dump.
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("testdata", name+".golden"))
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		// "00000010  00 01 ... 07  08 ... 0f  |text|"
		hexPart, _, ok := strings.Cut(line, "  |")
		off, rest, ok2 := strings.Cut(hexPart, "  ")
		if !ok || !ok2 || off != fmt.Sprintf("%08x", len(b)) {
			t.Fatalf("%s.golden: not a hex dump line at offset %d: %q", name, len(b), line)
		}
		for _, x := range strings.Fields(rest) {
			v, err := hex.DecodeString(x)
			if err != nil || len(v) != 1 {
				t.Fatalf("%s.golden: bad byte %q in %q", name, x, line)
			}
			b = append(b, v[0])
		}
	}
	return b
}

// TestGoldenFromSpec is the second source of three goldens (CONTRIBUTING.md):
// it builds the data the test disk (newDisk(t, nil): 4096 blocks of 512
// bytes, 4096-byte physical blocks, thin, MaxTransferBlocks 256,
// MaxUnmapBlocks 1024, MaxUnmapDescriptors 4, MaxWriteSameBlocks 2048)
// must return, field by field from SBC-4's tables, and compares it with
// the golden file that -update wrote from the code. Each layout is named
// by its SBC-4 table title.
func TestGoldenFromSpec(t *testing.T) {
	const (
		lastLBA   = testBlocks - 1
		blockLen  = 512
		physExp   = 3 // 4096 / 512 = 2^3 logical blocks per physical block
		maxXfer   = 256
		unmapLBAs = 1024
		unmapDesc = 4
		wsLen     = 2048
	)
	for _, tc := range []struct {
		golden string
		size   int
		fields []specField
	}{
		// SBC-4 table: READ CAPACITY (10) parameter data.
		{"read_capacity_10", 8, []specField{
			bytesField("RETURNED LOGICAL BLOCK ADDRESS", 0, 4, lastLBA),
			bytesField("LOGICAL BLOCK LENGTH IN BYTES", 4, 4, blockLen),
		}},
		// SBC-4 table: READ CAPACITY (16) parameter data.
		{"read_capacity_16", 32, []specField{
			bytesField("RETURNED LOGICAL BLOCK ADDRESS", 0, 8, lastLBA),
			bytesField("LOGICAL BLOCK LENGTH IN BYTES", 8, 4, blockLen),
			// SBC-4 table: 01b, the LBA is the last one of the medium.
			bitsField("RC BASIS", 12, 5, 4, 1),
			bitsField("P_TYPE", 12, 3, 1, 0),
			bitsField("PROT_EN", 12, 0, 0, 0),
			bitsField("P_I_EXPONENT", 13, 7, 4, 0),
			bitsField("LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT", 13, 3, 0, physExp),
			bitsField("LBPME", 14, 7, 7, 1), // thin: logical block provisioning management
			bitsField("LBPRZ", 14, 6, 6, 1), // unmapped blocks read as zeros
			bitsField("LOWEST ALIGNED LOGICAL BLOCK ADDRESS (MSB)", 14, 5, 0, 0),
			bytesField("LOWEST ALIGNED LOGICAL BLOCK ADDRESS (LSB)", 15, 1, 0),
		}},
		// SBC-4 table: Block Limits VPD page.
		{"vpd_b0", 64, []specField{
			bitsField("PERIPHERAL QUALIFIER", 0, 7, 5, 0),
			bitsField("PERIPHERAL DEVICE TYPE", 0, 4, 0, 0), // direct access block device
			bytesField("PAGE CODE", 1, 1, 0xb0),
			bytesField("PAGE LENGTH", 2, 2, 0x3c),
			bitsField("WSNZ", 4, 0, 0, 1), // WRITE SAME of 0 blocks is refused
			// lunbridge's choice: half the largest transfer (it carries
			// both the compare and the write data), at most 255.
			bytesField("MAXIMUM COMPARE AND WRITE LENGTH", 5, 1, min(255, maxXfer/2)),
			bytesField("OPTIMAL TRANSFER LENGTH GRANULARITY", 6, 2, 1<<physExp),
			bytesField("MAXIMUM TRANSFER LENGTH", 8, 4, maxXfer),
			// OptimalTransferBlocks 0 defaults to the maximum.
			bytesField("OPTIMAL TRANSFER LENGTH", 12, 4, maxXfer),
			bytesField("MAXIMUM PREFETCH LENGTH", 16, 4, maxXfer),
			bytesField("MAXIMUM UNMAP LBA COUNT", 20, 4, unmapLBAs),
			bytesField("MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT", 24, 4, unmapDesc),
			bytesField("OPTIMAL UNMAP GRANULARITY", 28, 4, 1<<physExp),
			bitsField("UGAVALID", 32, 7, 7, 1),
			bitsField("UNMAP GRANULARITY ALIGNMENT (MSB)", 32, 6, 0, 0),
			bytesField("UNMAP GRANULARITY ALIGNMENT (LSB)", 33, 3, 0),
			bytesField("MAXIMUM WRITE SAME LENGTH", 36, 8, wsLen),
			// No atomic writes: all five atomic fields 0.
			bytesField("MAXIMUM ATOMIC TRANSFER LENGTH", 44, 4, 0),
			bytesField("ATOMIC ALIGNMENT", 48, 4, 0),
			bytesField("ATOMIC TRANSFER LENGTH GRANULARITY", 52, 4, 0),
			bytesField("MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY", 56, 4, 0),
			bytesField("MAXIMUM ATOMIC BOUNDARY SIZE", 60, 4, 0),
		}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			want := buildFromSpec(t, tc.size, tc.fields)
			if got := readGolden(t, tc.golden); !bytes.Equal(got, want) {
				t.Errorf("testdata/%s.golden differs from SBC-4's layout:\ngolden:\n%sfrom the spec:\n%s", tc.golden, hex.Dump(got), hex.Dump(want))
			}
		})
	}
}
