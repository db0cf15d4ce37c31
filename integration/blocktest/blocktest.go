// SPDX-License-Identifier: Apache-2.0

// Package blocktest is a conformance suite for a SCSI disk seen through the
// Linux SCSI stack: each test drives a real /dev/sdX with sg3-utils (and
// GNU dd with O_DIRECT for plain data) and checks what the tools print
// against what the disk itself reports and what the kernel's sd driver
// made of it (sysfs).
//
// The tests assume only what SPC-5 and SBC-4 require, plus one thing they
// leave open: that the disk rejects a non-zero reserved CDB field (which
// lunbridge does). Expectations about a particular disk (its name, limits,
// backing file) belong to the caller, which can use the helpers exported
// here (Run, Field, WantSense, ReadCapacity, ...).
//
// Tests write to the disk. Each one uses its own range of LBAs inside the
// first 16 MiB, so they can run in any order; the disk must be at least
// that large.
package blocktest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// All maps test names to tests of the disk at dev (a /dev/sdX). The
// tests need root, sg3-utils, sdparm and GNU dd.
var All = map[string]func(*testing.T, string){
	"Inquiry":                    Inquiry,
	"VPDPages":                   VPDPages,
	"ReadCapacity":               ReadCapacity16,
	"BlockLimits":                BlockLimits,
	"Provisioning":               Provisioning,
	"ReportOpcodes":              ReportOpcodes,
	"ModePages":                  ModePages,
	"WriteCache":                 WriteCache,
	"UnitReady":                  UnitReady,
	"StartStop":                  StartStop,
	"SyncCache":                  SyncCache,
	"SelfTest":                   SelfTest,
	"ReadPastEnd":                ReadPastEnd,
	"InvalidOpcode":              InvalidOpcode,
	"ReservedBit":                ReservedBit,
	"CompareAndWrite":            CompareAndWrite,
	"CompareAndWriteDataOutSize": CompareAndWriteDataOutSize,
	"Verify":                     Verify,
	"WriteSame":                  WriteSame,
	"Unmap":                      Unmap,
	"CDBSizes":                   CDBSizes,
	"WriteAndVerify":             WriteAndVerify,
	"PreFetch":                   PreFetch,
	"ExtendedCopy":               ExtendedCopy,
}

// RunAll runs every test of All on dev, in name order, as subtests of t.
func RunAll(t *testing.T, dev string) {
	names := make([]string, 0, len(All))
	for n := range All {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) { All[n](t, dev) })
	}
}

// region returns the first LBA of test k's private range: k MiB into the
// disk, k in 1..15.
func region(t *testing.T, g Geometry, k int) uint64 {
	t.Helper()
	lba := uint64(k<<20) / uint64(g.BlockSize)
	if lba+uint64(1<<20)/uint64(g.BlockSize) > g.Blocks {
		t.Fatalf("disk of %d blocks is too small for the suite (16 MiB)", g.Blocks)
	}
	return lba
}

// Inquiry checks the standard INQUIRY data: a direct-access block device
// with identification strings, and a version of SPC-4 or later (which the
// rest of the suite needs).
func Inquiry(t *testing.T, dev string) {
	o := MustRun(t, "sg_inq", dev)
	NoComplaints(t, o)
	NoComplaints(t, MustRun(t, "sg_inq", "--descriptors", dev))
	if pdt := Field(t, o, `PDT=(\d+)`); pdt != "0" {
		t.Errorf("sg_inq: PDT = %s, want 0 (direct access block device)", pdt)
	}
	if v := Uint(t, o, `(?i)\bversion=(0x[0-9a-f]+)`); v < 6 {
		t.Errorf("sg_inq: Version = %#x, want SPC-4 (6) or later", v)
	}
	if f := Field(t, o, `(?i)resp(?:onse)?[_ ]data[_ ]format=(\d)`); f != "2" {
		t.Errorf("sg_inq: Response data format = %s, want 2", f)
	}
	if v := strings.TrimSpace(Field(t, o, `Vendor identification: (.*)`)); v == "" {
		t.Errorf("sg_inq: empty vendor identification")
	}
}

// VPDPages checks that the Supported VPD Pages page lists the pages SPC-5
// requires and that every page it lists is returned and decodes.
func VPDPages(t *testing.T, dev string) {
	o := MustRun(t, "sg_vpd", "--page=0", "--hex", dev)
	pages := vpdList(t, o)
	for _, want := range []int{0x00, 0x80, 0x83} {
		if !slices.Contains(pages, want) {
			t.Errorf("sg_vpd -p 0: pages %#x, want %#02x among them", pages, want)
		}
	}
	for _, p := range pages {
		o := Run(t, "sg_vpd", fmt.Sprintf("--page=%#x", p), dev)
		if o.Code != 0 {
			t.Errorf("%s: exit status %d for a page the disk lists", o.Cmd, o.Code)
		}
		NoComplaints(t, o)
	}
	o = Run(t, "sg_vpd", "--all", dev)
	if o.Code != 0 {
		t.Errorf("%s: exit status %d", o.Cmd, o.Code)
	}
	NoComplaints(t, o)
}

// vpdList parses the page codes of "sg_vpd --page=0 --hex" (the page in
// hex: a 4-byte header, then one byte per page).
func vpdList(t *testing.T, o Output) []int {
	t.Helper()
	b := hexDump(o.Stdout)
	if len(b) < 4 || b[1] != 0 {
		t.Fatalf("%s: not a supported VPD pages page: % x", o.Cmd, b)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 4+n > len(b) {
		t.Fatalf("%s: page length %d, only %d bytes", o.Cmd, n, len(b)-4)
	}
	var out []int
	for _, c := range b[4 : 4+n] {
		out = append(out, int(c))
	}
	return out
}

// hexDump parses sg3-utils' hex output: lines of an offset and hex bytes,
// optionally followed by an ASCII column after three or more spaces.
func hexDump(s string) []byte {
	var out []byte
	line := regexp.MustCompile(`^\s*[0-9a-f]+\s+(.*)$`)
	ascii := regexp.MustCompile(`\s{3,}`)
	for _, l := range strings.Split(s, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		for _, f := range strings.Fields(ascii.Split(m[1], 2)[0]) {
			v, err := strconv.ParseUint(f, 16, 8)
			if err != nil || len(f) != 2 {
				break
			}
			out = append(out, byte(v))
		}
	}
	return out
}

// ReadCapacity16 checks READ CAPACITY(10) and (16) against each other and
// against the size and block size the kernel took from them.
func ReadCapacity16(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	o := MustRun(t, "sg_readcap", dev)
	if n := Uint(t, o, `Number of logical blocks=(\d+)`); g.Blocks <= 0xffffffff && n != g.Blocks {
		t.Errorf("sg_readcap: %d blocks, READ CAPACITY(16) says %d", n, g.Blocks)
	}
	if bs := Uint(t, o, `Logical block length=(\d+)`); int(bs) != g.BlockSize {
		t.Errorf("sg_readcap: block length %d, READ CAPACITY(16) says %d", bs, g.BlockSize)
	}
	sectors, _ := strconv.ParseUint(SysBlock(t, dev, "size"), 10, 64)
	if sectors*512 != g.Blocks*uint64(g.BlockSize) {
		t.Errorf("/sys/block size = %d bytes, READ CAPACITY(16) says %d", sectors*512, g.Blocks*uint64(g.BlockSize))
	}
	if lbs := SysBlock(t, dev, "queue/logical_block_size"); lbs != strconv.Itoa(g.BlockSize) {
		t.Errorf("queue/logical_block_size = %s, READ CAPACITY(16) says %d", lbs, g.BlockSize)
	}
}

// BlockLimits checks the Block Limits VPD page against the kernel's queue
// limits: sd caps requests at MAXIMUM TRANSFER LENGTH.
func BlockLimits(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	o := MustRun(t, "sg_vpd", "--page=bl", dev)
	maxXfer := Uint(t, o, `Maximum transfer length: (\d+)`)
	kb, _ := strconv.ParseUint(SysBlock(t, dev, "queue/max_sectors_kb"), 10, 64)
	if maxXfer != 0 && kb*1024 > maxXfer*uint64(g.BlockSize) {
		t.Errorf("queue/max_sectors_kb = %d, above the maximum transfer length %d blocks", kb, maxXfer)
	}
	if opt := Uint(t, o, `Optimal transfer length: (\d+)`); maxXfer != 0 && opt > maxXfer {
		t.Errorf("sg_vpd -p bl: optimal transfer length %d > maximum %d", opt, maxXfer)
	}
}

// Provisioning checks that READ CAPACITY(16), the Logical Block
// Provisioning VPD page and the kernel's provisioning mode agree.
func Provisioning(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	if !g.LBPME {
		t.Skip("LBPME=0: not a provisioned disk")
	}
	o := MustRun(t, "sg_vpd", "--page=lbpv", dev)
	lbpu := Field(t, o, `LBPU\W+(\d)`) == "1"
	lbpws := Field(t, o, `LBPWS\W+(\d)`) == "1"
	lbprz := Field(t, o, `LBPRZ\W+(\d)`)
	if (lbprz != "0") != g.LBPRZ {
		t.Errorf("sg_vpd -p lbpv: LBPRZ %s, READ CAPACITY(16) says LBPRZ=%v", lbprz, g.LBPRZ)
	}
	// sd (sd_discard_mode) prefers UNMAP, then WRITE SAME(16) with UNMAP.
	mode, err := os.ReadFile(filepath.Join(ScsiDisk(t, dev), "provisioning_mode"))
	if err != nil {
		t.Fatal(err)
	}
	want := "full"
	switch {
	case lbpu:
		want = "unmap"
	case lbpws:
		want = "writesame_16"
	}
	if got := strings.TrimSpace(string(mode)); got != want {
		t.Errorf("scsi_disk provisioning_mode = %q, want %q (LBPU=%v LBPWS=%v)", got, want, lbpu, lbpws)
	}
}

// Opcode is one entry of REPORT SUPPORTED OPERATION CODES.
type Opcode struct {
	Op     byte
	SA     uint16
	HasSA  bool
	CDBLen int
}

// Opcodes runs "sg_opcodes --raw" (all commands) and parses the reply
// (SPC-5 REPORT SUPPORTED OPERATION CODES, REPORTING OPTIONS 000b).
func Opcodes(t *testing.T, dev string) []Opcode {
	t.Helper()
	o := MustRun(t, "sg_opcodes", "--raw", dev)
	b := []byte(o.Stdout)
	if len(b) < 4 {
		t.Fatalf("%s: %d bytes", o.Cmd, len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if 4+n > len(b) {
		t.Fatalf("%s: COMMAND DATA LENGTH %d, only %d bytes", o.Cmd, n, len(b)-4)
	}
	var out []Opcode
	for p := b[4 : 4+n]; len(p) >= 8; {
		d := Opcode{Op: p[0], SA: binary.BigEndian.Uint16(p[2:]), HasSA: p[5]&1 != 0,
			CDBLen: int(binary.BigEndian.Uint16(p[6:]))}
		out = append(out, d)
		size := 8
		if p[5]&2 != 0 { // CTDP: a command timeouts descriptor follows
			size += 12
		}
		if len(p) < size {
			t.Fatalf("%s: truncated descriptor", o.Cmd)
		}
		p = p[size:]
	}
	return out
}

// ReportOpcodes checks that REPORT SUPPORTED OPERATION CODES lists the
// commands SPC-5 and SBC-4 make mandatory and that, asked for alone, each
// listed command has CDB usage data as long as its listed CDB, starting
// with its opcode.
func ReportOpcodes(t *testing.T, dev string) {
	ops := Opcodes(t, dev)
	has := func(op byte) bool {
		return slices.ContainsFunc(ops, func(o Opcode) bool { return o.Op == op })
	}
	for _, op := range []byte{0x00, 0x03, 0x12, 0x1a, 0x25, 0x28, 0x2a, 0x9e, 0xa3} {
		if !has(op) {
			t.Errorf("sg_opcodes: opcode %#02x missing", op)
		}
	}
	// --mask asks for each listed command alone (REPORTING OPTIONS
	// 001b/010b) and prints its CDB usage data under it.
	o := MustRun(t, "sg_opcodes", "--mask", dev)
	NoComplaints(t, o)
	row := regexp.MustCompile(`^\s*([0-9a-f]{2})\s+(?:([0-9a-f]+)\s+)?(\d+)\s+\S+\s+(.*)$`)
	usage := regexp.MustCompile(`^\s*cdb usage:\s*(.*)$`)
	var cur []string
	checked := 0
	for _, l := range strings.Split(o.Stdout, "\n") {
		if m := row.FindStringSubmatch(l); m != nil {
			cur = m
			continue
		}
		m := usage.FindStringSubmatch(l)
		if m == nil || cur == nil {
			continue
		}
		u := strings.Fields(m[1])
		if strconv.Itoa(len(u)) != cur[3] || u[0] != cur[1] {
			t.Errorf("sg_opcodes --mask: %s (%s): usage data %q for a %s-byte CDB", cur[4], cur[1], m[1], cur[3])
		}
		checked++
		cur = nil
	}
	if checked != len(ops) {
		t.Errorf("sg_opcodes --mask: usage data for %d commands, %d listed", checked, len(ops))
	}
}

// ModePages checks that MODE SENSE returns every page (3Fh) with the
// pages SBC-4 disks have, in current, changeable and default values.
func ModePages(t *testing.T, dev string) {
	o := MustRun(t, "sg_modes", "--all", dev)
	NoComplaints(t, o)
	// sd takes DPOFUA from the mode parameter header.
	fua, err := os.ReadFile(filepath.Join(ScsiDisk(t, dev), "FUA"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(fua)), Field(t, o, `DpoFua=(\d)`); got != want {
		t.Errorf("scsi_disk FUA = %s, the mode parameter header says DpoFua=%s", got, want)
	}
	for _, p := range []string{"Caching", "Control"} {
		if !regexp.MustCompile(`>> ` + p).MatchString(o.Stdout) {
			t.Errorf("sg_modes -a: no %s mode page", p)
		}
	}
	for _, pc := range []string{"1", "2"} {
		o := Run(t, "sg_modes", "--all", "--control="+pc, dev)
		if o.Code != 0 {
			t.Errorf("%s: exit status %d", o.Cmd, o.Code)
		}
		NoComplaints(t, o)
	}
}

// WriteCache switches the write cache off and on again the way a user
// does (the scsi_disk cache_type attribute, for which sd sends MODE
// SELECT) and checks the caching mode page and the kernel's view follow.
func WriteCache(t *testing.T, dev string) {
	attr := filepath.Join(ScsiDisk(t, dev), "cache_type")
	read := func() string {
		b, err := os.ReadFile(attr)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	orig := read()
	wce := ModeParam(t, dev, "WCE")
	if (wce == "1") != (orig == "write back") {
		t.Errorf("cache_type %q with WCE=%s", orig, wce)
	}
	for _, mode := range []string{"write through", "write back", orig} {
		if err := os.WriteFile(attr, []byte(mode), 0); err != nil {
			t.Fatalf("write %q to %s: %v", mode, attr, err)
		}
		want := "0"
		if mode == "write back" {
			want = "1"
		}
		if got := ModeParam(t, dev, "WCE"); got != want {
			t.Errorf("after cache_type %q: WCE = %s, want %s", mode, got, want)
		}
		if got := read(); got != mode {
			t.Errorf("after cache_type %q: cache_type reads %q", mode, got)
		}
	}
}

// UnitReady checks TEST UNIT READY and that REQUEST SENSE reports nothing.
func UnitReady(t *testing.T, dev string) {
	MustRun(t, "sg_turs", dev)
	o := MustRun(t, "sg_requests", dev)
	if s := SenseOf(o); !strings.EqualFold(s.Key, "No Sense") {
		t.Errorf("sg_requests: sense %q, want No Sense", s)
	}
}

// StartStop checks that a stopped disk is not ready until started again.
func StartStop(t *testing.T, dev string) {
	MustRun(t, "sg_start", "--stop", dev)
	t.Cleanup(func() { Run(t, "sg_start", "--start", dev) })
	o := Run(t, "sg_turs", dev)
	if o.Code != 2 {
		t.Errorf("sg_turs after stop: exit %d, want 2 (not ready)", o.Code)
	}
	o = MustRun(t, "sg_requests", dev)
	if s := SenseOf(o); !strings.EqualFold(s.Key, "Not Ready") {
		t.Errorf("sg_requests after stop: sense %q, want Not Ready", s)
	}
	MustRun(t, "sg_start", "--start", dev)
	MustRun(t, "sg_turs", dev)
}

// SyncCache checks SYNCHRONIZE CACHE(10) and (16), whole disk and a range.
func SyncCache(t *testing.T, dev string) {
	MustRun(t, "sg_sync", dev)
	MustRun(t, "sg_sync", "--lba=100", "--count=100", dev)
	MustRun(t, "sg_sync", "--immed", "--16", "--lba=100", "--count=100", dev)
}

// SelfTest checks the default self-test of SEND DIAGNOSTIC and the list of
// supported diagnostic pages.
func SelfTest(t *testing.T, dev string) {
	MustRun(t, "sg_senddiag", "--test", dev)
	MustRun(t, "sg_senddiag", "--list", dev)
}

// cdb16 builds a 16-byte CDB with an 8-byte LBA and a 4-byte length.
func cdb16(op byte, lba uint64, n uint32) []string {
	b := make([]byte, 16)
	b[0] = op
	binary.BigEndian.PutUint64(b[2:], lba)
	binary.BigEndian.PutUint32(b[10:], n)
	return hexArgs(b)
}

func hexArgs(b []byte) []string {
	out := make([]string, len(b))
	for i, c := range b {
		out[i] = fmt.Sprintf("%02x", c)
	}
	return out
}

// ReadPastEnd checks that reads and writes that reach past the last LBA
// fail with LOGICAL BLOCK ADDRESS OUT OF RANGE, and that the last block
// itself is readable.
func ReadPastEnd(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	bs := strconv.Itoa(g.BlockSize)
	MustRun(t, "sg_raw", append([]string{"-r", bs, dev}, cdb16(0x88, g.Blocks-1, 1)...)...)
	for _, c := range []struct {
		lba uint64
		n   uint32
	}{{g.Blocks, 1}, {g.Blocks - 1, 2}, {1 << 62, 1}} {
		o := Run(t, "sg_raw", append([]string{"-r", strconv.Itoa(int(c.n) * g.BlockSize), dev}, cdb16(0x88, c.lba, c.n)...)...)
		WantSense(t, o, "Illegal Request", "Logical block address out of range")
	}
	zero := TempFile(t, make([]byte, g.BlockSize))
	o := Run(t, "sg_raw", append([]string{"-s", bs, "-i", zero, dev}, cdb16(0x8a, g.Blocks, 1)...)...)
	WantSense(t, o, "Illegal Request", "Logical block address out of range")
}

// InvalidOpcode checks that an operation code the disk does not list is
// rejected with INVALID COMMAND OPERATION CODE.
func InvalidOpcode(t *testing.T, dev string) {
	ops := Opcodes(t, dev)
	// Group 0 opcodes SPC-5/SBC-4 leave reserved or obsolete.
	for _, op := range []byte{0x02, 0x0c, 0x0e} {
		if slices.ContainsFunc(ops, func(o Opcode) bool { return o.Op == op }) {
			continue
		}
		o := Run(t, "sg_raw", dev, fmt.Sprintf("%02x", op), "00", "00", "00", "00", "00")
		WantSense(t, o, "Illegal Request", "Invalid command operation code")
	}
}

// ReservedBit checks that a reserved CDB bit makes a command fail with
// INVALID FIELD IN CDB (SPC-5 lets a device server check reserved fields;
// the suite requires it).
func ReservedBit(t *testing.T, dev string) {
	for _, cdb := range [][]string{
		{"00", "01", "00", "00", "00", "00"},                         // TEST UNIT READY, byte 1
		{"35", "00", "00", "00", "00", "00", "40", "00", "00", "00"}, // SYNCHRONIZE CACHE(10), byte 6 bit 6
	} {
		o := Run(t, "sg_raw", append([]string{dev}, cdb...)...)
		WantSense(t, o, "Illegal Request", "Invalid field in cdb")
	}
}

// CompareAndWrite checks that COMPARE AND WRITE writes when the data
// compares equal, and that on a miscompare it reports MISCOMPARE DURING
// VERIFY OPERATION with the offset of the first differing byte and
// changes nothing.
func CompareAndWrite(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 1), g.BlockSize
	a, b, c := Pattern(1, bs, 2), Pattern(2, bs, 2), Pattern(3, bs, 2)
	WriteBlocks(t, dev, bs, lba, a)
	// sg_compare_and_write assumes 512-byte blocks unless told the length.
	xfer := fmt.Sprintf("--xferlen=%d", 4*bs)
	MustRun(t, "sg_compare_and_write", "--in="+TempFile(t, append(slices.Clone(a), b...)),
		fmt.Sprintf("--lba=%d", lba), "--num=2", xfer, dev)
	if got := ReadBlocks(t, dev, bs, lba, 2); !bytes.Equal(got, b) {
		t.Errorf("after a matching COMPARE AND WRITE: blocks hold %s, want the write data", which(got, a, b, c))
	}
	// Compare with the old data: b is there now.
	o := Run(t, "sg_compare_and_write", "--in="+TempFile(t, append(slices.Clone(a), c...)),
		fmt.Sprintf("--lba=%d", lba), "--num=2", xfer, dev)
	if o.Code != 14 {
		t.Errorf("%s: exit %d, want 14 (miscompare)", o.Cmd, o.Code)
	}
	if got := ReadBlocks(t, dev, bs, lba, 2); !bytes.Equal(got, b) {
		t.Errorf("after a miscompare: blocks hold %s, want them unchanged", which(got, a, b, c))
	}
	// The same through sg_raw, for the sense data: a differs from b
	// first in byte 0 (the seed); make the first difference later.
	cmp := slices.Clone(b)
	const off = 300
	cmp[bs+off] ^= 0xff
	cdb := make([]byte, 16)
	cdb[0] = 0x89
	binary.BigEndian.PutUint64(cdb[2:], lba)
	cdb[13] = 2
	o = Run(t, "sg_raw", append([]string{"-s", strconv.Itoa(4 * bs), "-i", TempFile(t, append(cmp, c...)), dev}, hexArgs(cdb)...)...)
	WantSense(t, o, "Miscompare", "Miscompare during verify operation")
	if info := Uint(t, o, `(?:Info fld|Information)[=:]\s*(0x[0-9a-fA-F]+)`); info != uint64(bs+off) {
		t.Errorf("%s: INFORMATION = %d, want %d (offset of the first miscompare)", o.Cmd, info, bs+off)
	}
	if got := ReadBlocks(t, dev, bs, lba, 2); !bytes.Equal(got, b) {
		t.Errorf("after a miscompare: blocks hold %s, want them unchanged", which(got, a, b, c))
	}
}

// which names the pattern got equals, for messages.
func which(got []byte, pats ...[]byte) string {
	for i, p := range pats {
		if bytes.Equal(got, p) {
			return fmt.Sprintf("pattern #%d", i+1)
		}
	}
	if !slices.ContainsFunc(got, func(c byte) bool { return c != 0 }) {
		return "zeros"
	}
	return fmt.Sprintf("other data (% x ...)", got[:min(16, len(got))])
}

// CompareAndWriteDataOutSize checks that a COMPARE AND WRITE whose
// data-out buffer is not twice NUMBER OF LOGICAL BLOCKS blocks (SBC-4:
// the verify data, then as many blocks of write data) is refused with
// ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT, as LIO's
// fileio refuses it, before anything is compared: never MISCOMPARE, and
// the blocks are unchanged. The verify half of each buffer differs from
// the medium, so that a compare would miscompare, and the write half
// differs too, so that a write would show.
func CompareAndWriteDataOutSize(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 9), g.BlockSize
	a := Pattern(4, bs, 2)
	WriteBlocks(t, dev, bs, lba, a)
	cdb := make([]byte, 16)
	cdb[0] = 0x89
	binary.BigEndian.PutUint64(cdb[2:], lba)
	cdb[13] = 1 // NUMBER OF LOGICAL BLOCKS: the right data-out is 2 x bs
	for _, n := range []int{bs, 2*bs - 1, 2*bs + 1, 2*bs + bs/2, 3 * bs, 4 * bs} {
		data := Pattern(5, bs, 4)[:n]
		o := Run(t, "sg_raw", append([]string{"-s", strconv.Itoa(n), "-i", TempFile(t, data), dev}, hexArgs(cdb)...)...)
		WantSense(t, o, "Illegal Request", "Invalid field in command information unit")
		if got := ReadBlocks(t, dev, bs, lba, 2); !bytes.Equal(got, a) {
			t.Errorf("%s: blocks changed by a COMPARE AND WRITE with %d bytes of data-out", o.Cmd, n)
		}
	}
}

// Verify checks VERIFY without a byte check, with matching data (BYTCHK=1)
// and with data that differs (MISCOMPARE).
func Verify(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 2), g.BlockSize
	a := Pattern(4, bs, 4)
	WriteBlocks(t, dev, bs, lba, a)
	l := fmt.Sprintf("--lba=%d", lba)
	MustRun(t, "sg_verify", l, "--count=4", dev)
	MustRun(t, "sg_verify", "--16", l, "--count=4", dev)
	ndo := fmt.Sprintf("--ndo=%d", 4*bs)
	MustRun(t, "sg_verify", l, "--count=4", ndo, "--in="+TempFile(t, a), dev)
	MustRun(t, "sg_verify", "--16", l, "--count=4", ndo, "--in="+TempFile(t, a), dev)
	bad := slices.Clone(a)
	bad[3*bs+5] ^= 1
	o := Run(t, "sg_verify", l, "--count=4", ndo, "--in="+TempFile(t, bad), dev)
	if o.Code != 14 {
		t.Errorf("%s with one differing byte: exit %d, want 14 (miscompare)", o.Cmd, o.Code)
	}
	// BYTCHK=3: one block of data compared with each of the blocks.
	one := Pattern(5, bs, 1)
	WriteBlocks(t, dev, bs, lba, bytes.Repeat(one, 4))
	MustRun(t, "sg_verify", l, "--count=4", "--ebytchk=3", fmt.Sprintf("--ndo=%d", bs), "--in="+TempFile(t, one), dev)
	WriteBlocks(t, dev, bs, lba+2, a[:bs])
	o = Run(t, "sg_verify", l, "--count=4", "--ebytchk=3", fmt.Sprintf("--ndo=%d", bs), "--in="+TempFile(t, one), dev)
	if o.Code != 14 {
		t.Errorf("%s with block 2 different: exit %d, want 14 (miscompare)", o.Cmd, o.Code)
	}
}

// WriteSame checks WRITE SAME(10) and (16) with a data block: every block
// of the range holds it, the blocks around are untouched.
func WriteSame(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 3), g.BlockSize
	for i, variant := range []string{"--10", "--16"} {
		base := Pattern(byte(10+i), bs, 10)
		WriteBlocks(t, dev, bs, lba, base)
		blk := Pattern(byte(20+i), bs, 1)
		MustRun(t, "sg_write_same", variant, "--in="+TempFile(t, blk), fmt.Sprintf("--lba=%d", lba+1), "--num=8", dev)
		got := ReadBlocks(t, dev, bs, lba, 10)
		want := slices.Concat(base[:bs], bytes.Repeat(blk, 8), base[9*bs:])
		if !bytes.Equal(got, want) {
			t.Errorf("sg_write_same %s: blocks %d..%d differ from the block written with the neighbours intact", variant, lba, lba+9)
		}
	}
	o := Run(t, "sg_write_same", "--16", "--in="+TempFile(t, make([]byte, bs)), fmt.Sprintf("--lba=%d", g.Blocks-1), "--num=2", dev)
	WantSense(t, o, "Illegal Request", "Logical block address out of range")
}

// Unmap checks UNMAP and WRITE SAME with UNMAP on a provisioned disk: the
// blocks around stay intact, deallocated blocks read as zeros when LBPRZ
// is set, and GET LBA STATUS reports a valid state for them.
func Unmap(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	if !g.LBPME {
		t.Skip("LBPME=0: not a provisioned disk")
	}
	lba, bs := region(t, g, 4), g.BlockSize
	const n = 64
	for _, how := range [][]string{
		{"sg_unmap", "--force", fmt.Sprintf("--lba=%d", lba+8), "--num=48", dev},
		{"sg_write_same", "--16", "--unmap", "--in=" + TempFile(t, make([]byte, bs)), fmt.Sprintf("--lba=%d", lba+8), "--num=48", dev},
		{"sg_write_same", "--16", "--unmap", "--ndob", fmt.Sprintf("--lba=%d", lba+8), "--num=48", dev},
	} {
		base := Pattern(30, bs, n)
		WriteBlocks(t, dev, bs, lba, base)
		if s := StatusAt(GetLBAStatus(t, dev, lba+8), lba+8); s != 0 {
			t.Errorf("GET LBA STATUS of a written block: status %d, want 0 (mapped)", s)
		}
		MustRun(t, how[0], how[1:]...)
		got := ReadBlocks(t, dev, bs, lba, n)
		if !bytes.Equal(got[:8*bs], base[:8*bs]) || !bytes.Equal(got[56*bs:], base[56*bs:]) {
			t.Errorf("%s: blocks next to the range changed", strings.Join(how, " "))
		}
		if g.LBPRZ || how[0] == "sg_write_same" {
			if slices.ContainsFunc(got[8*bs:56*bs], func(c byte) bool { return c != 0 }) {
				t.Errorf("%s: range does not read as zeros", strings.Join(how, " "))
			}
		}
		for _, d := range GetLBAStatus(t, dev, lba+8) {
			if d.Status > 2 {
				t.Errorf("GET LBA STATUS after %s: status %d", how[0], d.Status)
			}
		}
	}
}

// CDBSizes writes and reads with sg_dd through SG_IO with each CDB size:
// READ/WRITE(6), (10), (12) and (16). 256-block transfers make READ(6) and
// WRITE(6) carry TRANSFER LENGTH 0, which SBC-4 defines as 256 blocks.
// sg_dd --verify then compares with VERIFY(10)/(16) and BYTCHK=1.
func CDBSizes(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 5), g.BlockSize
	n := uint64(512 * 512 / bs)
	for i, sz := range []string{"6", "10", "12", "16"} {
		p := Pattern(byte(80+i), bs, int(n))
		common := []string{fmt.Sprintf("bs=%d", bs), fmt.Sprintf("bpt=%d", min(n/2, 256)), fmt.Sprintf("count=%d", n),
			"cdbsz=" + sz, "blk_sgio=1"}
		MustRun(t, "sg_dd", append([]string{"if=" + TempFile(t, p), "of=" + dev, fmt.Sprintf("seek=%d", lba)}, common...)...)
		if got := ReadBlocks(t, dev, bs, lba, n); !bytes.Equal(got, p) {
			t.Errorf("sg_dd cdbsz=%s: dd reads %s, want what sg_dd wrote", sz, which(got, p))
		}
		back := filepath.Join(t.TempDir(), "back")
		MustRun(t, "sg_dd", append([]string{"if=" + dev, "of=" + back, fmt.Sprintf("skip=%d", lba)}, common...)...)
		if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, p) {
			t.Errorf("sg_dd cdbsz=%s: read back differs from what was written (%v)", sz, err)
		}
		if sz == "10" || sz == "16" {
			MustRun(t, "sg_dd", append([]string{"--verify", "if=" + TempFile(t, p), "of=" + dev, fmt.Sprintf("seek=%d", lba)}, common...)...)
			bad := slices.Clone(p)
			bad[len(bad)-1] ^= 0x80
			if o := Run(t, "sg_dd", append([]string{"--verify", "if=" + TempFile(t, bad), "of=" + dev, fmt.Sprintf("seek=%d", lba)}, common...)...); o.Code == 0 {
				t.Errorf("%s: exit status 0 for data that differs in the last byte", o.Cmd)
			}
		}
	}
}

// WriteAndVerify checks WRITE AND VERIFY(10) and (16) without and with a
// byte check.
func WriteAndVerify(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	lba, bs := region(t, g, 6), g.BlockSize
	for i, args := range [][]string{{}, {"--16"}, {"--bytchk=1"}, {"--16", "--bytchk=1"}} {
		p := Pattern(byte(90+i), bs, 16)
		MustRun(t, "sg_write_verify", append(args, "--in="+TempFile(t, p), fmt.Sprintf("--lba=%d", lba), "--num=16", dev)...)
		if got := ReadBlocks(t, dev, bs, lba, 16); !bytes.Equal(got, p) {
			t.Errorf("sg_write_verify %v: blocks hold %s, want the data written", args, which(got, p))
		}
	}
}

// PreFetch checks PRE-FETCH(10) and (16) inside the disk and past its end.
func PreFetch(t *testing.T, dev string) {
	g := ReadCapacity(t, dev)
	MustRun(t, "sg_seek", "--pre-fetch", "--lba=1000", "--num-blocks=64", dev)
	MustRun(t, "sg_seek", "--pre-fetch", "--10", "--lba=1000", "--num-blocks=64", dev)
	MustRun(t, "sg_seek", "--pre-fetch", "--immed", fmt.Sprintf("--lba=%d", g.Blocks-1), "--num-blocks=1", dev)
	o := Run(t, "sg_seek", "--pre-fetch", fmt.Sprintf("--lba=%d", g.Blocks-1), "--num-blocks=2", dev)
	WantSense(t, o, "Illegal Request", "Logical block address out of range")
}

// ExtendedCopy copies within the disk with sg_xcopy (EXTENDED COPY(LID1),
// a block-to-block segment, after RECEIVE COPY OPERATING PARAMETERS), when
// the disk claims 3PC.
func ExtendedCopy(t *testing.T, dev string) {
	if Field(t, MustRun(t, "sg_inq", dev), `3PC=(\d)`) != "1" {
		t.Skip("3PC=0: no EXTENDED COPY")
	}
	g := ReadCapacity(t, dev)
	src, dst, bs := region(t, g, 7), region(t, g, 8), g.BlockSize
	n := uint64(1 << 20 / bs)
	p := Pattern(100, bs, int(n))
	WriteBlocks(t, dev, bs, src, p)
	WriteBlocks(t, dev, bs, dst, make([]byte, n*uint64(bs)))
	// sg_xcopy wants the sg node of the disk.
	sg, err := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), "device/scsi_generic/sg*"))
	if err != nil || len(sg) != 1 {
		t.Fatalf("sg device of %s: %v %v", dev, sg, err)
	}
	sgdev := "/dev/" + filepath.Base(sg[0])
	MustRun(t, "sg_xcopy", "if="+sgdev, "of="+sgdev, fmt.Sprintf("bs=%d", bs), fmt.Sprintf("skip=%d", src),
		fmt.Sprintf("seek=%d", dst), fmt.Sprintf("count=%d", n))
	if got := ReadBlocks(t, dev, bs, dst, n); !bytes.Equal(got, p) {
		t.Errorf("sg_xcopy: destination holds %s, want the source's data", which(got, p))
	}
}
